"""Helpers shared by the source operators: the document shape and reading files from allowed folders only."""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipelines.operators.base import OperatorEnv

# The folders a config may name; extras from SAGE_PIPELINE_ALLOWED_DIRS are reached by absolute path.
FolderName = Literal["uploads", "files", "docs"]
FOLDER_FIELD = Field(
    default="uploads",
    description="Allowed folder the path is relative to: uploads, files (pipeline files) or docs (bundled docs).",
)
MAX_FILE_BYTES = 5 * 1024 * 1024


def make_document(doc_id: str, text: str, **metadata: Any) -> dict[str, Any]:
    """A document as every operator expects it."""
    return {"id": str(doc_id), "text": text, "metadata": metadata}


def _has_magic(path: str) -> bool:
    return globlib.has_magic(path)


def allowed_files(env: OperatorEnv, folder: str, path: str, max_files: int) -> list[Path]:
    """Files matching ``path`` (a name or a glob pattern) inside the allowed folders, sorted by name.

    Every match is resolved and checked, so neither ``..`` nor a symlink can reach outside.
    """
    if not _has_magic(path):
        target = env.resolve_inside(path, folder)
        if not target.is_file():
            raise FileNotFoundError(f"no file {path!r} in folder {folder!r}")
        return [target]
    # Check the pattern's fixed prefix first so '../*' fails loudly instead of matching nothing.
    fixed = Path(path).parent
    while _has_magic(str(fixed)):
        fixed = fixed.parent
    env.resolve_inside(str(fixed), folder)
    base = env.folder(folder) if not Path(path).is_absolute() else Path("/")
    pattern = path if Path(path).is_absolute() else str(base / path)
    matches = sorted(Path(p) for p in globlib.glob(pattern, recursive=True))
    files = [env.resolve_inside(str(p), folder) for p in matches if p.is_file()]
    if not files:
        raise FileNotFoundError(f"no file matches {path!r} in folder {folder!r}")
    if len(files) > max_files:
        raise ValueError(f"{len(files)} files match {path!r}, more than max_files={max_files}")
    return files


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content, with clear errors for binary or oversized files."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"file {path.name!r} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for sources")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"file {path.name!r} is not UTF-8 text") from exc


def display_name(env: OperatorEnv, path: Path) -> str:
    """``folder/relative/path`` for metadata, never the absolute host path."""
    for name, root in env.folders.items():
        root = root.resolve()
        if path.is_relative_to(root):
            return f"{name}/{path.relative_to(root)}"
    return path.name
