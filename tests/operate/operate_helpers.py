"""Polling helpers for the multi-node tests (Ray's state API over the dashboard)."""

from __future__ import annotations

import json
import time
from typing import Callable, TypeVar

import pytest

from studio_helpers import followed

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, poll_s: float = 2.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception:  # noqa: BLE001 - the cluster is still coming up
            value = None
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def alive_nodes(dashboard_url: str) -> list:
    from ray.util.state import list_nodes

    return list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)


def replica_actors(dashboard_url: str, app: str, deployment: str) -> list:
    from ray.util.state import list_actors

    name = f"ServeReplica:{app}:{deployment}"
    actors = list_actors(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    return [a for a in actors if a.class_name == name]


def train_workers(dashboard_url: str) -> list:
    """Ray Train's worker actors, alive or finished (the state API keeps dead actors with their node)."""
    from ray.util.state import list_actors

    return list_actors(address=dashboard_url, filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                       raise_on_missing_output=False)


def upload_toy_dataset(http) -> str:
    """16 instruction rows for the tiny model through ``POST /api/datasets``; returns the dataset id."""
    rows = [{"instruction": f"Say the word number {i % 4}.", "output": ["alpha", "beta", "gamma", "delta"][i % 4]}
            for i in range(16)]
    r = followed(http, http.post("/api/datasets", data={"model": "tiny-llama", "max_length": "64"},
                                 files={"file": ("toy.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())}))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def follow_finetune(http, dashboard_url: str, task_id: str, timeout_s: float,
                    on_poll: Callable[[], None] | None = None) -> tuple[dict, dict[str, str]]:
    """Poll a fine-tune to its end; returns the final task and every Ray Train worker seen (actor id → node id).
    ``on_poll`` runs on each poll (e.g. to note which nodes are alive meanwhile)."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while (task := http.get(f"/api/finetune/tasks/{task_id}").json())["state"] not in (
            "completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"the fine-tune did not finish in {timeout_s:.0f} s: {task}"
        try:
            seen.update({a.actor_id: a.node_id for a in train_workers(dashboard_url)})
            if on_poll:
                on_poll()
        except Exception:  # noqa: BLE001 - the dashboard is busy; poll again
            pass
        time.sleep(2)
    seen.update({a.actor_id: a.node_id for a in train_workers(dashboard_url)})
    return task, seen
