"""Shared fixtures: an isolated SAGE_HOME, the tiny test model, and a running studio on real local Ray."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests never reach a model hub: everything they load is built by a fixture or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A Hugging Face cache of the run's own (set before anything imports huggingface_hub, inherited by Ray's workers):
# the tests fill it (hub_model), and never read or write the user's.
os.environ.pop("HF_HUB_CACHE", None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="sage-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)
HUB_REPO = "sage-test/tiny-llama"
# Where `scripts/setup.sh` materialized SmolLM2, before the tests point SAGE_HOME elsewhere.
USER_MODELS_DIR = Path(os.environ.get("SAGE_HOME", "~/.sage")).expanduser() / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sage_home(tmp_path_factory) -> Path:
    """A fresh SAGE_HOME for the whole run; the prepared SmolLM2 is linked in, not copied."""
    from sage_studio.settings import DEFAULT_MODEL_NAME, get_settings

    home = tmp_path_factory.mktemp("sage_home")
    (home / "models").mkdir()
    if (USER_MODELS_DIR / DEFAULT_MODEL_NAME).is_dir():
        (home / "models" / DEFAULT_MODEL_NAME).symlink_to(USER_MODELS_DIR / DEFAULT_MODEL_NAME)
    os.environ["SAGE_HOME"] = str(home)
    get_settings.cache_clear()
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(sage_home) -> Path:
    from sage_studio.model_store import build_tiny_llama

    return build_tiny_llama(sage_home / "models" / "tiny-llama")


@pytest.fixture(scope="session")
def hub_model(tiny_model_dir) -> str:
    """The tiny model in the run's Hugging Face cache as ``sage-test/tiny-llama``; returns the hub id."""
    from studio_helpers import write_hub_cache

    write_hub_cache(tiny_model_dir, HUB_REPO)
    return HUB_REPO


@pytest.fixture(scope="session")
def smollm2_dir(sage_home) -> Path:
    from sage_studio.model_store import prepare_default_model

    return prepare_default_model(sage_home / "models")


@dataclass
class RayCluster:
    address: str
    dashboard_url: str


@pytest.fixture(scope="session")
def ray_cluster(sage_home):
    """A real local Ray cluster (with its dashboard, for the Jobs and Serve REST APIs) for the whole run."""
    import ray

    dashboard_port = free_port()
    # Logical CPUs: the engine, the gateway and training workers are mostly waiting on each other on 2 cores.
    ctx = ray.init(
        address="local",
        num_cpus=8,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        log_to_driver=False,
    )
    yield RayCluster(address=ctx.address_info["gcs_address"], dashboard_url=f"http://127.0.0.1:{dashboard_port}")
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@dataclass
class Studio:
    base_url: str
    dashboard_url: str
    port: int
    config: object
    model: str


def tiny_studio_config(model_dir: Path, **overrides):
    from deployments.config import ModelConfig, StudioConfig

    # No CPU admission limit (8 running + 8 queued by default): the tiny model answers in milliseconds, and the
    # suites that fire 50 chats at once test sessions, not back-pressure (tests/reliability/test_backpressure.py does).
    model = ModelConfig(
        name="tiny-llama", source=str(model_dir), engine="vllm", max_model_len=512, cpu_kvcache_gib=1, max_lora_rank=8,
        max_ongoing_requests=64, max_queued_requests=-1,
    )
    return StudioConfig(models=[model], remote=None, **overrides)


@pytest.fixture(scope="session")
def studio(ray_cluster, tiny_model_dir) -> Studio:
    """The studio's Serve app (gateway + vLLM engine on the tiny model), on a free port, shared by the run."""
    from ray import serve

    from deployments.app import build_studio_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = tiny_studio_config(tiny_model_dir)
    serve.run(build_studio_app(config), name="studio", route_prefix="/")
    return Studio(
        base_url=f"http://127.0.0.1:{port}",
        dashboard_url=ray_cluster.dashboard_url,
        port=port,
        config=config,
        model="tiny-llama",
    )


@pytest.fixture(scope="session")
def smol_studio(studio, smollm2_dir) -> str:
    """A second studio app serving SmolLM2 under /smol, next to the tiny-model studio on the same Serve port: for
    what needs a model that follows instructions (JSON, tools, RAG). One for the run: each start loads the model
    (about a minute here). It reserves no logical CPU, so the suites that come after it schedule as without it,
    and serves no embedder (nothing here needs /v1/embeddings)."""
    from ray import serve

    from deployments.app import build_studio_app
    from deployments.config import ModelConfig, StudioConfig

    model = ModelConfig(name="smollm2", source=str(smollm2_dir), engine="vllm", max_model_len=2048, cpu_kvcache_gib=1,
                        num_cpus=0)
    config = StudioConfig(models=[model], remote=None, embedding_models=[])
    serve.run(build_studio_app(config), name="smol", route_prefix="/smol")
    return f"{studio.base_url}/smol"
