"""Back-pressure: an engine deployment with ``max_ongoing_requests`` and ``max_queued_requests`` answers a burst
with quick 503s carrying ``Retry-After`` for what it cannot queue, not with a hang; what it accepts completes.

The engine is the transformers one on the tiny model (starts in seconds, one request at a time), composed with
the real gateway the same way ``build_studio_app`` composes them, plus the two Serve limits and the
``backpressure_config`` that the engine deployment needs for the gateway to say when to retry.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from ray import serve
from ray.serve.config import BackpressureConfig

from deployments.config import ModelConfig, StudioConfig
from deployments.engine_deployment import LLMDeployment
from deployments.gateway import Gateway
from reliability_helpers import report

pytestmark = pytest.mark.reliability

BURST = 10


@pytest.fixture(scope="module")
def busy_url(studio, tiny_model_dir, tmp_path_factory):
    home = str(tmp_path_factory.mktemp("bp_home"))
    model = ModelConfig(name="bp-tiny", source=str(tiny_model_dir), engine="transformers", max_model_len=512,
                        max_ongoing_requests=1)
    config = StudioConfig(models=[model], remote=None, sage_home=home)
    engine = LLMDeployment.options(
        name="LLM-bp-tiny", max_ongoing_requests=1, max_queued_requests=1,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=2),
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": {"SAGE_HOME": home}}},
    ).bind(model.model_dump(), None)
    gateway = Gateway.options(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": {"SAGE_HOME": home}}})
    serve.run(gateway.bind(config.model_dump(), {model.name: engine}), name="busy", route_prefix="/busy")
    yield f"{studio.base_url}/busy"
    serve.delete("busy")


def test_a_burst_gets_quick_503s_with_retry_after(busy_url, pytestconfig):
    body = {"model": "bp-tiny", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 128,
            "temperature": 0}

    def ask(_: int) -> tuple[int, float, str | None]:
        started = time.monotonic()
        resp = httpx.post(f"{busy_url}/v1/chat/completions", json=body, timeout=120)
        return resp.status_code, time.monotonic() - started, resp.headers.get("retry-after")

    assert ask(0)[0] == 200  # warm: the model is loaded
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(ask, range(BURST)))
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    report(pytestconfig, f"[back-pressure] burst of {BURST} on 1 ongoing + 1 queued: {len(ok)} answered "
                         f"(slowest {max(r[1] for r in ok):.1f} s), {len(refused)} refused with 503 "
                         f"(slowest refusal {max((r[1] for r in refused), default=0):.2f} s, Retry-After "
                         f"{sorted({r[2] for r in refused})})")
    assert len(ok) + len(refused) == BURST, results
    assert len(ok) >= 2 and refused, results
    assert all(r[2] == "2" for r in refused), results
    # A refusal comes at once instead of waiting for a slot (generous bound: this machine is shared and busy).
    assert max(r[1] for r in refused) < 10, results
