"""A gateway-like FastAPI app with the sessions and memory routers, for fast route tests without Serve."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments.api import create_api
from deployments.config import StudioConfig
from sage_studio.memory import MemoryConfig


def sessions_app(home: Path, memory: MemoryConfig) -> FastAPI:
    """The gateway's app with only its sessions and memory routers: no engines, no Serve."""
    config = StudioConfig(models=[], remote=None, sage_home=str(home), memory=memory)
    return create_api(config, areas=["sessions", "memory"])


@pytest.fixture
def open_client(tmp_path):
    """``with open_client(backend=...) as client``: a started app; reopening on the same home is a restart."""

    @contextmanager
    def open_(backend: str = "short_term", home: Path | None = None, **memory):
        app = sessions_app(home or tmp_path / "home", MemoryConfig(backend=backend, **memory))
        with TestClient(app) as client:
            yield client

    return open_


@pytest.fixture
def client(open_client):
    with open_client() as c:
        yield c
