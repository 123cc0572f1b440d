"""The OpenAI-compatible routes through real HTTP, the official client, a real vLLM engine on the tiny model."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def client(studio) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", max_retries=0)


def test_chat_completion_non_stream(client, studio):
    reply = client.chat.completions.create(
        model=studio.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    assert reply.model == studio.model
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 3


def test_sage_default_alias_means_the_current_model(client, studio):
    reply = client.chat.completions.create(
        model="sage-default", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert reply.model == studio.model
    assert reply.usage.completion_tokens > 0


def test_models_lists_alias_and_real_name(client, studio):
    ids = {m.id: m for m in client.models.list().data}
    assert studio.model in ids
    assert "sage-default" in ids


def test_stream_yields_several_chunks_then_done(studio):
    body = {"model": studio.model, "messages": [{"role": "user", "content": "Tell me"}], "max_tokens": 16,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    events = []
    with httpx.stream("POST", f"{studio.base_url}/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in texts if t]) >= 4, "tokens must arrive as several chunks, not one block"
    assert chunks[-1]["usage"]["completion_tokens"] == 16


def test_stream_with_official_client(client, studio):
    stream = client.chat.completions.create(
        model=studio.model, messages=[{"role": "user", "content": "Go"}], max_tokens=8, stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2


def test_completions(client, studio):
    out = client.completions.create(model=studio.model, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert out.choices[0].text
    assert out.usage.completion_tokens == 6
    streamed = list(client.completions.create(model=studio.model, prompt="Once", max_tokens=6, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert len([c for c in streamed if c.choices and c.choices[0].text]) >= 2
    assert streamed[-1].usage.completion_tokens == 6


def test_same_seed_same_answer(client, studio):
    ask = dict(model=studio.model, messages=[{"role": "user", "content": "x"}], max_tokens=6, temperature=1.0, seed=7)
    assert client.chat.completions.create(**ask).choices[0].message.content == \
        client.chat.completions.create(**ask).choices[0].message.content


@pytest.mark.parametrize(
    "body, status",
    [
        ("{not json", 422),
        ({"model": "tiny-llama"}, 422),  # no messages
        ({"model": "tiny-llama", "messages": "hello"}, 422),  # wrong type
        ({"model": "tiny-llama", "messages": []}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "wizard", "content": "x"}]}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**12}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 10**12}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "n": 3}, 422),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 422),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, 404),
    ],
)
def test_bad_requests_get_openai_errors(studio, body, status):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    resp = httpx.post(f"{studio.base_url}/v1/chat/completions", timeout=30, **kwargs)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == status and len(error["message"]) > 10


def test_prompt_longer_than_context_is_400(studio):
    body = {"model": studio.model, "prompt": "word " * 2000, "max_tokens": 4}
    resp = httpx.post(f"{studio.base_url}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 400
    assert "context" in resp.json()["error"]["message"]


def test_official_client_raises_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_16_concurrent_streams_complete(studio):
    async def one(http: httpx.AsyncClient, i: int) -> int:
        body = {"model": studio.model, "messages": [{"role": "user", "content": f"stream {i}"}],
                "max_tokens": 24, "stream": True}
        got, done = 0, False
        async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    got += 1
        assert done
        return got

    async def main():
        async with httpx.AsyncClient(base_url=studio.base_url, timeout=120) as http:
            return await asyncio.gather(*(one(http, i) for i in range(16)))

    counts = asyncio.run(main())
    assert len(counts) == 16 and all(c >= 3 for c in counts)
