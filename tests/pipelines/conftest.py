"""Fixtures for pipeline tests: an operator environment over temporary allowed folders."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ has no __init__.py, so pytest puts tests/ on sys.path and tests/pipelines would shadow the real
# `pipelines` package as a namespace package; the repository root must come first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

from pipelines.operators.base import OperatorEnv  # noqa: E402
from pipelines.settings import bundled_docs_dir  # noqa: E402


@pytest.fixture
def pl_env(tmp_path: Path) -> OperatorEnv:
    """Allowed folders under tmp_path (uploads, files) plus the bundled docs; nothing else is readable."""
    uploads, files = tmp_path / "home" / "uploads", tmp_path / "home" / "pipelines" / "files"
    uploads.mkdir(parents=True)
    files.mkdir(parents=True)
    return OperatorEnv(
        folders={"uploads": uploads, "files": files, "docs": bundled_docs_dir()},
        output_dir=files / "outputs",
        studio_url="http://127.0.0.1:9",  # nothing listens there: only generator tests set a real one
    )


def pipelines_app(home: Path):
    """The gateway's app with only its pipelines router: no engines, no Serve."""
    from deployments.api import create_api
    from deployments.config import StudioConfig

    return create_api(StudioConfig(models=[], remote=None, sage_home=str(home)), areas=["pipelines"])


@pytest.fixture
def api(tmp_path):
    """A TestClient on the pipelines routes, over a fresh SAGE_HOME."""
    from fastapi.testclient import TestClient

    with TestClient(pipelines_app(tmp_path / "home")) as client:
        yield client
