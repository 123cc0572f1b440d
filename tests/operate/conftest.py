"""Fixtures for the multi-node tests: Ray clusters we start (and always stop) as processes we own."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from sage_cli import processes


@contextmanager
def owned_run() -> Iterator[tuple[str, list[int]]]:
    """A run marker for the test's Ray processes; whatever carries it is ended at teardown, and the test fails
    if anything survives."""
    rid = processes.new_run_id()
    pids: list[int] = []
    yield rid, pids
    for pid in pids:  # the head first: once it is gone, terminate_owned signals every marked process, workers too
        processes.terminate_owned(pid, rid, grace_s=30)
    assert processes.owned_processes(rid) == [], "a Ray process of the test survived"


@pytest.fixture
def run_id():
    with owned_run() as run:
        yield run


@pytest.fixture(scope="module")
def module_run_id():
    """The same, for a cluster that several tests of a module share."""
    with owned_run() as run:
        yield run
