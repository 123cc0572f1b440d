"""Fixture for the multi-node tests: Ray clusters we start (and always stop) as processes we own."""

from __future__ import annotations

import pytest

from sage_studio import processes


@pytest.fixture
def run_id():
    """A run marker for the test's Ray processes; whatever carries it is ended at teardown, and the test fails
    if anything survives."""
    rid = processes.new_run_id()
    pids: list[int] = []
    yield rid, pids
    for pid in pids:  # the head first: once it is gone, terminate_owned signals every marked process, workers too
        processes.terminate_owned(pid, rid, grace_s=30)
    assert processes.owned_processes(rid) == [], "a Ray process of the test survived"
