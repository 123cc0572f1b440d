"""Long operations as jobs, the request id outside Serve, /metrics and the usage ledger — without Ray: the core
registry and ledger on real SQLite, and the gateway's app (pipelines routes) through FastAPI's TestClient."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sage_studio.errors import StudioError
from sage_studio.operations import INTERRUPTED, OperationRunner, OperationStore
from sage_studio.usage import UsageLedger, UsageRecord, key_id
from tests.pipelines.conftest import pipelines_app
from tests.pipelines.test_pipelines_routes import diamond_body


def run_operations(store: OperationStore, works: dict) -> dict[str, str]:
    """Start each work as an operation on one loop and wait for all; name → operation id."""
    async def main():
        runner = OperationRunner(store)
        ids = {name: runner.start(name, work, request_id=f"rid-{name}").id for name, work in works.items()}
        for op_id in ids.values():
            assert (await runner.wait(op_id, 30)) is not None
        return ids

    return asyncio.run(main())


def test_operations_record_progress_result_and_why_they_failed_and_survive_a_reopen(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    seen = []

    async def merge(progress):
        progress(0.5, "half way")
        seen.append(store.get(op_ids["ok"]) if "ok" in op_ids else None)
        await asyncio.sleep(0.05)
        return {"model": "merged-canary"}

    async def refused(progress):
        raise StudioError(422, "The engine could not load the merged fine-tune.")

    async def broken(progress):
        raise KeyError("weights")

    op_ids: dict = {}
    op_ids.update(run_operations(store, {"ok": merge, "refused": refused, "broken": broken}))
    store.close()

    again = OperationStore(tmp_path / "ops.db")  # a restart reads the same records
    ok, no, bug = (again.get(op_ids[k]) for k in ("ok", "refused", "broken"))
    assert (ok.state, ok.progress, ok.message, ok.result, ok.request_id) == \
        ("succeeded", 1.0, "half way", {"model": "merged-canary"}, "rid-ok")
    assert (no.state, no.error_status, no.error) == ("failed", 422, "The engine could not load the merged fine-tune.")
    assert (bug.state, bug.error_status, bug.error) == ("failed", 500, "KeyError: 'weights'")
    assert ok.kind == "ok" and ok.created_at <= ok.updated_at
    assert again.get("op_nope") is None


def test_an_operation_whose_process_is_gone_reads_as_interrupted(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    op = store.create("model-switch")
    store.update(op.id, state="running", progress=0.3)
    import socket

    # The studio restarted under it: its recorded process no longer exists.
    store._db.execute("UPDATE operations SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:999999999", op.id))
    read = store.get(op.id)
    assert (read.state, read.error, read.progress) == ("failed", INTERRUPTED, 0.3)


def test_usage_ledger_sums_per_session_and_key_since_a_time(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.db")
    alice, bob = key_id("Bearer sk-alice"), key_id("bearer sk-bob ")
    assert alice.startswith("key-") and alice != bob and "sk-alice" not in alice
    assert key_id(None) == key_id("Basic xyz") == "anonymous"
    ledger.record(UsageRecord("m", 10, 5, "/v1/chat/completions", alice, "s1"), at=100)
    ledger.record(UsageRecord("m", 7, 3, "/v1/chat/completions", alice, "s1"), at=200)
    ledger.record(UsageRecord("m", 1, 1, "/v1/completions", bob, None), at=300)
    report = ledger.report(since=150)
    assert report.total.model_dump() == {"requests": 2, "prompt_tokens": 8, "completion_tokens": 4,
                                         "total_tokens": 12}
    assert [(s.session_id, s.requests, s.prompt_tokens, s.completion_tokens) for s in report.sessions] == \
        [("s1", 1, 7, 3)]
    assert [(k.key_id, k.total_tokens) for k in report.api_keys] == [(alice, 10), (bob, 2)]
    assert ledger.report().total.requests == 3


@pytest.fixture
def api(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(pipelines_app(tmp_path / "home")) as client:
        yield client


def test_a_run_answers_202_with_prefer_respond_async_and_the_operation_gives_the_result(api):
    pid = api.post("/api/pipelines", json=diamond_body()).json()["id"]
    started = time.monotonic()
    answer = api.post(f"/api/pipelines/{pid}/run", json={"input": "x"}, headers={"Prefer": "respond-async",
                                                                                  "x-request-id": "client-7"})
    assert answer.status_code == 202 and time.monotonic() - started < 1.0
    op_id = answer.json()["operation_id"]
    assert answer.headers["location"] == f"/api/operations/{op_id}"
    assert answer.headers.get_list("x-request-id") == ["client-7"]  # no Serve proxy in front: the app sets it
    deadline = time.time() + 30
    while (operation := api.get(f"/api/operations/{op_id}").json())["state"] != "succeeded":
        assert operation["state"] != "failed" and time.time() < deadline, operation
        time.sleep(0.1)
    assert operation["kind"] == "pipeline-run" and operation["request_id"] == "client-7"
    assert operation["result"]["result"] == {"j": "A(x)\nB(x)"}
    # Without the preference a quick run answers its result directly, as before.
    assert api.post(f"/api/pipelines/{pid}/run", json={"input": "y"}).json()["result"] == {"j": "A(y)\nB(y)"}

    missing = api.get("/api/operations/op_nope")
    assert missing.status_code == 404 and "No operation 'op_nope'" in missing.json()["error"]["message"]
    assert len(missing.headers["x-request-id"]) == 32  # made here: uuid4 hex

    page = api.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    counted = {(s.labels["route"], s.labels["status"]): s.value
               for f in text_string_to_metric_families(page.text) for s in f.samples
               if s.name == "studio_requests_total"}
    assert counted[("/api/pipelines/{pipeline_id}/run", "202")] == 1
    assert counted[("/api/pipelines/{pipeline_id}/run", "200")] == 1
    assert counted[("/api/operations/{operation_id}", "404")] == 1


def test_the_cli_follows_a_202_to_the_operations_result(api, capsys):
    """``sage pipeline`` / ``sage finetune`` calls go through ``gateway_client.call``, which polls the operation."""
    import typer

    from sage_cli.gateway_client import call

    pid = api.post("/api/pipelines", json=diamond_body()).json()["id"]
    ran = call(api, "POST", f"/api/pipelines/{pid}/run", json={"input": "z"}, headers={"Prefer": "respond-async"})
    assert ran["result"] == {"j": "A(z)\nB(z)"}
    with pytest.raises(typer.Exit):
        call(api, "GET", "/api/operations/op_nope")
    assert "No operation 'op_nope'" in capsys.readouterr().err
