"""Room on the Ray cluster for fine-tunes: what a task's workers reserve, whether the cluster could ever hold them
(the running nodes, or nodes its autoscaler may launch), what is free for the queue now, and the standing request
for nodes while the task at the head of the queue waits (``train/autoscale.py`` talks to the autoscaler).
"""

from __future__ import annotations

import logging
import time

from train import autoscale
from train.store import TaskRecord

logger = logging.getLogger(__name__)
AUTOSCALER_TTL_S = 120.0  # how long the autoscaler's node types (read from its config file) are trusted


def demand(num_workers: int, cpus_per_worker: float, use_gpu: bool,
           worker_resources: dict[str, float] | None = None) -> dict[str, float]:
    """Everything a task's workers reserve together."""
    need = {"CPU": num_workers * cpus_per_worker}
    if use_gpu:
        need["GPU"] = float(num_workers)
    for resource, amount in (worker_resources or {}).items():
        if amount > 0:
            need[resource] = num_workers * amount
    return need


def task_bundle(task: TaskRecord) -> dict[str, float]:
    """One worker's resources (tasks recorded before ``worker_bundle`` existed: from the request's fields)."""
    c = task.config
    if "worker_bundle" in c:
        return c["worker_bundle"]
    return autoscale.worker_bundle(c.get("cpus_per_worker", 1), bool(c.get("use_gpu")), c.get("worker_resources"))


def task_bundles(task: TaskRecord) -> list[dict[str, float]]:
    return [task_bundle(task)] * int(task.config.get("num_workers", 1))


def cluster_total() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def free_for_queue(submitted: list[TaskRecord]) -> dict[str, float]:
    """What is free now, less what the submitted tasks are about to take: a job whose workers have not started
    holds nothing in Ray's books yet."""
    import ray

    free = dict(ray.available_resources())
    for task in submitted:
        for resource, amount in task.config.get("demand", {}).items():
            free[resource] = free.get(resource, 0) - amount
    return free


def fits_in(need: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(r, 0) + 1e-9 >= amount for r, amount in need.items())


class ClusterCapacity:
    """The job manager's view of the cluster's room: the autoscaler's node types (re-read every few minutes) and
    the one standing request for nodes that ``owner`` holds."""

    def __init__(self, owner: str):
        self._autoscaler: tuple[float, autoscale.Autoscaler | None] | None = None  # (when read, what)
        self._nodes = autoscale.NodeRequest(owner)

    def autoscaler(self) -> autoscale.Autoscaler | None:
        """This cluster's autoscaler (its launchable node types), None on a fixed cluster. A lookup that fails
        counts as no autoscaler until the next one."""
        now = time.monotonic()
        if self._autoscaler is None or now - self._autoscaler[0] > AUTOSCALER_TTL_S:
            try:
                found = autoscale.find_autoscaler()
            except Exception as exc:  # noqa: BLE001 - unreadable config, head busy: behave as a fixed cluster
                logger.warning("could not read the autoscaler's node types: %s", exc)
                found = None
            self._autoscaler = (now, found)
        return self._autoscaler[1]

    def refusal(self, num_workers: int, bundle: dict[str, float], need: dict[str, float],
                total: dict[str, float]) -> str | None:
        """Why ``num_workers`` workers of ``bundle`` (``need`` in all) could never run here, or None when they can:
        on the running nodes (``total``), or on those plus every node the autoscaler may launch."""
        short = [(r, amount) for r, amount in need.items() if amount > total.get(r, 0)]
        if not short:
            return None
        scaler = self.autoscaler()
        if scaler is None:
            resource, amount = short[0]
            fix = ("lower num_workers or cpus_per_worker" if resource in ("CPU", "GPU")
                   else "lower num_workers or worker_resources, or add a node that offers it")
            return (f"This fine-tune needs {amount:g} {resource} ({num_workers} worker(s)) but the whole cluster has "
                    f"{total.get(resource, 0):g}: {fix}.")
        import ray

        room = autoscale.capacity(bundle, [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")], scaler)
        if room >= num_workers:
            return None
        return (f"This fine-tune needs {num_workers} worker(s) of {autoscale.fmt_resources(bundle)} each, but the "
                f"running nodes and every node the autoscaler may launch hold only {room}: lower num_workers or what "
                f"each worker asks for. Node types the autoscaler launches ({scaler.config_path}): "
                f"{scaler.describe()}.")

    def request_room(self, waiting: TaskRecord | None, starting: list[TaskRecord]) -> bool:
        """Ask the autoscaler for room for the submitted tasks whose workers have not started (``starting``) plus
        ``waiting``, the head of the queue, when a node it can launch would take that task's workers; True when the
        request covers ``waiting``. The request stands while a submitted task has not started its workers (a fresh
        node must not be scaled down under it) and is withdrawn once nothing waits."""
        wanted = self._nodes.bundles if starting else []
        covered = False
        if waiting is not None:
            scaler = self.autoscaler()
            bundle = task_bundle(waiting)
            if scaler is not None and any(autoscale.fits(bundle, t.resources) for t in scaler.node_types):
                # Not the training tasks: Ray Train's controller asks the same coordinator for its own workers once
                # it runs, and the coordinator adds requests up (asking again would launch their nodes twice).
                wanted = [b for task in starting for b in task_bundles(task)] + task_bundles(waiting)
                covered = True
        if self._nodes.set(wanted):
            logger.info("asked the autoscaler for room for %s", wanted or "nothing (request withdrawn)")
        return covered

    def withdraw(self) -> None:
        """Cancel the standing request (the studio stops: nothing is left to use the nodes it asked for)."""
        if self._nodes.bundles:
            try:
                self._nodes.set([])
            except Exception as exc:  # noqa: BLE001 - Ray may be going away too
                logger.warning("could not withdraw the autoscaler request: %s", exc)
