"""Turning an upload (or the bundled docs) into a stored, validated dataset.

Whatever the client sends is copied under a server-chosen name, capped at ``max_bytes`` while copying, then stored
as its data file (``train.uploads``: JSON becomes JSON Lines; Parquet, CSV/TSV, Arrow and ``datasets`` folders are
kept as they are) and validated on Ray Data with the column mapping detected or asked for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import BinaryIO

from train.store import DatasetRecord, FinetuneStore, new_id
from train.uploads import ACCEPTED, DatasetError, column_mapping, copy_capped, store_upload
from train.validation import ValidationReport, validate_dataset

__all__ = ["DatasetError", "DatasetService", "max_upload_bytes", "docs_sample_rows", "write_docs_sample"]
DEFAULT_MAX_UPLOAD_MB = 512


def max_upload_bytes() -> int:
    """The upload size limit: ``SAGE_DATASET_MAX_MB`` (default 512 MB)."""
    return int(float(os.environ.get("SAGE_DATASET_MAX_MB", DEFAULT_MAX_UPLOAD_MB)) * (1 << 20))


def _display_name(text: str | None, fallback: str) -> str:
    # Shown in lists only; strip anything path-like or unprintable so it cannot confuse a UI or a log.
    name = re.sub(r"[^\w .,()+-]", "_", Path(text or "").name)[:120].strip()
    return name or fallback


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
        columns: dict[str, str] | None = None,
    ) -> DatasetRecord:
        """Copy, store and validate an upload (``columns``: field → column, else detected from the column names);
        DatasetError when it has no usable row (nothing is kept then)."""
        dataset_id = new_id("ds")
        folder = self.store.dataset_dir(dataset_id)
        folder.mkdir(parents=True)
        try:
            upload = folder / "upload.bin"
            size = copy_capped(src, upload, self.max_bytes)
            data, kind = store_upload(upload, folder, filename, self.max_bytes)
            mapping, source = column_mapping(data, kind, columns)
            report = validate_dataset(data, model_path, model_name, max_length, columns=mapping, file_format=kind)
            report.column_mapping_source = source
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
        old = self.store.get_dataset(dataset_id).report
        report = validate_dataset(self.store.dataset_file(dataset_id), model_path, model_name, max_length,
                                  columns=old.get("column_mapping"), file_format=old.get("file_format"))
        report.column_mapping_source = old.get("column_mapping_source")
        self.store.update_dataset_report(dataset_id, report.model_dump())
        return self.store.get_dataset(dataset_id)


def _no_rows_message(report: ValidationReport) -> str:
    if report.rows_total == 0:
        return f"The file has no rows: upload {ACCEPTED}."
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
