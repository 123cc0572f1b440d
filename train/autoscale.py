"""What Ray's autoscaler can add to the cluster, and asking it for the nodes a queued fine-tune needs.

Ray 2.60's autoscaler (the v1 monitor that ``ray up`` and ``ray start --head --autoscaling-config=…`` run) does not
publish its node types anywhere a driver can read them: it loads them from the cluster config file its monitor
process was started with, on the head node (``ray up`` puts it at ``~/ray_bootstrap_config.yaml``). So the job
manager reads that same file on the head node: a zero-CPU task pinned to the head finds this cluster's monitor
process (by the GCS port in its ``--gcs-address``) and the path in its ``--autoscaling-config``. Where the
autoscaler runs elsewhere (e.g. KubeRay's sidecar), ``SAGE_AUTOSCALING_CONFIG`` in the head's environment names a
config file with the same ``available_node_types``. Node types without an explicit ``resources`` entry (left to the
cloud provider's auto-detection) are not counted.

Asking for nodes goes through Ray's AutoscalingCoordinator, the detached actor through which Ray Data and Ray Train
share ``ray.autoscaler.sdk.request_resources`` in Ray 2.60: the coordinator merges every requester's bundles into the
one standing request and re-sends that merge every 20 s, so a direct ``request_resources`` call would be overwritten
as soon as any Ray Data pipeline (dataset validation, tokenization) has run on the cluster. The autoscaler launches
nodes until the cluster's total capacity fits the merged bundles and keeps them while the request stands; the
manager re-sends its bundles while a task waits for a node (they expire after 3 minutes, so a studio that dies does
not hold nodes forever) and cancels them once nothing waits, so idle nodes scale down.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

CONFIG_ENV = "SAGE_AUTOSCALING_CONFIG"
_MONITORS = (os.path.join("autoscaler", "_private", "monitor.py"), os.path.join("autoscaler", "v2", "monitor.py"))


@dataclass(frozen=True)
class NodeType:
    """A worker node type the autoscaler may launch: its per-node resources and how many of it at most."""

    name: str
    resources: dict[str, float]
    max_workers: int


@dataclass(frozen=True)
class Autoscaler:
    """The autoscaler of this cluster as its config file describes it."""

    config_path: str
    node_types: tuple[NodeType, ...]
    max_workers: int  # all worker nodes together

    def describe(self) -> str:
        return ", ".join(f"{t.name} ({fmt_resources(t.resources)}, up to {t.max_workers})"
                         for t in self.node_types) or "none"


def worker_bundle(cpus_per_worker: float, use_gpu: bool, worker_resources: dict[str, float] | None) -> dict[str, float]:
    """What one Ray Train worker reserves: ScalingConfig.resources_per_worker plus its GPU."""
    bundle = {"CPU": float(cpus_per_worker)}
    if use_gpu:
        bundle["GPU"] = 1.0
    for resource, amount in (worker_resources or {}).items():
        if amount > 0:
            bundle[resource] = float(amount)
    return bundle


def fits(bundle: dict[str, float], node: dict[str, float]) -> int:
    """How many copies of ``bundle`` one node with these total resources holds."""
    counts = [math.floor(node.get(r, 0) / a + 1e-9) for r, a in bundle.items() if a > 0]
    return min(counts) if counts else 1 << 30


def capacity(bundle: dict[str, float], nodes: list[dict[str, float]], autoscaler: Autoscaler | None) -> int:
    """How many workers of this shape the running nodes (their totals) plus every node the autoscaler may still
    launch could hold, within each node type's and the cluster's ``max_workers``."""
    held = sum(fits(bundle, node) for node in nodes)
    if autoscaler is None:
        return held
    room = max(0, autoscaler.max_workers - max(0, len(nodes) - 1))  # the head is not a worker
    per_node = sorted(((fits(bundle, t.resources), t.max_workers) for t in autoscaler.node_types), reverse=True)
    for each, count in per_node:
        take = min(count, room)
        held += each * take
        room -= take
    return held


def parse_config(config: dict[str, Any], path: str) -> Autoscaler:
    """The launchable worker node types of a cluster config (the ``ray up`` / ``--autoscaling-config`` schema)."""
    global_max = int(config.get("max_workers", 2))
    head = config.get("head_node_type")
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        resources = spec.get("resources")
        if name == head or not resources:
            continue
        most = int(spec.get("max_workers", global_max))
        if most > 0:
            types.append(NodeType(name, {k: float(v) for k, v in resources.items()}, most))
    return Autoscaler(path, tuple(types), global_max)


def _config_on_head(gcs_port: str) -> dict[str, Any] | None:
    """Runs on the head node: this cluster's autoscaling config file, parsed, with its path; None without one."""
    import psutil
    import yaml

    path, cwd = os.environ.get(CONFIG_ENV), None
    if not path:
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            cmd = proc.info.get("cmdline") or []
            if not any(arg.endswith(_MONITORS) for arg in cmd):
                continue
            if not any(arg.startswith("--gcs-address=") and arg.rsplit(":", 1)[-1] == gcs_port for arg in cmd):
                continue  # another Ray cluster's autoscaler on the same machine
            path = next((arg.split("=", 1)[1] for arg in cmd if arg.startswith("--autoscaling-config=")), None)
            cwd = proc.info.get("cwd")
            break
    if not path:
        return None
    path = os.path.join(cwd or "", os.path.expanduser(path))
    with open(path) as f:
        return {"path": path, "config": yaml.safe_load(f) or {}}


