"""Sessions through the real chat path: the studio's Serve app, real HTTP, the official openai client, vLLM."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import openai
import pytest

FACT = "My sister Alice moved to Zanzibar to study coral reefs."
FILLER = ["Suggest a pasta recipe.", "How long do I boil spaghetti?", "Name a chess club."]
QUESTION = "Which island does my sibling live on now?"


@pytest.fixture(scope="module")
def client(studio) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", max_retries=0)


def new_session(base_url: str) -> str:
    response = httpx.post(f"{base_url}/sessions", timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def chat(client: openai.OpenAI, model: str, session_id: str, text: str, stream: bool = False) -> str:
    kwargs = dict(model=model, messages=[{"role": "user", "content": text}], max_tokens=4, temperature=0,
                  extra_body={"session_id": session_id})
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0].message.content
    return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                   if c.choices)


def test_turns_are_stored_once_for_plain_and_streamed_replies(client, studio):
    session_id = new_session(studio.base_url)
    plain = chat(client, studio.model, session_id, "Hello there")
    streamed = chat(client, studio.model, session_id, "And again", stream=True)
    session = httpx.get(f"{studio.base_url}/sessions/{session_id}", timeout=30).json()
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "Hello there"), ("assistant", plain), ("user", "And again"), ("assistant", streamed)]
    assert session["title"] == "Hello there"
    listed = httpx.get(f"{studio.base_url}/sessions", timeout=30).json()
    assert listed[0]["id"] == session_id and listed[0]["message_count"] == 4


def test_streamed_turn_is_stored_when_the_client_hangs_up_at_done(studio):
    """The studio UI closes the connection as soon as it reads [DONE]; the turn must already be stored by then."""
    for attempt in range(5):  # the hang-up races the gateway's stream ending: several tries make a lost turn show
        session_id = new_session(studio.base_url)
        body = {"model": studio.model, "messages": [{"role": "user", "content": f"Hang up {attempt}"}],
                "max_tokens": 4, "temperature": 0, "stream": True, "session_id": session_id}
        with httpx.stream("POST", f"{studio.base_url}/v1/chat/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.strip() == "data: [DONE]":
                    break
        session = httpx.get(f"{studio.base_url}/sessions/{session_id}", timeout=30).json()
        assert [m["role"] for m in session["messages"]] == ["user", "assistant"], session
        assert session["title"] == f"Hang up {attempt}"


def test_unknown_session_on_chat_is_404(client, studio):
    with pytest.raises(openai.NotFoundError) as info:
        chat(client, studio.model, "no-such-session", "hi")
    assert "no-such-session" in str(info.value)


def test_short_term_memory_does_not_recall_beyond_the_window(client, studio):
    config = httpx.get(f"{studio.base_url}/memory/config", timeout=30).json()
    assert config["backend"] == "short_term"
    session_id = new_session(studio.base_url)
    for text in [FACT] + FILLER * 2:  # 7 dialogs: the fact falls out of the default 5-dialog window
        chat(client, studio.model, session_id, text)
    chat(client, studio.model, session_id, QUESTION)
    messages = httpx.get(f"{studio.base_url}/sessions/{session_id}", timeout=30).json()["messages"]
    assert messages[-2]["content"] == QUESTION and messages[-2]["recall"] is None
    preview = httpx.get(f"{studio.base_url}/sessions/{session_id}/memory", params={"query": QUESTION}).json()
    assert preview["recalled"] == [] and FACT not in str(preview["messages"])


def test_50_concurrent_chats_into_10_sessions_lose_nothing(studio):
    sessions = [new_session(studio.base_url) for _ in range(10)]

    async def one(http: httpx.AsyncClient, i: int) -> None:
        body = {"model": studio.model, "messages": [{"role": "user", "content": f"message {i}"}],
                "max_tokens": 2, "temperature": 0, "session_id": sessions[i % 10], "stream": i % 2 == 0}
        response = await http.post(f"{studio.base_url}/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        await response.aread()

    async def run() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            await asyncio.gather(*(one(http, i) for i in range(50)))

    asyncio.run(run())
    for k, session_id in enumerate(sessions):
        messages = httpx.get(f"{studio.base_url}/sessions/{session_id}", timeout=30).json()["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert Counter(users) == Counter(f"message {i}" for i in range(k, 50, 10))  # each once, none lost
        assert [m["role"] for m in messages] == ["user", "assistant"] * 5  # pairs never interleave
