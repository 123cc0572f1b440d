"""Pipelines: the visual flow editor's model, operators, builder and runners (online, batch, exported script)."""

from pipelines.builder import BuiltPipeline, Issue, PipelineBuilder, PipelineValidationError
from pipelines.models import Connection, Position, VisualNode, VisualPipeline, export_json, import_json
from pipelines.registry import NodeRegistry, default_registry
from pipelines.runner import NodeResult, PipelineRunner, RunResult

__all__ = [
    "BuiltPipeline",
    "Connection",
    "Issue",
    "NodeRegistry",
    "NodeResult",
    "PipelineBuilder",
    "PipelineRunner",
    "PipelineValidationError",
    "Position",
    "RunResult",
    "VisualNode",
    "VisualPipeline",
    "default_registry",
    "export_json",
    "import_json",
]
