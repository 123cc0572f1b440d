"""``GET /metrics``: the studio's own series, the engines' vLLM series and Ray Serve's, in Prometheus text format.

- The ``studio_`` series live in the gateway's own ``prometheus_client`` registry (not the process-wide default,
  so two apps in one process, as in the tests, never clash): requests per route, model and status, time to the
  first token of streams, tokens per model and kind, and the gateway's time before the engine.
- vLLM's engine series (``vllm:*``, exported as ``ray_vllm_*``, recorded in each engine replica by vLLM's ``RayPrometheusStatLogger``) and Ray
  Serve's (``ray_serve_*``) go through Ray's metrics export: each Ray node's metrics agent serves them in Prometheus
  text on the node's ``MetricsExportPort``. The gateway reads every alive node's page and hands the parsed families
  on (``prometheus_client.parser``), merged by name so the answer is one valid exposition however many nodes there
  are. Ray's agent reports on an interval (a few seconds), so a new request shows up there that much later.

Each gateway replica counts its own requests; with several replicas, a scrape through Serve's proxy reaches one of
them (scrape the replicas, or keep ``gateway.num_replicas: 1``, for exact totals).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger("ray.serve")

# Ray's series worth a studio's dashboard: its Serve metrics, the engines' vLLM metrics (vLLM's "vllm:x" is
# exported by Ray as "ray_vllm_x", labelled model_name, engine and ReplicaId) and the node's basic resource use.
RAY_PREFIXES = ("ray_serve_", "ray_vllm_", "ray_node_cpu", "ray_node_mem")
NODE_LIST_TTL_S = 30
FETCH_TIMEOUT_S = 5
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class StudioMetrics:
    """The gateway's series, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("studio_requests", "Requests answered by the gateway.", ["route", "model", "status"],
                                registry=self.registry)
        self.ttft = Histogram("studio_ttft_seconds", "Time from a streamed request's arrival at the gateway to its "
                              "first event from the engine.", ["model"], buckets=TTFT_BUCKETS, registry=self.registry)
        self.tokens = Counter("studio_tokens", "Tokens of answered requests, as the engine counted them.",
                              ["model", "kind"], registry=self.registry)
        self.overhead = Histogram("studio_gateway_overhead_seconds", "Time the gateway spends on a model request "
                                  "before handing it to the engine (parsing, model resolution, session memory).",
                                  ["model"], buckets=OVERHEAD_BUCKETS, registry=self.registry)


def _node_pages() -> list[str]:
    """The metrics pages of the alive Ray nodes (empty outside Ray)."""
    import ray

    if not ray.is_initialized():
        return []
    pages = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            pages.append(f"http://{node['NodeManagerAddress']}:{port}/metrics")
    return pages


class RayMetrics:
    """A collector of the Ray nodes' exported series (the engines' vLLM metrics, Ray Serve's), fetched on each
    scrape; a node that does not answer is left out and logged, never a failed scrape."""

    def __init__(self) -> None:
        self._pages: list[str] = []
        self._pages_at = 0.0
        self._families: list[Metric] = []

    async def refresh(self, client: httpx.AsyncClient) -> None:
        if time.monotonic() - self._pages_at > NODE_LIST_TTL_S:
            try:
                self._pages = await asyncio.to_thread(_node_pages)
                self._pages_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - metrics must not fail because the GCS is slow
                logger.warning("metrics: could not list the Ray nodes: %s", exc)
        texts = await asyncio.gather(*(client.get(url, timeout=FETCH_TIMEOUT_S) for url in self._pages),
                                     return_exceptions=True)
        merged: dict[str, Metric] = {}
        for url, answer in zip(self._pages, texts):
            if isinstance(answer, Exception) or answer.status_code != 200:
                logger.warning("metrics: %s did not answer: %s", url, answer)
                continue
            for family in text_string_to_metric_families(answer.text):
                if not family.name.startswith(RAY_PREFIXES):
                    continue
                have = merged.get(family.name)
                if have is None:
                    merged[family.name] = family
                else:
                    have.samples.extend(family.samples)
        self._families = list(merged.values())

    def collect(self):
        return iter(self._families)


class MetricsPage:
    """What ``GET /metrics`` renders: the studio's registry plus the Ray nodes' series."""

    def __init__(self, metrics: StudioMetrics) -> None:
        self.metrics = metrics
        self.ray = RayMetrics()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Chain(metrics.registry))
        self._registry.register(self.ray)
        self._client: httpx.AsyncClient | None = None

    async def render(self) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient()
        await self.ray.refresh(self._client)
        return generate_latest(self._registry)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class _Chain:
    """A registry's families as one collector of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()
