"""Turning an uploaded file into a stored data file, and the column mapping it is read with.

The content decides the format, not the file extension: JSON (Lines, or an array streamed item by item with ijson
into JSON Lines, so even a large ``alpaca_data.json`` never sits in memory whole), Parquet, Arrow IPC / Feather v2,
a zip or tar of a folder saved by Hugging Face ``datasets``, else CSV/TSV text. Binary formats are kept as they
came (Ray Data reads them natively); an archive is unpacked member by member, refusing links, absolute or ``..``
paths and more bytes than the upload limit, so nothing is written outside the dataset's folder.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import ijson

from sage_studio.errors import StudioError
from train.formats import FORMAT_HELP, check_mapping, detect_columns
from train.readers import DEFAULT_MAX_ROW_BYTES, column_names, hf_dataset_files
from train.store import DATA_FILES

COPY_CHUNK = 1 << 20
ACCEPTED = ("JSON Lines (one object per line), a JSON array of rows, Parquet, CSV/TSV, Arrow/Feather, or a zip/tar "
            "of a folder saved by Hugging Face datasets (save_to_disk)")


class DatasetError(StudioError):
    """An upload the studio refuses, with the HTTP status to answer and a message for the person who sent it."""


def copy_capped(src: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copy a stream to ``dest``; DatasetError(413) as soon as it passes ``max_bytes`` (the partial file is removed)."""
    size = 0
    with open(dest, "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                dest.unlink(missing_ok=True)
                raise DatasetError(413, f"The file is over the {max_bytes / (1 << 20):g} MB upload limit.")
            out.write(chunk)
    return size


def _first_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            stripped = chunk.lstrip(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return stripped[:8]
    return b""


def _is_single_object(path: Path) -> bool:
    """True when the whole file is one JSON object (possibly spread over lines), streamed, not loaded."""
    try:
        with open(path, "rb") as f:
            depth, values, first_is_map = 0, 0, False
            for _prefix, event, _value in ijson.parse(f, multiple_values=True):
                if depth == 0:
                    values += 1
                    first_is_map = first_is_map or (values == 1 and event == "start_map")
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
        return values == 1 and first_is_map
    except (ijson.JSONError, UnicodeDecodeError, ValueError):
        return False


def normalize_to_jsonl(upload: Path, dest: Path) -> str:
    """Write ``dest`` as JSON Lines from an uploaded file; returns "jsonl" or "json-array". DatasetError if hopeless."""
    head = _first_bytes(upload)
    if not head:
        raise DatasetError(422, f"The file is empty: upload {ACCEPTED}.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and head[1:2] == b"\x00"):
        raise DatasetError(422, "The file is UTF-16 encoded: save it as UTF-8 and upload it again.")
    if head.startswith(b"["):
        rows = 0
        try:
            with open(upload, "rb") as f, open(dest, "w", encoding="utf-8") as out:
                for item in ijson.items(f, "item", use_float=True):
                    out.write(json.dumps(item, ensure_ascii=False) + "\n")
                    rows += 1
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
            dest.unlink(missing_ok=True)
            raise DatasetError(
                422, f"The file starts like a JSON array but is not valid JSON after row {rows}: {exc}"
            ) from None
        upload.unlink()
        return "json-array"
    if head.startswith(b"{"):
        with open(upload, "rb") as f:
            first_line = f.readline(DEFAULT_MAX_ROW_BYTES).lstrip(b"\xef\xbb\xbf")
        try:
            json.loads(first_line)
        except (ValueError, UnicodeDecodeError):
            if _is_single_object(upload):
                raise DatasetError(
                    422,
                    "The file holds a single JSON object, not rows: upload JSON Lines (one object per line) "
                    "or a JSON array of objects.",
                ) from None
    upload.rename(dest)
    return "jsonl"


def sniff(upload: Path, filename: str | None) -> str:
    """The upload's format from its first bytes (the name only tells CSV from TSV): a ``DATA_FILES`` key, or
    "archive" for a zip/tar."""
    with open(upload, "rb") as f:
        raw = f.read(512)
    if raw.startswith(b"PAR1"):
        return "parquet"
    if raw.startswith(b"ARROW1") or raw.startswith(b"\xff\xff\xff\xff"):  # IPC file / IPC stream (continuation)
        return "arrow"
    if raw.startswith(b"FEA1"):
        raise DatasetError(422, "The file is Feather v1, which cannot be streamed: save it again as Feather v2 "
                                "(pyarrow.feather.write_feather) or Parquet.")
    if raw.startswith((b"PK\x03\x04", b"\x1f\x8b")) or raw[257:262] == b"ustar":
        return "archive"
    text = raw.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text or text.startswith((b"{", b"[", b"\xff\xfe", b"\xfe\xff")) or (len(text) > 1 and text[1:2] == b"\x00"):
        return "jsonl"  # JSON, or empty/UTF-16: normalize_to_jsonl says what is wrong
    first_line = text.split(b"\n", 1)[0]
    name = (filename or "").lower()
    if name.endswith((".tsv", ".tab")) or (b"\t" in first_line and b"," not in first_line):
        return "tsv"
    if name.endswith(".csv") or b"," in first_line:
        return "csv"
    return "jsonl"  # one column of text without commas: JSON Lines' checks give the clearer error


def _members(archive: Path):
    """(name, size, open) per regular file of a zip or tar; DatasetError for links and unsafe names."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, lambda i=info: zf.open(i)
        return
    try:
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise DatasetError(422, f"The archive holds a link or special file ({member.name}): only "
                                            "plain files are accepted.")
                yield member.name, member.size, lambda m=member: tf.extractfile(m)
    except tarfile.TarError as exc:
        raise DatasetError(422, f"The file looks like an archive but cannot be read: {exc}.") from None


def unpack_dataset_folder(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Unpack a zip/tar holding a ``datasets`` folder into ``dest`` (the folder itself, wherever it was inside)."""
    total = 0
    dest.mkdir()
    for name, size, open_member in _members(archive):
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not parts or name.startswith("/") or ".." in parts or any(":" in p for p in parts):
            raise DatasetError(422, f"The archive holds an unsafe path ({name[:100]}).")
        if parts[0] == "__MACOSX" or parts[-1].startswith("._"):
            continue  # macOS resource forks, added by Finder's "Compress"
        total += size
        if total > max_bytes:
            raise DatasetError(413, f"The archive unpacks to more than the {max_bytes / (1 << 20):g} MB upload limit.")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, COPY_CHUNK)
    roots = sorted({p.parent for p in dest.rglob("*") if p.name in ("state.json", "dataset_dict.json")},
                   key=lambda p: len(p.parts))
    if not roots:
        raise DatasetError(422, "The archive holds no folder saved by Hugging Face datasets (no state.json or "
                                f"dataset_dict.json); upload {ACCEPTED}.")
    try:
        hf_dataset_files(roots[0])
    except ValueError as exc:
        raise DatasetError(422, f"The datasets folder in the archive cannot be read: {exc}.") from None
    return roots[0]


def store_upload(upload: Path, folder: Path, filename: str | None, max_bytes: int) -> tuple[Path, str]:
    """Move an upload into the dataset's folder as its data file (or folder); returns it and its file format."""
    kind = sniff(upload, filename)
    if kind == "jsonl":
        dest = folder / DATA_FILES["jsonl"]
        return dest, normalize_to_jsonl(upload, dest)
    if kind == "archive":
        unpacked = folder / "unpacked"
        try:
            root = unpack_dataset_folder(upload, unpacked, max_bytes)
            dest = folder / DATA_FILES["hf-datasets"]
            root.rename(dest)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
        upload.unlink()
        return dest, "hf-datasets"
    dest = folder / DATA_FILES[kind]
    upload.rename(dest)
    try:
        column_names(dest)  # reads the footer, schema or header: a truncated or mislabelled file fails here
    except Exception as exc:  # noqa: BLE001 - pyarrow's many error types all mean "cannot read this"
        raise DatasetError(422, f"The file looks like {kind} but cannot be read: {str(exc)[:200]}.") from None
    return dest, kind


def _json_keys(path: Path, rows: int = 50) -> list[str]:
    """The keys of the first JSON objects of a JSON Lines file (for the column mapping of JSON datasets)."""
    keys: dict[str, None] = {}
    with open(path, "rb") as f:
        for _ in range(rows):
            line = f.readline(DEFAULT_MAX_ROW_BYTES)
            if not line:
                break
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                keys.update(dict.fromkeys(map(str, row)))
    return list(keys)


def column_mapping(data: Path, kind: str, requested: dict[str, str] | None) -> tuple[dict[str, str], str | None]:
    """The mapping (field → column) to read a stored dataset with, and whether it was "user"-set or "detected";
    identity mappings are left out. DatasetError(422) naming the columns when a tabular file fits no format or a
    requested column is not there."""
    columns = _json_keys(data) if kind in ("jsonl", "json-array") else column_names(data)
    if requested:
        try:
            check_mapping(requested)
        except ValueError as exc:
            raise DatasetError(422, f"Column mapping: {exc}.") from None
        missing = [c for c in requested.values() if c not in columns]
        if missing and kind not in ("jsonl", "json-array"):  # JSON rows may differ: their checks say which lack it
            raise DatasetError(422, f"Column mapping: the file has no column {', '.join(map(repr, missing))}; its "
                                    f"columns are {', '.join(columns)}.")
        return dict(requested), "user"
    found = detect_columns(columns)
    if found is None:
        if kind in ("jsonl", "json-array"):
            return {}, None  # each row's own fields decide, and the per-row report says what is missing
        raise DatasetError(422, f"The file's columns ({', '.join(columns[:12]) or 'none'}) match no dataset format: "
                                f"expected {FORMAT_HELP}. Name the columns to use with the 'columns' field, e.g. "
                                '{"instruction": "my_prompt", "output": "my_answer"}.')
    mapping = {field: col for field, col in found[1].items() if field != col}
    return mapping, "detected" if mapping else None
