"""Source: text or markdown files from an allowed folder, one document per file."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, RunContext
from pipelines.operators.documents import (
    FOLDER_FIELD,
    FolderName,
    allowed_files,
    display_name,
    make_document,
    read_text_file,
)


class FileSourceConfig(OperatorConfig):
    folder: FolderName = FOLDER_FIELD
    path: str = Field(
        min_length=1,
        description="File name or glob pattern inside the folder, e.g. 'notes.md' or '*.md'.",
    )
    max_files: int = Field(default=200, ge=1, le=10_000, description="Refuse patterns matching more files.")


class FileSource(Operator):
    type_name = "file_source"
    category = "source"
    label = "File"
    description = "Reads text/markdown files (a name or a glob) from uploads, pipeline files or the bundled docs."
    Config = FileSourceConfig
    inputs = {}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        files = allowed_files(self.env, self.config.folder, self.config.path, self.config.max_files)
        docs = []
        for path in files:
            name = display_name(self.env, path)
            docs.append(make_document(name, read_text_file(path), source=name))
        ctx.log(f"read {len(docs)} file(s), {sum(len(d['text']) for d in docs)} characters")
        return docs
