"""Sink: keep the last values in process memory, under a name (read them with ``collected(name)``)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext

_buffers: dict[str, deque] = {}
_lock = threading.Lock()


def collected(name: str) -> list[Any]:
    """Values a memory sink called ``name`` has received in this process, oldest first."""
    with _lock:
        return list(_buffers.get(name, ()))


class MemorySinkConfig(OperatorConfig):
    name: str = Field(default="default", min_length=1, max_length=100, description="Buffer name.")
    max_items: int = Field(default=1000, ge=1, le=100_000, description="Oldest values are dropped past this many.")


class MemorySink(Operator):
    type_name = "memory_sink"
    category = "sink"
    label = "Memory"
    description = "Keeps the last max_items values in memory under a name (for scripts and tests) and passes it on."
    Config = MemorySinkConfig
    inputs = {"value": Port(DataType.ANY, description="What to keep.")}
    output = DataType.ANY
    cacheable = False

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> Any:
        with _lock:
            buffer = _buffers.get(self.config.name)
            if buffer is None or buffer.maxlen != self.config.max_items:
                buffer = _buffers[self.config.name] = deque(buffer or (), maxlen=self.config.max_items)
            buffer.append(inputs["value"])
            size = len(buffer)
        ctx.log(f"buffer {self.config.name!r} holds {size} value(s)")
        return inputs["value"]
