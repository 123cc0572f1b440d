"""What a server needs to host pipelines: the store, batch jobs, the operator registry and built runners.

The gateway opens one ``PipelineService`` per app; its routes are a thin layer over it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.batch_jobs import BatchJobManager
from pipelines.builder import PipelineBuilder
from pipelines.models import VisualPipeline
from pipelines.operators.base import OperatorEnv
from pipelines.registry import NodeRegistry, default_registry
from pipelines.runner import PipelineRunner
from pipelines.settings import PipelineSettings, pipeline_settings
from pipelines.store import PipelineStore


class RunnerCache:
    """Built pipelines by content, so a corpus is indexed once, not on every run of the same pipeline."""

    def __init__(self, size: int = 16):
        self.size = size
        self._items: OrderedDict[str, PipelineRunner] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, pipeline: VisualPipeline, env: OperatorEnv, registry: NodeRegistry) -> PipelineRunner:
        key = hashlib.sha1(f"{pipeline.id}\x00{env.studio_url}\x00".encode()
                           + json.dumps(pipeline.content(), sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        runner = PipelineRunner(PipelineBuilder(registry, env).build(pipeline))
        with self._lock:
            self._items[key] = runner
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return runner


@dataclass
class PipelineService:
    settings: PipelineSettings
    store: PipelineStore
    batches: BatchJobManager
    registry: NodeRegistry = field(default_factory=default_registry)
    runners: RunnerCache = field(default_factory=RunnerCache)

    @classmethod
    def open(cls, sage_home: Path | str) -> "PipelineService":
        settings = pipeline_settings(sage_home)
        return cls(settings, PipelineStore(settings.store_dir), BatchJobManager(settings.batches_dir))
