"""Crash the gateway replica in the middle of writes, then restart the whole app: no acknowledged record is lost.

A studio app with its own SAGE_HOME takes writes from several clients: sessions and chat turns (SQLite, WAL),
pipelines (atomic JSON files), a dataset and a fine-tune task (the fine-tune store). Mid-traffic its gateway
replica is killed with ``ray.kill`` (no graceful shutdown: whatever was being written is cut); Serve restarts
it and writes go on. Then the whole app is deleted and deployed again. Every write that was answered with a 2xx
must be there afterwards; the counts of lost records are printed (and must be 0). Losing a training worker is
the fine-tuning tests' part: ``tests/train/``.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import ray
from ray import serve

from deployments.app import build_studio_app
from deployments.config import RemoteConfig, StudioConfig
from reliability_helpers import report, wait_for
from studio_helpers import followed

pytestmark = pytest.mark.reliability

APP, PREFIX = "durable", "/durable"
ROWS = b"".join(b'{"instruction": "Say %d", "output": "%d"}\n' % (i, i) for i in range(12))


class Ledger:
    """What the app acknowledged (2xx), by kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sessions: dict[str, int] = {}  # id -> acknowledged messages
        self.pipelines: set[str] = set()
        self.errors = 0

    def add_session(self, sid: str) -> None:
        with self.lock:
            self.sessions[sid] = 0

    def add_turn(self, sid: str) -> None:
        with self.lock:
            self.sessions[sid] += 2

    def add_pipeline(self, pid: str) -> None:
        with self.lock:
            self.pipelines.add(pid)

    def failed(self) -> None:
        with self.lock:
            self.errors += 1

    def size(self) -> int:
        with self.lock:
            return len(self.sessions) + sum(self.sessions.values()) + len(self.pipelines)


def deploy(config: StudioConfig) -> str:
    serve.run(build_studio_app(config), name=APP, route_prefix=PREFIX)
    return PREFIX


def write_sessions(client: httpx.Client, model: str, ledger: Ledger, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            resp = client.post("/sessions", json={"title": "durable"})
            if resp.status_code != 201:
                ledger.failed()
                continue
            sid = resp.json()["id"]
            ledger.add_session(sid)
            body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4,
                    "session_id": sid}
            if client.post("/v1/chat/completions", json=body).status_code == 200:
                ledger.add_turn(sid)
            else:
                ledger.failed()
        except httpx.HTTPError:
            ledger.failed()
            time.sleep(0.2)


def write_pipelines(client: httpx.Client, ledger: Ledger, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            resp = client.post("/api/pipelines/templates/rag_qa")
            if resp.status_code == 201:
                ledger.add_pipeline(resp.json()["id"])
            else:
                ledger.failed()
        except httpx.HTTPError:
            ledger.failed()
            time.sleep(0.2)


def gateway_replica(dashboard_url: str) -> str:
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard_url, filters=[("class_name", "=", f"ServeReplica:{APP}:Gateway"),
                                                         ("state", "=", "ALIVE")])
    assert len(actors) == 1, actors
    return actors[0].name


def test_no_record_lost_across_a_crash_and_a_restart(studio, tiny_model_dir, tmp_path, pytestconfig):
    config = StudioConfig(models=[], remote=RemoteConfig(base_url=f"{studio.base_url}/v1", model=studio.model),
                          sage_home=str(tmp_path / "home"))
    marks = [("deploy", time.monotonic())]
    deploy(config)
    url = f"{studio.base_url}{PREFIX}"
    marks.append(("dataset+task", time.monotonic()))
    ledger = Ledger()
    stop = threading.Event()
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            dataset = followed(client, client.post("/api/datasets", files={"file": ("rows.jsonl", ROWS)}))
            assert dataset.status_code == 201, dataset.text
            dataset_id = dataset.json()["id"]
            task = client.post("/api/finetune/create", json={"model": str(tiny_model_dir), "dataset_id": dataset_id,
                                                             "max_steps": 1, "name": "durable"})
            assert task.status_code == 201, task.text
            task_id = task.json()["id"]
            cancelled = client.post(f"/api/finetune/tasks/{task_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            task_state = cancelled.json()["state"]

        clients = [httpx.Client(base_url=url, timeout=60) for _ in range(3)]
        threads = [threading.Thread(target=write_sessions, args=(clients[0], studio.model, ledger, stop)),
                   threading.Thread(target=write_sessions, args=(clients[1], studio.model, ledger, stop)),
                   threading.Thread(target=write_pipelines, args=(clients[2], ledger, stop))]
        for t in threads:
            t.start()
        marks.append(("writes", time.monotonic()))
        try:
            wait_for(lambda: ledger.size() >= 20, 180, "writes to be acknowledged before the crash")
            marks.append(("after crash", time.monotonic()))
            ray.kill(ray.get_actor(gateway_replica(studio.dashboard_url), namespace="serve"), no_restart=True)
            at_crash = ledger.size()
            wait_for(lambda: ledger.size() >= at_crash + 10, 240, "writes to go on after the gateway restarted")
        finally:
            stop.set()
            for t in threads:
                t.join(130)
            for c in clients:
                c.close()

        marks.append(("restart", time.monotonic()))
        serve.delete(APP)  # the whole app down...
        deploy(config)  # ...and up again on the same SAGE_HOME
        with httpx.Client(base_url=url, timeout=120) as client:
            sessions = {s["id"] for s in client.get("/sessions").json()}
            lost_sessions = [sid for sid in ledger.sessions if sid not in sessions]
            lost_messages = 0
            for sid, acked in ledger.sessions.items():
                if sid in sessions:
                    lost_messages += max(0, acked - len(client.get(f"/sessions/{sid}").json()["messages"]))
            listed = client.get("/api/pipelines")
            assert listed.status_code == 200, listed.text  # no half-written pipeline file breaks the listing
            pipelines = {p["id"] for p in listed.json()}
            lost_pipelines = ledger.pipelines - pipelines
            datasets = {d["id"] for d in client.get("/api/datasets").json()}
            tasks = {t["id"]: t["state"] for t in client.get("/api/finetune/tasks").json()}
        marks.append(("end", time.monotonic()))
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
    phases = ", ".join(f"{a} {b[1] - a_t:.0f} s" for (a, a_t), b in zip(marks, marks[1:]))
    lost_tasks = int(tasks.get(task_id) not in (task_state, "cancelled"))  # missing, or back to an earlier state
    lost_datasets = int(dataset_id not in datasets)
    report(pytestconfig, f"[restart] acknowledged: {len(ledger.sessions)} sessions, "
                         f"{sum(ledger.sessions.values())} messages, {len(ledger.pipelines)} pipelines, 1 dataset, "
                         f"1 fine-tune task ({ledger.errors} writes refused or cut while the gateway was down); "
                         f"lost after the crash and the full restart: sessions {len(lost_sessions)}, "
                         f"messages {lost_messages}, pipelines {len(lost_pipelines)}, datasets {lost_datasets}, "
                         f"tasks {lost_tasks} (phases: {phases})")
    assert (len(lost_sessions), lost_messages, len(lost_pipelines), lost_datasets, lost_tasks) == (0, 0, 0, 0, 0)
