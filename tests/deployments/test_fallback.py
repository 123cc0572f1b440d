"""No local engine: a clear 503, or the remote OpenAI-compatible endpoint answers instead."""

from __future__ import annotations

import httpx
import openai
import pytest
from ray import serve

from deployments.app import build_studio_app
from deployments.config import RemoteConfig, StudioConfig

ASK = {"model": "sage-default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def bare_url(studio):
    """A second studio app with no local engine and no remote (like `sage studio start --no-llm`)."""
    serve.run(build_studio_app(StudioConfig(models=[], remote=None)), name="bare", route_prefix="/bare")
    yield f"{studio.base_url}/bare"
    serve.delete("bare")


@pytest.fixture(scope="module")
def fallback_url(studio):
    """No local engine, and the first studio as its remote endpoint (a real OpenAI-compatible server)."""
    remote = RemoteConfig(base_url=f"{studio.base_url}/v1", api_key="k", model=studio.model)
    serve.run(build_studio_app(StudioConfig(models=[], remote=remote)), name="fallback", route_prefix="/fallback")
    yield f"{studio.base_url}/fallback"
    serve.delete("fallback")


def test_engine_down_without_remote_is_503_saying_what_to_do(bare_url):
    resp = httpx.post(f"{bare_url}/v1/chat/completions", json=ASK, timeout=30)
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    message = resp.json()["error"]["message"]
    assert "SAGE_CHAT_BASE_URL" in message and "sage studio start" in message
    assert httpx.get(f"{bare_url}/health", timeout=10).status_code == 200


def test_requests_fall_back_to_the_remote(fallback_url, studio):
    client = openai.OpenAI(base_url=f"{fallback_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(**ASK)
    assert reply.model == studio.model
    assert reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(**(ASK | {"max_tokens": 16}), stream=True)
    assert len([c for c in stream if c.choices and c.choices[0].delta.content]) >= 2
    text = client.completions.create(model="sage-default", prompt="Once", max_tokens=4)
    assert text.usage.completion_tokens == 4
    assert studio.model in [m.id for m in client.models.list().data]
