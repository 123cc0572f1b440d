"""A second studio app with the vdb backend, stopped and restarted: dense recall through the real chat path, and
sessions surviving the restart.

The app has no local engine: its remote endpoint is the shared studio's OpenAI API, so chats go through the real
gateway route (session_id, memory injection, recording) and a real model, without starting a second vLLM engine.
"""

from __future__ import annotations

import httpx
import pytest

from deployments.config import RemoteConfig, StudioConfig
from sage_studio.memory import MemoryConfig

FACT = "My sister Alice moved to Zanzibar to study coral reefs."
FILLER = ["Suggest a pasta recipe.", "How long do I boil spaghetti?", "Name a chess club."]
QUESTION = "Which island does my sibling live on now?"
PREFIX = "/vdb-studio"


def _deploy(studio, home) -> str:
    from ray import serve

    from deployments.app import build_studio_app

    config = StudioConfig(
        models=[],
        remote=RemoteConfig(base_url=f"{studio.base_url}/v1", model=studio.model),
        sage_home=str(home),
        memory=MemoryConfig(backend="vdb", max_dialogs=2),
    )
    serve.run(build_studio_app(config), name="vdb-studio", route_prefix=PREFIX)
    return f"{studio.base_url}{PREFIX}"


def _chat(base_url: str, model: str, session_id: str, text: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0,
            "session_id": session_id}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text


def test_vdb_recall_through_chat_and_sessions_survive_restart(studio, tmp_path):
    from ray import serve

    home = tmp_path / "vdb-home"
    base = _deploy(studio, home)
    try:
        assert httpx.get(f"{base}/memory/config", timeout=30).json()["backend"] == "vdb"
        session_id = httpx.post(f"{base}/sessions", json={"title": "Family"}, timeout=30).json()["id"]
        for text in [FACT] + FILLER + [QUESTION]:
            _chat(base, studio.model, session_id, text)
        before = httpx.get(f"{base}/sessions/{session_id}", timeout=30).json()
        asked = before["messages"][-2]
        assert asked["content"] == QUESTION
        # What the gateway injected into the prompt of that turn: the early fact, outside the 2-dialog window.
        assert [r["user"] for r in asked["recall"]] == [FACT]
        assert asked["recall"][0]["score"] >= 0.3

        serve.delete("vdb-studio")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/sessions/{session_id}", timeout=10).raise_for_status()
        base = _deploy(studio, home)

        after = httpx.get(f"{base}/sessions/{session_id}", timeout=30).json()
        assert after == before  # title, every message, timestamps and recall records
        stats = httpx.get(f"{base}/memory/stats", params={"session_id": session_id}, timeout=30).json()
        assert stats["sessions"][0]["dialog_count"] == 5
        assert stats["sessions"][0]["index"]["persisted_vectors"] == 10  # vectors survived too
        # The fresh replica rebuilds the index from SQLite and still recalls the fact.
        preview = httpx.get(f"{base}/sessions/{session_id}/memory", params={"query": QUESTION}, timeout=60).json()
        assert FACT in [r["user"] for r in preview["recalled"]]
    finally:
        serve.delete("vdb-studio")
