"""Sink: append each value as one JSON line to a file under the pipeline files' outputs folder."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext

_lock = threading.Lock()


class FileSinkConfig(OperatorConfig):
    filename: str = Field(
        default="results.jsonl",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$",
        description="A plain file name (no folders); the file lives in SAGE_HOME/pipelines/files/outputs.",
    )
    append: bool = Field(default=True, description="Append to the file; when false each run replaces it.")


class FileSink(Operator):
    type_name = "file_sink"
    category = "sink"
    label = "File"
    description = "Writes each value as a JSON line to files/outputs/<filename> and passes it on."
    Config = FileSinkConfig
    inputs = {"value": Port(DataType.ANY, description="What to write.")}
    output = DataType.ANY
    cacheable = False

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> Any:
        # The name pattern already forbids separators; resolving again guards against a symlinked outputs folder.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", self.config.filename) or ".." in self.config.filename:
            raise ValueError(f"file name {self.config.filename!r} is not a plain file name")
        self.env.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.env.output_dir / self.config.filename
        line = json.dumps({"node": ctx.node_id, "value": inputs["value"]}, ensure_ascii=False, default=str)
        with _lock, path.open("a" if self.config.append else "w", encoding="utf-8") as handle:
            handle.write(line + "\n")
        ctx.log(f"wrote {len(line) + 1} bytes to files/outputs/{self.config.filename}")
        return inputs["value"]
