"""Polling helpers for the multi-node tests (Ray's state API over the dashboard)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

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
