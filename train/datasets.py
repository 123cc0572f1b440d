"""Turning an upload (or the bundled docs) into a stored, validated dataset.

Whatever the client sends is copied under a server-chosen name, capped at ``max_bytes`` while copying, then
normalized to JSON Lines: a JSON array is streamed item by item (ijson), so even a large ``alpaca_data.json``
never sits in memory whole. The content decides the format, not the file extension.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import BinaryIO

import ijson

from sage_studio.errors import StudioError
from train.store import DatasetRecord, FinetuneStore, new_id
from train.validation import DEFAULT_MAX_ROW_BYTES, ValidationReport, validate_dataset

COPY_CHUNK = 1 << 20
DEFAULT_MAX_UPLOAD_MB = 512


class DatasetError(StudioError):
    """An upload the studio refuses, with the HTTP status to answer and a message for the person who sent it."""


def max_upload_bytes() -> int:
    """The upload size limit: ``SAGE_DATASET_MAX_MB`` (default 512 MB)."""
    return int(float(os.environ.get("SAGE_DATASET_MAX_MB", DEFAULT_MAX_UPLOAD_MB)) * (1 << 20))


def _display_name(text: str | None, fallback: str) -> str:
    # Shown in lists only; strip anything path-like or unprintable so it cannot confuse a UI or a log.
    name = re.sub(r"[^\w .,()+-]", "_", Path(text or "").name)[:120].strip()
    return name or fallback


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
        raise DatasetError(422, "The file is empty: upload JSON Lines (one object per line) or a JSON array of rows.")
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


class DatasetService:
    """Stores uploads as datasets and validates them on Ray Data (the caller must be connected to Ray)."""

    def __init__(self, store: FinetuneStore, max_bytes: int | None = None):
        self.store = store
        self.max_bytes = max_bytes if max_bytes is not None else max_upload_bytes()

    def create(
        self,
        src: BinaryIO,
        filename: str | None,
        name: str | None,
        model_path: str | None,
        model_name: str | None,
        max_length: int,
    ) -> DatasetRecord:
        """Copy, normalize and validate an upload; DatasetError when it has no usable row (nothing is kept then)."""
        dataset_id = new_id("ds")
        folder = self.store.dataset_dir(dataset_id)
        folder.mkdir(parents=True)
        try:
            upload = folder / "upload.bin"
            size = copy_capped(src, upload, self.max_bytes)
            data = self.store.dataset_file(dataset_id)
            normalize_to_jsonl(upload, data)
            report = validate_dataset(data, model_path, model_name, max_length)
            if report.rows_valid == 0:
                raise DatasetError(422, _no_rows_message(report))
            record = DatasetRecord(
                id=dataset_id,
                name=_display_name(name or filename, dataset_id),
                filename=_display_name(filename, "upload"),
                size_bytes=size,
                format=report.format,
                rows_valid=report.rows_valid,
                report=report.model_dump(),
                created_at=time.time(),
            )
            return self.store.add_dataset(record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def revalidate(self, dataset_id: str, model_path: str | None, model_name: str | None, max_length: int):
        """Recompute the report (e.g. token stats for another model or max length) and store it."""
        report = validate_dataset(self.store.dataset_file(dataset_id), model_path, model_name, max_length)
        self.store.update_dataset_report(dataset_id, report.model_dump())
        return self.store.get_dataset(dataset_id)


def _no_rows_message(report: ValidationReport) -> str:
    if report.rows_total == 0:
        return "The file has no rows: upload JSON Lines (one object per line) or a JSON array of rows."
    shown = "; ".join(f"row {e.row}: {e.reason}" for e in report.errors[:3])
    return f"None of the {report.rows_total} rows can be used. {shown}."


def docs_sample_rows(fmt: str = "qa") -> list[dict]:
    """Rows made from the bundled documentation, one per section: "qa" asks what the docs say about the section,
    "alpaca" asks to explain it; the section text is the answer either way."""
    from sage_studio.bundled_docs import load_docs

    rows = []
    for filename, text in load_docs():
        title, sections, current, body = Path(filename).stem, [], None, []
        for line in text.splitlines() + ["# end"]:
            if line.startswith("#"):
                if current and "\n".join(body).strip():
                    sections.append((current, "\n".join(body).strip()))
                current, body = line.lstrip("#").strip(), []
                if line.startswith("# ") and not sections:
                    title = current
            else:
                body.append(line)
        for heading, content in sections:
            topic = heading if heading == title else f"{heading} ({title})"
            pairs = [(f"What does SAGE Studio's documentation say about {topic}?", content)]
            paragraphs = [p.strip() for p in content.split("\n\n") if len(p.strip()) > 80]
            if len(paragraphs) > 1:
                # One more pair per paragraph, keyed by its opening words: more rows, each one short.
                for para in paragraphs:
                    opening = " ".join(para.split()[:6])
                    pairs.append((f"In SAGE Studio's docs on {topic}, what follows \"{opening}\"?", para))
            for question, answer in pairs:
                if fmt == "qa":
                    rows.append({"question": question, "answer": answer})
                else:
                    rows.append({"instruction": question, "output": answer})
    return rows


def write_docs_sample(path: Path, fmt: str = "qa") -> int:
    """Write the docs sample as JSON Lines; returns the row count."""
    rows = docs_sample_rows(fmt)
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)
