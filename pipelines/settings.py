"""Where pipelines keep their files and which folders their file operators may read.

Built on the studio-wide settings (``SAGE_HOME``, ``SAGE_STUDIO_API_KEY``) plus two pipeline variables:
``SAGE_STUDIO_URL`` (the gateway generators call, default ``http://127.0.0.1:8000``) and
``SAGE_PIPELINE_ALLOWED_DIRS`` (extra readable folders, separated by ``os.pathsep``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sage_studio.settings import Settings

DEFAULT_STUDIO_URL = "http://127.0.0.1:8000"


def bundled_docs_dir() -> Path | None:
    """The studio's own documentation folder, when the core package ships one."""
    try:
        from sage_studio.bundled_docs import docs_dir
    except ImportError:
        return None
    return Path(docs_dir())


@dataclass(frozen=True)
class PipelineSettings:
    """Resolved pipeline paths and endpoints (read fresh from the environment on each call of ``pipeline_settings``)."""

    sage_home: Path
    studio_url: str
    studio_api_key: str | None
    extra_dirs: tuple[Path, ...] = ()

    @property
    def store_dir(self) -> Path:
        """Saved pipelines, one JSON file each."""
        return self.sage_home / "pipelines"

    @property
    def files_dir(self) -> Path:
        """Files pipelines may read and write (sink outputs land in ``files/outputs``)."""
        return self.sage_home / "pipelines" / "files"

    @property
    def uploads_dir(self) -> Path:
        return self.sage_home / "uploads"

    @property
    def batches_dir(self) -> Path:
        """Batch job records and their output files."""
        return self.sage_home / "pipelines" / "batches"

    def folders(self) -> dict[str, Path]:
        """Folders file operators may use, by name: uploads, files, docs (bundled), and configured extras."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        folders = {"uploads": self.uploads_dir, "files": self.files_dir}
        docs = bundled_docs_dir()
        if docs is not None:
            folders["docs"] = docs
        for extra in self.extra_dirs:
            name = extra.name or "extra"
            while name in folders:
                name += "_"
            folders[name] = extra
        return folders


def pipeline_settings(sage_home: Path | str | None = None) -> PipelineSettings:
    """Current settings; not cached, because tests and exported scripts change the environment between runs.
    ``sage_home`` overrides ``SAGE_HOME`` (the gateway passes the one of its app config)."""
    core = Settings() if sage_home is None else Settings(SAGE_HOME=Path(sage_home))
    extra = tuple(Path(p).expanduser() for p in os.environ.get("SAGE_PIPELINE_ALLOWED_DIRS", "").split(os.pathsep) if p)
    return PipelineSettings(
        sage_home=core.sage_home,
        studio_url=os.environ.get("SAGE_STUDIO_URL", DEFAULT_STUDIO_URL).rstrip("/"),
        studio_api_key=core.studio_api_key,
        extra_dirs=extra,
    )
