"""Following the studio as an operator does (issue 19): /metrics after a streamed chat, x-request-id on every answer
and in the logs and session, tokens per session and API key. On the shared studio (real Ray, real vLLM, tiny model)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls)


def stream_chat(base_url: str, body: dict, headers: dict | None = None) -> tuple[httpx.Response, list[str]]:
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body | {"stream": True},
                      headers=headers, timeout=120) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    return response, events


def ray_logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path())


def files_naming(text: str, timeout: float = 30) -> list[Path]:
    """Ray log files (Serve's replica logs, the workers' output) that contain ``text``; waits for them to flush."""
    deadline = time.time() + timeout
    while True:
        found = [p for p in ray_logs_dir().rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".err")
                 and text in p.read_text(errors="replace")]
        if len(found) >= 2 or time.time() > deadline:
            return found
        time.sleep(1)


def test_a_streamed_session_chat_is_followed_by_its_request_id_and_counted_in_metrics(studio):
    base = studio.base_url
    session = httpx.post(f"{base}/sessions", json={}, timeout=30).json()["id"]
    request_id = f"trace-{uuid.uuid4().hex[:10]}"
    before = samples(httpx.get(f"{base}/metrics", timeout=30).text)
    response, events = stream_chat(base, {"model": studio.model, "session_id": session, "max_tokens": 6,
                                          "temperature": 0, "messages": [{"role": "user", "content": "Hello"}]},
                                   {"x-request-id": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id  # one header, the client's id
    # The gateway asked vLLM for the stream's usage for itself: the client, who did not, gets no usage chunk.
    chunks = [json.loads(e[6:]) for e in events if e != "data: [DONE]"]
    assert chunks and all(c["choices"] for c in chunks) and all(not c.get("usage") for c in chunks)
    assert chunks[0]["id"] == f"chatcmpl-{request_id}"  # vLLM named the request by the gateway's id

    stored = httpx.get(f"{base}/sessions/{session}", timeout=30).json()["messages"]
    assert [(m["role"], m["request_id"]) for m in stored] == [("user", request_id), ("assistant", request_id)]

    after = samples(httpx.get(f"{base}/metrics", timeout=30).text)
    model = studio.model
    assert value(after, "studio_requests_total", route="/v1/chat/completions", model=model, status="200") == \
        value(before, "studio_requests_total", route="/v1/chat/completions", model=model, status="200") + 1
    assert value(after, "studio_ttft_seconds_count", model=model) == value(before, "studio_ttft_seconds_count",
                                                                          model=model) + 1
    assert value(after, "studio_gateway_overhead_seconds_count", model=model) >= 1
    completion = value(after, "studio_tokens_total", model=model, kind="completion") - \
        value(before, "studio_tokens_total", model=model, kind="completion")
    assert completion == len([c for c in chunks if c["choices"][0]["delta"].get("content") is not None]) or \
        0 < completion <= 6
    assert value(after, "studio_tokens_total", model=model, kind="prompt") > \
        value(before, "studio_tokens_total", model=model, kind="prompt")

    # vLLM's own engine series and Serve's proxy series come through Ray's metrics export, each process reporting
    # every few seconds on its own clock: wait for both.
    deadline, page = time.time() + 60, {}
    while time.time() < deadline:
        page = samples(httpx.get(f"{base}/metrics", timeout=30).text)
        if value(page, "ray_vllm_generation_tokens_total", model_name=model) >= completion and \
                value(page, "ray_serve_num_http_requests_total", route="/v1/chat/completions") >= 1:
            break
        time.sleep(3)
    assert value(page, "ray_vllm_generation_tokens_total", model_name=model) >= completion > 0
    assert value(page, "ray_vllm_time_to_first_token_seconds_count", model_name=model) >= 1
    assert value(page, "ray_serve_num_http_requests_total", route="/v1/chat/completions") >= 1

    # Every series the Grafana board plots is on the page.
    board = json.loads((Path(__file__).parents[2] / "deployments" / "grafana_dashboard.json").read_text())
    plotted = {name for panel in board["panels"] for target in panel["targets"]
               for name in re.findall(r"\b((?:studio|ray_vllm|ray_serve)_[a-z_]+)", target["expr"])}
    served = {n for n, _ in page}
    assert len(plotted) >= 10 and plotted <= served, plotted - served

    # The id is in the gateway's log lines and the engine's (Serve's replica logs, vLLM's "Added request").
    logs = files_naming(request_id)
    names = " ".join(p.name for p in logs)
    assert "Gateway" in names, names
    assert "LLM" in names or any(f"chatcmpl-{request_id}" in p.read_text(errors="replace") for p in logs), names


def test_every_answer_carries_a_request_id_even_errors(studio):
    base = studio.base_url
    ids = set()
    for answer in (httpx.get(f"{base}/health", timeout=30),
                   httpx.post(f"{base}/v1/chat/completions", json={"model": "no-such-model",
                              "messages": [{"role": "user", "content": "hi"}]}, timeout=30),
                   httpx.get(f"{base}/api/operations/op_missing", timeout=30)):
        assert answer.headers.get("x-request-id"), answer.headers
        ids.add(answer.headers["x-request-id"])
    assert len(ids) == 3


def test_usage_is_counted_per_session_and_key_since_a_time(studio):
    base = studio.base_url
    since = time.time()
    session = httpx.post(f"{base}/sessions", json={}, timeout=30).json()["id"]
    whole = httpx.post(f"{base}/v1/chat/completions", timeout=120, json={
        "model": studio.model, "session_id": session, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Count"}]}).json()["usage"]
    response, events = stream_chat(base, {"model": studio.model, "session_id": session, "max_tokens": 3,
                                          "temperature": 0, "stream_options": {"include_usage": True},
                                          "messages": [{"role": "user", "content": "Again"}]})
    streamed = json.loads(events[-2][6:])["usage"]  # asked for: the client gets it, and the ledger counts it
    report = httpx.get(f"{base}/api/usage", params={"since": since - 0.001}, timeout=30).json()
    row = next(s for s in report["sessions"] if s["session_id"] == session)
    assert row["requests"] == 2
    assert row["prompt_tokens"] == whole["prompt_tokens"] + streamed["prompt_tokens"]
    assert row["completion_tokens"] == whole["completion_tokens"] + streamed["completion_tokens"]
    anonymous = next(k for k in report["api_keys"] if k["key_id"] == "anonymous")
    assert anonymous["completion_tokens"] >= row["completion_tokens"]
    later = httpx.get(f"{base}/api/usage", params={"since": "2999-01-01T00:00:00Z"}, timeout=30).json()
    assert later["total"]["requests"] == 0 and later["sessions"] == []
    bad = httpx.get(f"{base}/api/usage", params={"since": "yesterday"}, timeout=30)
    assert bad.status_code == 422 and "ISO 8601" in bad.json()["error"]["message"]


@pytest.mark.parametrize("given", ["", "a client's id, with spaces"])
def test_a_client_id_is_kept_as_serve_keeps_it_and_a_missing_one_is_made(studio, given):
    headers = {"x-request-id": given} if given else {}
    answer = httpx.get(f"{studio.base_url}/health", headers=headers, timeout=30)
    assert answer.headers.get_list("x-request-id") == [given] if given else \
        re.fullmatch(r"[0-9a-f-]{32,36}", answer.headers["x-request-id"])
