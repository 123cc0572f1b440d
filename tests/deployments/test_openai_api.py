"""The OpenAI-compatible routes through real HTTP, the official client, a real vLLM engine on the tiny model."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest


# The tiny random model answers every chat prompt greedily with the same run of newlines, so two greedy answers
# being equal proves little. Sampling with a seed gives text that depends on the prompt and the seed and is
# reproducible: the comparisons below use it.
SAMPLED = {"temperature": 1.0, "seed": 7}


@pytest.fixture(scope="module")
def client(studio) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", max_retries=0)


def chat(studio, body: dict) -> dict:
    """A non-streamed chat answer's JSON."""
    resp = httpx.post(f"{studio.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_chat_completion_non_stream(client, studio, tiny_model_dir):
    from transformers import AutoTokenizer

    messages = [{"role": "user", "content": "Hello"}]
    reply = client.chat.completions.create(model=studio.model, messages=messages, max_tokens=8, temperature=0)
    assert reply.model == studio.model
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 8
    # The messages reached the engine through the model's own chat template, token for token.
    template = AutoTokenizer.from_pretrained(tiny_model_dir).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert reply.usage.prompt_tokens == len(template)


def test_sage_default_alias_means_the_current_model(client, studio):
    ask = dict(messages=[{"role": "user", "content": "Hi"}], max_tokens=8, **SAMPLED)
    reply = client.chat.completions.create(model="sage-default", **ask)
    assert reply.model == studio.model
    assert reply.choices[0].message.content == client.chat.completions.create(model=studio.model, **ask) \
        .choices[0].message.content


def test_models_lists_alias_and_real_name(client, studio):
    ids = {m.id: m for m in client.models.list().data}
    assert studio.model in ids
    assert "sage-default" in ids


def test_stream_yields_several_chunks_then_done(studio):
    ask = {"model": studio.model, "messages": [{"role": "user", "content": "Tell me"}], "max_tokens": 16, **SAMPLED}
    body = ask | {"stream": True, "stream_options": {"include_usage": True}}
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
    # The same request not streamed: the same text, token for token, and the same counts.
    plain = chat(studio, ask)
    assert "".join(t or "" for t in texts) == plain["choices"][0]["message"]["content"]
    assert plain["choices"][0]["message"]["content"].strip(), "a sampled answer is more than whitespace"
    # vLLM leaves the empty usage details out of a stream's usage chunk, as its own server does.
    assert chunks[-1]["usage"] == {k: v for k, v in plain["usage"].items() if v is not None}


def test_stream_with_official_client(client, studio):
    ask = dict(model=studio.model, messages=[{"role": "user", "content": "Go"}], max_tokens=8, **SAMPLED)
    stream = client.chat.completions.create(stream=True, **ask)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2
    assert "".join(pieces) == client.chat.completions.create(**ask).choices[0].message.content


def streamed_completion(client, **ask) -> tuple[list, str]:
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **ask))
    return chunks, "".join(c.choices[0].text for c in chunks if c.choices)


def test_completions(client, studio):
    greedy = dict(model=studio.model, prompt="Once", max_tokens=6, temperature=0)
    streamed, text = streamed_completion(client, **greedy)
    assert len([c for c in streamed if c.choices and c.choices[0].text]) >= 2, "several chunks, not one block"
    assert streamed[-1].usage.completion_tokens == 6
    assert text == client.completions.create(**greedy).choices[0].text
    # Sampled (a token may then be part of a character, so a chunk can be empty): streamed or not, the same text.
    ask = dict(model=studio.model, prompt="Once upon a time", max_tokens=6, **SAMPLED)
    out = client.completions.create(**ask)
    assert out.choices[0].text.strip() and out.usage.completion_tokens == 6
    assert streamed_completion(client, **ask)[1] == out.choices[0].text
    assert client.completions.create(**(ask | {"prompt": "Far away"})).choices[0].text != out.choices[0].text, \
        "the prompt decides the answer"


def test_the_seed_decides_a_sampled_answer(client, studio):
    def answer(seed: int) -> str:
        return client.chat.completions.create(model=studio.model, messages=[{"role": "user", "content": "x"}],
                                              max_tokens=6, temperature=1.0, seed=seed).choices[0].message.content

    assert answer(7) == answer(7)
    # Not a constant: other seeds sample other answers (a seed that were ignored would give one answer per prompt).
    assert len({answer(seed) for seed in range(1, 6)}) >= 3


@pytest.mark.parametrize(
    "body, status, param",
    [
        ("{not json", 400, None),
        ({"model": "tiny-llama"}, 400, "messages"),  # no messages
        ({"model": "tiny-llama", "messages": "hello"}, 400, "messages"),  # wrong type
        ({"model": "tiny-llama", "messages": []}, 400, None),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**12}, 400,
         "max_tokens"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 10**12},
         400, "max_completion_tokens"),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400,
         "temperature"),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, 404, None),
    ],
)
def test_bad_requests_get_openai_errors(studio, body, status, param):
    """What vLLM's own server refuses, the studio refuses the same way (400 naming the field); an unknown model is
    the gateway's 404. (A custom role and n > 1 are accepted, as vLLM accepts them.)"""
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    resp = httpx.post(f"{studio.base_url}/v1/chat/completions", timeout=30, **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == status and len(error["message"]) > 10
    if param is not None:
        assert error["param"] == param or param in error["message"], error


def test_prompt_longer_than_context_is_400(studio):
    body = {"model": studio.model, "prompt": "word " * 2000, "max_tokens": 4}
    resp = httpx.post(f"{studio.base_url}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 400
    assert "context" in resp.json()["error"]["message"]


def test_official_client_raises_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_16_concurrent_streams_complete(studio):
    def ask(i: int) -> dict:
        return {"model": studio.model, "messages": [{"role": "user", "content": f"stream {i}"}], "max_tokens": 24,
                "temperature": 1.0, "seed": i}

    # Each stream must carry its own request's answer: what it gets alone, not a neighbour's tokens.
    alone = [chat(studio, ask(i))["choices"][0]["message"]["content"] for i in range(16)]
    assert len(set(alone)) >= 12, "seeds that mostly differ, so a mix-up would show"

    async def one(http: httpx.AsyncClient, i: int) -> tuple[int, str]:
        got, done, text = 0, False, []
        async with http.stream("POST", "/v1/chat/completions", json=ask(i) | {"stream": True}) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    got += 1
                    chunk = json.loads(line[len("data: "):])
                    text += [c["delta"].get("content") or "" for c in chunk["choices"]]
        assert done
        return got, "".join(text)

    async def main():
        async with httpx.AsyncClient(base_url=studio.base_url, timeout=120) as http:
            return await asyncio.gather(*(one(http, i) for i in range(16)))

    results = asyncio.run(main())
    assert len(results) == 16 and all(count >= 3 for count, _ in results)
    assert [text for _, text in results] == alone
