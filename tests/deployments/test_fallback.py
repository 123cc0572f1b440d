"""No local engine: a clear 503, or the remote OpenAI-compatible endpoint answers instead."""

from __future__ import annotations

import httpx
import openai
import pytest
from ray import serve

from deployments.app import build_studio_app
from deployments.config import RemoteConfig, StudioConfig

# Seeded sampling: an answer that depends on the prompt and the seed, reproducible through any path (the tiny
# model's greedy answer is the same newlines for every prompt).
ASK = {"model": "sage-default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 1.0,
       "seed": 3}


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
    """The remote's own answers come back unchanged: the request was forwarded whole (messages, limits, seed)."""
    client = openai.OpenAI(base_url=f"{fallback_url}/v1", api_key="x", max_retries=0)
    remote = openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(**ASK)
    assert reply.model == studio.model
    direct = remote.chat.completions.create(**(ASK | {"model": studio.model}))
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.usage.completion_tokens == direct.usage.completion_tokens == 5
    stream = client.chat.completions.create(**(ASK | {"max_tokens": 16}), stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2
    assert "".join(pieces) == remote.chat.completions.create(**(ASK | {"max_tokens": 16})).choices[0].message.content
    ask = dict(prompt="Once", max_tokens=4, temperature=1.0, seed=3)
    text = client.completions.create(model="sage-default", **ask)
    assert text.usage.completion_tokens == 4
    assert text.choices[0].text == remote.completions.create(model=studio.model, **ask).choices[0].text
    assert studio.model in [m.id for m in client.models.list().data]
