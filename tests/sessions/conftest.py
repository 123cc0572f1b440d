"""A gateway-like FastAPI app with the sessions and memory routers, for fast route tests without Serve."""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments.api import install_error_handlers
from deployments.routers import memory as memory_router
from deployments.routers import sessions as sessions_router
from sage_studio.memory import MemoryConfig


def sessions_app(home: Path, memory: MemoryConfig) -> FastAPI:
    """Same routers, startups and error handlers as the gateway, minus the engines."""
    config = SimpleNamespace(sage_home=str(home), memory=memory)
    modules = [sessions_router, memory_router]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for module in modules:
            await module.startup(app.state, config)
        yield
        await sessions_router.shutdown(app.state)

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    for module in modules:
        app.include_router(module.router)
    return app


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
