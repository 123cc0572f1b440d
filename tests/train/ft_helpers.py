"""Helpers of the fine-tuning tests: the datasets/finetune/system routers served over real HTTP (uvicorn in a
thread) on the shared real Ray cluster (with its dashboard, for the Jobs API), and dataset builders."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from studio_helpers import followed

AREAS = ("finetune", "datasets", "system", "sessions", "feedback")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FinetuneApp:
    """A running gateway made of the fine-tuning routers; ``restart()`` stops it and starts a new one."""

    home: Path
    base_url: str = ""
    server: object = None
    thread: threading.Thread | None = None
    app: object = None

    def start(self) -> "FinetuneApp":
        import uvicorn

        from deployments.api import create_api
        from deployments.config import StudioConfig

        app = create_api(StudioConfig(models=[], remote=None, sage_home=str(self.home)), areas=list(AREAS))
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline, "the test gateway did not start"
            time.sleep(0.05)
        self.base_url, self.app = f"http://127.0.0.1:{port}", app
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def restart(self) -> "FinetuneApp":
        self.stop()
        return self.start()

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca_rows(n: int) -> list[dict]:
    """A learnable toy task: the answer is a fixed word per instruction, so the loss must fall."""
    words = ["alpha", "beta", "gamma", "delta"]
    return [{"instruction": f"Say the word number {i % 4}.", "output": words[i % 4]} for i in range(n)]


def upload(client: httpx.Client, filename: str, content: bytes, **form) -> httpx.Response:
    form.setdefault("model", "tiny-llama")
    return followed(client, client.post("/api/datasets", files={"file": (filename, content, "application/octet-stream")},
                                        data=form))


def wait_for(client: httpx.Client, task_id: str, states: tuple[str, ...], timeout: float = 600) -> dict:
    """Poll a task until it reaches one of ``states``; fails with the task's last view on timeout."""
    deadline = time.time() + timeout
    task = {}
    while time.time() < deadline:
        task = client.get(f"/api/finetune/tasks/{task_id}").json()
        if task["state"] in states:
            return task
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} never reached {states}: {task}")


def warm_up_jobs_api(client, timeout: float = 600) -> None:
    """Run one trivial Ray job: a fresh cluster refuses jobs until its dashboard agent is up (slow on a busy box)."""
    import sys

    deadline = time.time() + timeout
    while True:
        try:
            job = client.submit_job(entrypoint=f"{sys.executable} -c 'print(1)'")
            break
        except RuntimeError:
            assert time.time() < deadline, "the Ray Jobs API never became ready"
            time.sleep(1)
    while str(client.get_job_status(job)).split(".")[-1] not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.time() < deadline, "the warm-up Ray job never finished"
        time.sleep(0.5)
