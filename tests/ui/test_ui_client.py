"""``ui.client.StudioClient`` against the real gateway (the shared ``studio`` fixture): every tab's calls, and every
kind of failure turned into one readable ``ApiError``."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from ui.client import ApiError, StudioClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def client(studio) -> StudioClient:
    return StudioClient(studio.base_url)


def test_session_lifecycle_with_a_streamed_reply(client, studio):
    async def scenario():
        session = await client.create_session()
        pieces = [p async for p in client.stream_chat([{"role": "user", "content": "Hello there"}], studio.model,
                                                       session_id=session["id"], max_tokens=12)]
        stored = await client.get_session(session["id"])
        listed = await client.list_sessions()
        renamed = await client.rename_session(session["id"], "  Renamed   chat ")
        memory = await client.session_memory(session["id"])
        stats = await client.memory_stats(session["id"])
        cleared = await client.clear_session(session["id"])
        await client.delete_session(session["id"])
        with pytest.raises(ApiError) as gone:
            await client.get_session(session["id"])
        await client.aclose()
        return session, pieces, stored, listed, renamed, memory, stats, cleared, gone.value

    session, pieces, stored, listed, renamed, memory, stats, cleared, gone = run(scenario())
    assert len(pieces) >= 2, "the reply should arrive in several streamed pieces"
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["content"] == "".join(p.text for p in pieces)
    assert {p.model for p in pieces} == {studio.model}
    assert stored["title"] == "Hello there"  # auto-titled from the first message
    assert session["id"] in [s["id"] for s in listed]
    assert renamed["title"] == "Renamed chat"
    assert memory["session_id"] == session["id"] and stats["sessions"][0]["dialog_count"] == 1
    assert cleared["message_count"] == 0
    assert gone.status == 404 and not gone.not_available and session["id"] in gone.message


def test_api_errors_are_sentences(client):
    async def scenario():
        errors = {}
        session = await client.create_session()
        for name, call in {
            "blank title": client.rename_session(session["id"], "   "),
            "unknown model": _drain(client.stream_chat([{"role": "user", "content": "hi"}], "no-such-model")),
            "missing route": client.request("GET", "/api/no-such-route"),
        }.items():
            with pytest.raises(ApiError) as caught:
                await call
            errors[name] = caught.value
        await client.delete_session(session["id"])
        await client.aclose()
        return errors

    errors = run(scenario())
    assert errors["blank title"].status == 422 and "title" in errors["blank title"].message
    assert errors["unknown model"].status == 404 and "no-such-model" in errors["unknown model"].message
    assert errors["missing route"].not_available and errors["missing route"].status == 404


async def _drain(stream):
    return [piece async for piece in stream]


def test_unreachable_studio_is_a_readable_error():
    client = StudioClient(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(ApiError, match="Cannot reach the studio API at http://127.0.0.1:.*Is the studio running"):
        run(client.list_sessions())
    with pytest.raises(ValueError, match="must start with http"):
        StudioClient("localhost:8000")


def test_pipeline_calls(client, tmp_path):
    pipeline = {"name": "UI client check", "nodes": [
        {"id": "q", "type": "text_input", "config": {}},
        {"id": "t", "type": "text_template", "config": {"template": "Q: $text"}},
    ], "connections": [{"source": "q", "target": "t"}]}

    async def scenario():
        palette = await client.operators()
        result = await client.run_pipeline(pipeline, "hello")
        saved = await client.save_pipeline(pipeline)
        exported = await client.export_pipeline(saved["id"])
        script = await client.python_export(saved["id"])
        imported = await client.import_pipeline("copy.json", exported.encode())
        await client.aclose()
        return palette, result, saved, exported, script, imported

    palette, result, saved, exported, script, imported = run(scenario())
    assert {"text_input", "generator", "retriever"} <= {op["type"] for op in palette}
    assert result["status"] == "ok" and result["result"] == {"t": "Q: hello"}
    exported_file = json.loads(exported)
    assert exported_file["format"] == "sage-studio-pipeline"
    assert [(n["id"], n["type"]) for n in exported_file["pipeline"]["nodes"]] == [("q", "text_input"),
                                                                                  ("t", "text_template")]
    # The Python export is the whole script: run on its own, it gives what the online run gave.
    (tmp_path / "pipeline.py").write_text(script)
    ran = subprocess.run([sys.executable, str(tmp_path / "pipeline.py"), "--input", "hello"], capture_output=True,
                         text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"t": "Q: hello"}
    assert imported["id"] != saved["id"] and imported["name"] == "UI client check"
    assert [(n["id"], n["type"], n["config"]) for n in imported["nodes"]] == [
        ("q", "text_input", {}), ("t", "text_template", {"template": "Q: $text"})]
