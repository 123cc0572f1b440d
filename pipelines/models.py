"""The pipeline document: what the visual editor draws, the store saves and the builder turns into a DAG.

The JSON shape follows the original SAGE Studio: a pipeline has nodes (id, type, label, position, config) and
connections (source/target plus the ports they join). React Flow spells ports ``sourceHandle``/``targetHandle``
and the original README writes connections as ``("source", "target")`` pairs: both are accepted on input, and
always written back in the one canonical form.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

# Bumped when the exported file's shape changes; import refuses files from a newer version.
PIPELINE_FORMAT = "sage-studio-pipeline"
PIPELINE_FORMAT_VERSION = 1

_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
DEFAULT_OUTPUT_PORT = "output"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Position(BaseModel):
    """Where the node sits on the editor canvas (pixels); it has no effect on execution."""

    x: float = Field(default=0.0, description="Horizontal canvas position.")
    y: float = Field(default=0.0, description="Vertical canvas position.")


class VisualNode(BaseModel):
    """One operator instance in a pipeline."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Unique node id within the pipeline (letters, digits, '_', '-', '.').")
    type: str = Field(description="Operator type, a name from the node registry (GET /api/operators).")
    label: str = Field(default="", description="Display name on the canvas; defaults to the id.")
    position: Position = Field(default_factory=Position, description="Canvas position.")
    config: dict[str, Any] = Field(default_factory=dict, description="Operator settings, checked against its schema.")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError(
                f"node id {value!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.'"
            )
        return value

    @model_validator(mode="after")
    def _default_label(self) -> "VisualNode":
        if not self.label:
            self.label = self.id
        return self


class Connection(BaseModel):
    """A directed edge: the output ``source_port`` of node ``source`` feeds input ``target_port`` of ``target``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: str = Field(description="Id of the node that produces the value.")
    target: str = Field(description="Id of the node that consumes it.")
    source_port: str = Field(
        default=DEFAULT_OUTPUT_PORT,
        validation_alias=AliasChoices("source_port", "sourcePort", "sourceHandle"),
        description="Output port of the source node (every operator has one output, 'output').",
    )
    target_port: str | None = Field(
        default=None,
        validation_alias=AliasChoices("target_port", "targetPort", "targetHandle"),
        description="Input port of the target node; may be left out when the target has a single input.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: Any) -> Any:
        # The original README writes connections as ("source", "target") tuples.
        if isinstance(data, (list, tuple)):
            if len(data) not in (2, 3, 4):
                raise ValueError("a connection pair must be [source, target] or [source, target, target_port]")
            keys = ("source", "target", "target_port") if len(data) == 3 else ("source", "target", "source_port", "target_port")
            return dict(zip(keys, data))
        if isinstance(data, dict):
            # React Flow sends null handles for its default port.
            data = {k: v for k, v in data.items() if v is not None}
        return data

    @property
    def label(self) -> str:
        """Human-readable name used in error messages, e.g. ``retriever.output → promptor.context``."""
        target = f"{self.target}.{self.target_port}" if self.target_port else self.target
        return f"{self.source}.{self.source_port} → {target}"


class VisualPipeline(BaseModel):
    """A whole pipeline as saved, exported and run."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(default="", description="Server-chosen id (empty for a pipeline not saved yet).")
    name: str = Field(default="Untitled pipeline", min_length=1, max_length=200, description="Display name.")
    description: str = Field(default="", max_length=5000, description="What the pipeline does.")
    nodes: list[VisualNode] = Field(default_factory=list, description="Operator instances.")
    connections: list[Connection] = Field(default_factory=list, description="Edges between node ports.")
    created_at: str = Field(default_factory=_now, description="ISO-8601 creation time (UTC).")
    updated_at: str = Field(default_factory=_now, description="ISO-8601 time of the last change (UTC).")

    def node(self, node_id: str) -> VisualNode | None:
        """The node with that id, or None."""
        return next((n for n in self.nodes if n.id == node_id), None)

    def content(self) -> dict[str, Any]:
        """What defines the pipeline's behaviour and look, without its identity and timestamps."""
        return self.model_dump(mode="json", exclude={"id", "created_at", "updated_at"})


class PipelineFile(BaseModel):
    """The versioned envelope written by export and read by import."""

    format: str = Field(default=PIPELINE_FORMAT, description="Always 'sage-studio-pipeline'.")
    version: int = Field(default=PIPELINE_FORMAT_VERSION, description="Format version of this file.")
    exported_at: str = Field(default_factory=_now, description="When the file was written (UTC).")
    pipeline: VisualPipeline


def export_json(pipeline: VisualPipeline) -> str:
    """The pipeline as a versioned JSON document (what ``Export`` downloads)."""
    return PipelineFile(pipeline=pipeline).model_dump_json(indent=2)


def import_json(text: str | bytes | dict[str, Any]) -> VisualPipeline:
    """Read an exported file (or a bare pipeline object) back; raises ``ValueError`` with a readable reason."""
    if isinstance(text, dict):
        data = text
    else:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"the file is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("a pipeline file must hold a JSON object")
    if "pipeline" in data:
        if data.get("format", PIPELINE_FORMAT) != PIPELINE_FORMAT:
            raise ValueError(f"unknown file format {data.get('format')!r}; expected {PIPELINE_FORMAT!r}")
        version = data.get("version", PIPELINE_FORMAT_VERSION)
        if not isinstance(version, int) or version > PIPELINE_FORMAT_VERSION or version < 1:
            raise ValueError(
                f"pipeline file version {version!r} is not supported (this studio reads up to {PIPELINE_FORMAT_VERSION})"
            )
        data = data["pipeline"]
    return VisualPipeline.model_validate(data)
