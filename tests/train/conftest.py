"""Fixtures of the fine-tuning tests: the fine-tuning routers over real HTTP on the shared real Ray cluster."""

from __future__ import annotations

import pytest
from ft_helpers import FinetuneApp, warm_up_jobs_api


@pytest.fixture(scope="module")
def ft_app(ray_cluster, tiny_model_dir, tmp_path_factory):
    """The fine-tuning routers on a fresh SAGE_HOME (models resolve from the session's SAGE_HOME)."""
    from ray.job_submission import JobSubmissionClient

    app = FinetuneApp(home=tmp_path_factory.mktemp("ft_home")).start()
    warm_up_jobs_api(JobSubmissionClient(ray_cluster.dashboard_url))  # the cluster's job agent, as the manager sees it
    yield app
    app.stop()


@pytest.fixture()
def http(ft_app):
    with ft_app.client() as client:
        yield client


