"""Back-pressure: an engine deployment with ``max_ongoing_requests`` and ``max_queued_requests`` answers a burst
with quick 503s carrying ``Retry-After`` for what it cannot queue, not with a hang; what it accepts completes.

The app is made by ``build_studio_app`` itself, from a ``ModelConfig`` with 1 ongoing + 1 queued slot: the same
options (``max_queued_requests``, ``backpressure_config``) it gives every engine. The engine is the transformers one
on the tiny model (starts in seconds, one request at a time).
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from ray import serve

from deployments.app import build_studio_app
from deployments.config import ModelConfig, StudioConfig
from reliability_helpers import report

pytestmark = pytest.mark.reliability

BURST = 10
RETRY_AFTER_S = 2


@pytest.fixture(scope="module")
def busy_url(studio, tiny_model_dir, tmp_path_factory):
    home = str(tmp_path_factory.mktemp("bp_home"))
    model = ModelConfig(name="bp-tiny", source=str(tiny_model_dir), engine="transformers", max_model_len=512,
                        num_cpus=0, max_ongoing_requests=1, max_queued_requests=1, retry_after_s=RETRY_AFTER_S)
    config = StudioConfig(models=[model], remote=None, sage_home=home)
    serve.run(build_studio_app(config), name="busy", route_prefix="/busy")
    yield f"{studio.base_url}/busy"
    serve.delete("busy")


def test_a_burst_gets_quick_503s_with_retry_after(busy_url, pytestconfig):
    body = {"model": "bp-tiny", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 128,
            "temperature": 0}

    def ask(_: int) -> tuple[int, float, str | None, dict]:
        started = time.monotonic()
        resp = httpx.post(f"{busy_url}/v1/chat/completions", json=body, timeout=120)
        try:
            answer = resp.json()
        except ValueError:
            answer = {"not json": resp.text}
        return resp.status_code, time.monotonic() - started, resp.headers.get("retry-after"), answer

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
    assert all(r[2] == str(RETRY_AFTER_S) for r in refused), results
    for *_, error in refused:  # OpenAI's error shape, so clients show the reason and may retry
        assert error["error"]["code"] == 503 and error["error"]["type"] == "service_unavailable", error
        assert "capacity" in error["error"]["message"] and f"Retry in {RETRY_AFTER_S} s" in error["error"]["message"]
    # A refusal comes at once instead of waiting for a slot (generous bound: this machine is shared and busy).
    assert max(r[1] for r in refused) < 10, results
