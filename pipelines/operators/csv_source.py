"""Source: rows of a CSV file in an allowed folder (or inline CSV), one document per row."""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import Field, model_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, RunContext
from pipelines.operators.documents import FOLDER_FIELD, FolderName, allowed_files, display_name, read_text_file
from pipelines.operators.records import records_to_documents


class CsvSourceConfig(OperatorConfig):
    folder: FolderName = FOLDER_FIELD
    path: str | None = Field(default=None, description="A .csv file with a header row, inside the folder.")
    content: str | None = Field(default=None, description="Inline CSV text with a header row (instead of a path).")
    text_field: str = Field(default="text", min_length=1, description="Column holding each row's text.")
    id_field: str | None = Field(default=None, description="Column holding each row's id (default: row number).")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="Column separator.")

    @model_validator(mode="after")
    def _one_origin(self) -> "CsvSourceConfig":
        if (self.path is None) == (self.content is None):
            raise ValueError("set exactly one of 'path' or 'content'")
        return self


class CsvSource(Operator):
    type_name = "csv_source"
    category = "source"
    label = "CSV"
    description = "Reads rows of a CSV file with a header (or inline CSV), one document per row."
    Config = CsvSourceConfig
    inputs = {}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.content is not None:
            text, origin = cfg.content, "inline"
        else:
            path = allowed_files(self.env, cfg.folder, cfg.path, max_files=1)[0]
            text, origin = read_text_file(path), display_name(self.env, path)
        reader = csv.DictReader(io.StringIO(text), delimiter=cfg.delimiter)
        if reader.fieldnames is None or cfg.text_field not in reader.fieldnames:
            columns = ", ".join(reader.fieldnames or []) or "none"
            raise ValueError(f"{origin} has no column {cfg.text_field!r} (columns: {columns})")
        docs = records_to_documents(list(reader), cfg.text_field, cfg.id_field, origin)
        ctx.log(f"read {len(docs)} row(s) from {origin}")
        return docs