def find_autoscaler(timeout_s: float = 60) -> Autoscaler | None:
    """The autoscaler of the cluster this process is connected to, or None for a fixed cluster."""
    import ray

    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1]
    head = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001}, max_retries=1)(_config_on_head)
    found = ray.get(head.remote(port), timeout=timeout_s)
    return parse_config(found["config"], found["path"]) if found else None


class NodeRequest:
    """One requester's standing request for nodes, through Ray's AutoscalingCoordinator. ``set([])`` cancels it."""

    EXPIRE_S = 180.0  # what the coordinator keeps without a re-send (Ray Train uses the same)
    RESEND_S = 20.0
    RPC_TIMEOUT_S = 10.0

    def __init__(self, requester_id: str):
        self.requester_id = requester_id
        self.bundles: list[dict[str, float]] = []
        self._sent_at = 0.0
        self._coordinator = None

    def set(self, bundles: list[dict[str, float]]) -> bool:
        """Stand by these bundles (re-sent every RESEND_S); True when what stands changed."""
        import ray

        if bundles == self.bundles and (not bundles or time.monotonic() - self._sent_at < self.RESEND_S):
            return False
        if self._coordinator is None:
            self._coordinator = ray.get(_coordinator_from_head().remote(), timeout=self.RPC_TIMEOUT_S)
        if bundles:
            from ray.data._internal.cluster_autoscaler.base_autoscaling_coordinator import (
                ResourceRequestPriority,
            )

            # LOW: the coordinator also hands out reservations in priority order, and Ray Data limits itself to
            # what it reserved; the fine-tune's own pipeline must not be starved by a request for its workers.
            call = self._coordinator.request_resources.remote(
                requester_id=self.requester_id, resources=bundles, expire_after_s=self.EXPIRE_S,
                priority=ResourceRequestPriority.LOW)
        else:
            call = self._coordinator.cancel_request.remote(requester_id=self.requester_id)
        ray.get(call, timeout=self.RPC_TIMEOUT_S)
        changed, self.bundles, self._sent_at = bundles != self.bundles, list(bundles), time.monotonic()
        return changed


def fmt_resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{amount:g} {name}" for name, amount in resources.items())


def _coordinator_from_head():
    """A task on the head node that gets (or creates) Ray's cluster-wide autoscaling coordinator.

    Ray creates that detached actor with a hard affinity to the node of whoever asks first. Asked from the gateway
    replica, that can be a worker node, and the coordinator of every Ray Data and Ray Train request of the
    cluster would die with it and never come back; the head node lives as long as the cluster.
    """
    import ray

    @ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})
    def get_or_create():
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )

        return get_or_create_autoscaling_coordinator()

    return get_or_create
