"""What every operator shares: ports and their data types, the environment it runs in, and its lifecycle.

Lifecycle (one, for every operator): the builder constructs ``Operator(config, env)`` once per built pipeline
with a config already validated against ``Operator.Config``; the runner then calls ``run(inputs, ctx)`` once per
pipeline input, from a worker thread, with ``inputs`` keyed by input-port name. ``run`` returns the value of the
single output port. Heavy resources (models, indexes) are loaded lazily in ``run`` and cached per process, so a
built pipeline can serve many inputs (online in the gateway, or per Ray Data worker in batch).

Values flowing between ports are plain JSON-able Python data, one shape per data type (see ``DataType``).
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class DataType(str, enum.Enum):
    """The kinds of values that travel along connections."""

    TEXT = "text"  # str
    DOCUMENTS = "documents"  # list of {"id", "text", "metadata", optional "score", optional "embedding"}
    MESSAGES = "messages"  # chat messages: list of {"role", "content"}
    METRIC = "metric"  # {"name", "value", ...details}
    ANY = "any"  # accepts every type; only sinks and joins use it


def compatible(produced: DataType, accepted: DataType) -> bool:
    """Whether an output of type ``produced`` may feed an input of type ``accepted``."""
    return accepted is DataType.ANY or produced is DataType.ANY or produced is accepted


@dataclass(frozen=True)
class Port:
    """An input port: its data type, whether it must be connected, and whether several edges may feed it."""

    type: DataType
    required: bool = True
    multiple: bool = False
    description: str = ""


class OperatorConfig(BaseModel):
    """Base of every operator's config: unknown keys are an error so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class OperatorEnv:
    """Where a pipeline runs: the folders file operators may touch and the LLM endpoint generators call.

    The same pipeline runs in the gateway, in Ray Data workers and in an exported script; each of those builds
    its env with ``OperatorEnv.from_environment`` (or passes one explicitly) so the pipeline JSON stays the same.
    ``folders`` maps the names a config may use (``uploads``, ``files``, ``docs``, extras) to allowed folders.
    """

    folders: dict[str, Path]
    output_dir: Path
    studio_url: str
    api_key: str | None = None

    @classmethod
    def from_environment(cls, studio_url: str | None = None, sage_home: Path | str | None = None) -> "OperatorEnv":
        """Defaults from ``SAGE_HOME``, ``SAGE_STUDIO_URL``, ``SAGE_STUDIO_API_KEY``, ``SAGE_PIPELINE_ALLOWED_DIRS``."""
        from pipelines.settings import pipeline_settings

        settings = pipeline_settings(sage_home)
        return cls(
            folders=settings.folders(),
            output_dir=settings.files_dir / "outputs",
            studio_url=(studio_url or settings.studio_url).rstrip("/"),
            api_key=settings.studio_api_key,
        )

    def folder(self, name: str) -> Path:
        """The allowed folder called ``name``; a clear error names the ones that exist."""
        if name not in self.folders:
            raise ValueError(f"unknown folder {name!r}; pipelines may read: {', '.join(sorted(self.folders))}")
        return self.folders[name]

    def resolve_inside(self, path: str, folder: str) -> Path:
        """Resolve ``path`` (relative to the named folder, or absolute) and refuse anything outside allowed folders.

        Symlinks and ``..`` are resolved first, so neither can lead out of an allowed folder.
        """
        if "\x00" in path:
            raise ValueError("the path contains a NUL byte")
        raw = Path(path).expanduser()
        candidate = raw if raw.is_absolute() else self.folder(folder) / raw
        resolved = candidate.resolve()
        for root in self.folders.values():
            root = root.resolve()
            if resolved == root or resolved.is_relative_to(root):
                return resolved
        raise PermissionError(
            f"path {path!r} leads outside the folders pipelines may read ({', '.join(sorted(self.folders))})"
        )


@dataclass
class RunContext:
    """Per-call context handed to ``Operator.run``: the pipeline input and this node's log."""

    node_id: str
    pipeline_input: Any = None
    logs: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        """Add a line to this node's log (returned with the run results)."""
        elapsed = time.perf_counter() - self.started
        self.logs.append(f"[{elapsed:7.3f}s] {message}")


class Operator:
    """Base class of every operator. Subclasses set the class attributes and implement ``run``."""

    type_name: ClassVar[str]
    category: ClassVar[str]  # source, transform, rag, llm, evaluator, sink
    label: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[OperatorConfig]] = OperatorConfig
    inputs: ClassVar[dict[str, Port]] = {}
    output: ClassVar[DataType] = DataType.ANY
    # False for operators whose result must not be reused across inputs (LLM calls, side effects).
    cacheable: ClassVar[bool] = True

    def __init__(self, config: OperatorConfig, env: OperatorEnv):
        self.config = config
        self.env = env

    @property
    def reads_input(self) -> bool:
        """Whether the output depends on the pipeline input itself (only sources that read it say yes)."""
        return False

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


_LOCK = threading.Lock()


def once_per_process(key: str, factory):
    """Build a heavy object (a model) once per process and share it between operators and threads."""
    with _LOCK:
        cache = _PROCESS_CACHE
        if key not in cache:
            cache[key] = factory()
        return cache[key]


_PROCESS_CACHE: dict[str, Any] = {}
