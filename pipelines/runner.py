"""Run a built pipeline on one input: a real DAG walk, independent branches in parallel, joins wait for all.

The result holds every node's status, output, timing and log, and ``result``: the outputs of the terminal nodes
(the ones nothing reads from). Online runs in the gateway, batch rows on Ray Data and exported scripts all call
``PipelineRunner.run``, so they give the same answer for the same input.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipelines.builder import BuiltPipeline
from pipelines.operators.base import RunContext

NodeStatus = Literal["ok", "error", "skipped"]
PREVIEW_ITEMS = 50


def transportable(value: Any) -> Any:
    """The value without embedding vectors (384 floats per passage are noise in a response or an output file)."""
    if isinstance(value, list):
        return [transportable(v) for v in value]
    if isinstance(value, dict):
        return {k: (f"<{len(v)} floats>" if k == "embedding" and isinstance(v, list) else transportable(v))
                for k, v in value.items()}
    return value


class NodeResult(BaseModel):
    """What one node did during a run."""

    node_id: str
    type: str
    status: NodeStatus
    output: Any = Field(default=None, description="The node's output (lists longer than 50 items are cut).")
    output_items: int | None = Field(default=None, description="Length of the full output when it is a list.")
    error: str | None = None
    duration_ms: float = 0.0
    cached: bool = Field(default=False, description="The output was reused from an earlier input (static node).")
    logs: list[str] = Field(default_factory=list)


class RunResult(BaseModel):
    """The answer of an online run."""

    run_id: str
    pipeline_id: str
    pipeline_name: str
    status: Literal["ok", "error"]
    error: str | None = Field(default=None, description="The first failure, naming its node.")
    input: Any = None
    result: dict[str, Any] = Field(default_factory=dict, description="Outputs of the terminal nodes, by node id.")
    nodes: dict[str, NodeResult] = Field(default_factory=dict, description="Every node, in execution order.")
    duration_ms: float = 0.0


def _describe(exc: BaseException) -> str:
    # Errors operators raise on purpose are sentences already; anything else keeps its class name for debugging.
    if isinstance(exc, (ValueError, PermissionError, FileNotFoundError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class PipelineRunner:
    """Executes a ``BuiltPipeline``; one runner can serve many inputs (and many threads) at once."""

    def __init__(self, built: BuiltPipeline, max_workers: int = 4):
        self.built = built
        self.max_workers = max_workers
        self._static = built.static_nodes()
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()

    def run(self, pipeline_input: Any = None) -> RunResult:
        """Run every node once for ``pipeline_input`` (a text, or a JSON object such as a batch row)."""
        built = self.built
        started = time.perf_counter()
        outputs: dict[str, Any] = {}
        results: dict[str, NodeResult] = {}
        waiting = {n: built.graph.in_degree(n) for n in built.order}
        blocked: dict[str, str] = {}  # node → the failed node that stops it
        ready = deque(n for n in built.order if waiting[n] == 0)
        running: dict[Future, str] = {}

        def finish(node: str) -> None:
            # A join becomes ready only once every branch feeding it has finished.
            result = results[node]
            cause = blocked.get(node, node) if result.status != "ok" else None
            for succ in built.graph.successors(node):
                if cause is not None:
                    blocked.setdefault(succ, cause)
                waiting[succ] -= 1
                if waiting[succ] == 0:
                    ready.append(succ)

        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="pipeline") as pool:
            while ready or running:
                while ready:
                    node = ready.popleft()
                    if node in blocked:
                        results[node] = NodeResult(node_id=node, type=built.pipeline.node(node).type,
                                                   status="skipped",
                                                   error=f"skipped because node '{blocked[node]}' failed")
                        finish(node)
                    else:
                        running[pool.submit(self._run_node, node, outputs, pipeline_input)] = node
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    node = running.pop(future)
                    results[node], value = future.result()
                    if results[node].status == "ok":
                        outputs[node] = value
                    finish(node)

        ordered = {n: results[n] for n in built.order if n in results}
        errors = [r for r in ordered.values() if r.status == "error"]
        return RunResult(
            run_id=uuid.uuid4().hex[:12],
            pipeline_id=built.pipeline.id,
            pipeline_name=built.pipeline.name,
            status="error" if errors else "ok",
            error=f"Node '{errors[0].node_id}' ({errors[0].type}) failed: {errors[0].error}" if errors else None,
            input=pipeline_input,
            result={n: transportable(outputs[n]) for n in built.terminals if n in outputs},
            nodes=ordered,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _inputs(self, node: str, outputs: dict[str, Any]) -> dict[str, Any]:
        op = self.built.operators[node]
        inputs: dict[str, Any] = {}
        for port, sources in self.built.feeds[node].items():
            # A multi-input port (a join) gets (source node id, value) pairs, in connection order.
            inputs[port] = [(s, outputs[s]) for s in sources] if op.inputs[port].multiple else outputs[sources[0]]
        return inputs

    def _run_node(self, node: str, outputs: dict[str, Any], pipeline_input: Any) -> tuple[NodeResult, Any]:
        op = self.built.operators[node]
        ctx = RunContext(node_id=node, pipeline_input=pipeline_input)
        static = node in self._static
        if static:
            with self._cache_lock:
                if node in self._cache:
                    value = self._cache[node]
                    return self._result(node, "ok", value, ctx, cached=True), value
        try:
            value = op.run(self._inputs(node, outputs), ctx)
        except Exception as exc:  # noqa: BLE001 - a failing node is reported, the other branches go on
            message = _describe(exc)
            ctx.log(f"error: {message}")
            return self._result(node, "error", None, ctx, error=message), None
        if static:
            with self._cache_lock:
                self._cache[node] = value
        return self._result(node, "ok", value, ctx), value

    def _result(self, node: str, status: NodeStatus, value: Any, ctx: RunContext, error: str | None = None,
                cached: bool = False) -> NodeResult:
        items = len(value) if isinstance(value, list) else None
        shown = value[:PREVIEW_ITEMS] if items is not None and items > PREVIEW_ITEMS else value
        return NodeResult(
            node_id=node,
            type=self.built.pipeline.node(node).type,
            status=status,
            output=transportable(shown),
            output_items=items,
            error=error,
            duration_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
            cached=cached,
            logs=ctx.logs + (["output reused from an earlier input"] if cached else []),
        )
