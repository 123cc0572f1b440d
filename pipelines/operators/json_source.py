"""Source: records from a JSON/JSONL file in an allowed folder, or inline JSON."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, model_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, RunContext
from pipelines.operators.documents import FOLDER_FIELD, FolderName, allowed_files, display_name, read_text_file
from pipelines.operators.records import records_to_documents


class JsonSourceConfig(OperatorConfig):
    folder: FolderName = FOLDER_FIELD
    path: str | None = Field(default=None, description="A .json (array) or .jsonl file inside the folder.")
    data: str | None = Field(default=None, description="Inline JSON array of objects or strings (instead of a path).")
    text_field: str = Field(default="text", min_length=1, description="Field holding each record's text.")
    id_field: str | None = Field(default=None, description="Field holding each record's id (default: position).")

    @model_validator(mode="after")
    def _one_origin(self) -> "JsonSourceConfig":
        if (self.path is None) == (self.data is None):
            raise ValueError("set exactly one of 'path' or 'data'")
        return self


def parse_json_records(text: str, origin: str, lines: bool) -> list[Any]:
    """A JSON array, or JSON Lines; errors say which line is broken."""
    if lines:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{origin} line {number} is not valid JSON: {exc.msg}") from exc
        return records
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(value, list):
        raise ValueError(f"{origin} must hold a JSON array of records")
    return value


class JsonSource(Operator):
    type_name = "json_source"
    category = "source"
    label = "JSON"
    description = "Reads records from a JSON array or JSON Lines file (or inline JSON), one document per record."
    Config = JsonSourceConfig
    inputs = {}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.data is not None:
            records = parse_json_records(cfg.data, "inline data", lines=False)
            origin = "inline"
        else:
            path = allowed_files(self.env, cfg.folder, cfg.path, max_files=1)[0]
            origin = display_name(self.env, path)
            records = parse_json_records(read_text_file(path), origin, lines=path.suffix == ".jsonl")
        docs = records_to_documents(records, cfg.text_field, cfg.id_field, origin)
        ctx.log(f"read {len(docs)} record(s) from {origin}")
        return docs
