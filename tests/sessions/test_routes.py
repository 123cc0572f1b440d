"""/sessions and /memory routes over HTTP (FastAPI TestClient): shapes, 404s, 422s, restart, cleanup."""

from __future__ import annotations

import asyncio
import time

import pytest

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def record(client, session_id: str, user: str, assistant: str) -> None:
    """Store a turn the way the chat route does (it calls the same object)."""
    asyncio.run(client.app.state.services.memory.record_turn(session_id, user, assistant))


def error_message(response) -> str:
    return response.json()["error"]["message"]


def test_session_lifecycle(client):
    created = client.post("/sessions")
    assert created.status_code == 201
    session = created.json()
    assert session["title"] == "New chat" and session["messages"] == []
    assert set(session) >= {"id", "title", "messages", "created_at", "last_active"}
    named = client.post("/sessions", json={"title": "  Release   notes "}).json()
    assert named["title"] == "Release notes"

    record(client, session["id"], "How do I deploy to a Ray cluster?", "Use ray up cluster.yaml.")
    got = client.get(f"/sessions/{session['id']}").json()
    assert got["title"] == "How do I deploy to a Ray cluster?"
    assert [(m["role"], m["content"]) for m in got["messages"]] == [
        ("user", "How do I deploy to a Ray cluster?"),
        ("assistant", "Use ray up cluster.yaml."),
    ]
    assert all(m["timestamp"] for m in got["messages"])

    listed = client.get("/sessions").json()
    assert [s["id"] for s in listed] == [session["id"], named["id"]]  # most recently active first
    renamed = client.patch(f"/sessions/{named['id']}/title", json={"title": "Notes v2"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Notes v2"
    assert [s["id"] for s in client.get("/sessions").json()] == [named["id"], session["id"]]

    cleared = client.post(f"/sessions/{session['id']}/clear")
    assert cleared.status_code == 200 and cleared.json()["message_count"] == 0
    assert client.get(f"/sessions/{session['id']}").json()["messages"] == []

    deleted = client.delete(f"/sessions/{session['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": session["id"], "deleted": True}
    assert client.get(f"/sessions/{session['id']}").status_code == 404
    assert [s["id"] for s in client.get("/sessions").json()] == [named["id"]]


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("get", "/sessions/{id}", None),
        ("patch", "/sessions/{id}/title", {"title": "x"}),
        ("post", "/sessions/{id}/clear", None),
        ("delete", "/sessions/{id}", None),
        ("get", "/sessions/{id}/memory", None),
        ("get", "/memory/stats?session_id={id}", None),
    ],
)
def test_unknown_ids_answer_404_with_a_message(client, method, path, body):
    response = client.request(method, path.format(id=UNKNOWN), json=body)
    assert response.status_code == 404
    assert error_message(response) == f"Session '{UNKNOWN}' does not exist."


@pytest.mark.parametrize(
    "method,path,kwargs,where",
    [
        ("post", "/sessions", {"json": {"title": ""}}, "title"),
        ("post", "/sessions", {"json": {"title": 42}}, "title"),
        ("post", "/sessions", {"json": {"name": "typo"}}, "name"),
        ("post", "/sessions", {"content": b"{not json", "headers": {"content-type": "application/json"}}, "JSON"),
        ("patch", "/sessions/{id}/title", {"json": {}}, "title"),
        ("patch", "/sessions/{id}/title", {"json": {"title": "   "}}, "visible character"),
        ("patch", "/sessions/{id}/title", {"json": {"title": "x" * 500}}, "at most"),
        ("patch", "/sessions/{id}/title", {"json": ["title"]}, "body"),
        ("post", "/sessions/cleanup?max_age_minutes=-5", {}, "max_age_minutes"),
        ("post", "/sessions/cleanup?max_age_minutes=soon", {}, "max_age_minutes"),
    ],
)
def test_bad_input_answers_422_with_a_message(client, method, path, kwargs, where):
    session_id = client.post("/sessions").json()["id"]
    response = client.request(method, path.format(id=session_id), **kwargs)
    assert response.status_code == 422, response.text
    assert where in error_message(response)
    assert client.get(f"/sessions/{session_id}").json()["title"] == "New chat"  # nothing changed


def test_sessions_survive_a_restart(open_client, tmp_path):
    home = tmp_path / "restart-home"
    with open_client("kv", home=home, max_dialogs=2) as first:
        session_id = first.post("/sessions", json={"title": "Persistent"}).json()["id"]
        record(first, session_id, "Remember the code word: pineapple.", "Pineapple, noted.")
        before = first.get(f"/sessions/{session_id}").json()
    with open_client("kv", home=home, max_dialogs=2) as second:
        after = second.get(f"/sessions/{session_id}").json()
        assert after == before
        # The restarted process rebuilds the keyword index from SQLite on first use.
        for i in range(4):
            record(second, session_id, f"Filler question {i}?", "Filler answer.")
        recall = second.get(f"/sessions/{session_id}/memory", params={"query": "What was the code word pineapple?"})
        assert [r["user"] for r in recall.json()["recalled"]] == ["Remember the code word: pineapple."]


def test_cleanup_removes_only_idle_sessions(client):
    idle = client.post("/sessions").json()["id"]
    record(client, idle, "old question", "old answer")
    time.sleep(1.5)
    active = client.post("/sessions").json()["id"]
    response = client.post("/sessions/cleanup", params={"max_age_minutes": 1 / 60})
    assert response.status_code == 200
    assert response.json() == {"removed": [idle], "count": 1, "max_age_minutes": pytest.approx(1 / 60)}
    assert [s["id"] for s in client.get("/sessions").json()] == [active]
    nothing = client.post("/sessions/cleanup").json()  # default: 30 minutes
    assert nothing["count"] == 0 and nothing["max_age_minutes"] == 30


def test_memory_config_and_stats(open_client):
    with open_client("kv", max_dialogs=2) as client:
        config = client.get("/memory/config").json()
        assert config["backend"] == "kv" and config["max_dialogs"] == 2 and config["embedding_model"] is None
        assert {b["name"]: b["available"] for b in config["available_backends"]} == {
            "short_term": True, "vdb": True, "kv": True, "graph": True}
        session_id = client.post("/sessions").json()["id"]
        record(client, session_id, "Kiwis are flightless birds.", "Yes, from New Zealand.")
        stats = client.get("/memory/stats").json()
        assert stats["backend"] == "kv" and stats["total_sessions"] == 1
        (row,) = stats["sessions"]
        assert row["session_id"] == session_id and row["dialog_count"] == 1 and row["usage_percent"] == 50.0
        assert row["index"]["type"] == "bm25" and row["index"]["documents"] == 1


def test_memory_preview_shows_window_and_recall(open_client):
    with open_client("kv", max_dialogs=1) as client:
        session_id = client.post("/sessions").json()["id"]
        record(client, session_id, "The wifi password is hunter2.", "Got it.")
        record(client, session_id, "What time is it in Tokyo?", "Evening.")
        preview = client.get(f"/sessions/{session_id}/memory", params={"query": "what is the wifi password"}).json()
        assert preview["backend"] == "kv" and preview["window"] == [1]
        assert [r["user"] for r in preview["recalled"]] == ["The wifi password is hunter2."]
        assert [m["role"] for m in preview["messages"]] == ["system", "user", "assistant", "user"]
        default = client.get(f"/sessions/{session_id}/memory").json()
        assert default["query"] == "What time is it in Tokyo?"
