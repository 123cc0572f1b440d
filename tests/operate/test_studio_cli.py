"""End to end: `sage studio start` → a chat answer through the official openai client → status → logs → stop,
and no process of ours left. A subprocess with its own SAGE_HOME, like a user on a fresh laptop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_studio.launcher import free_port
from sage_studio.processes import owned_processes
from sage_studio.settings import DEFAULT_MODEL_NAME

SAGE = str(Path(sys.executable).parent / "sage")
# Where scripts/setup.sh materialized SmolLM2 (read at import, before fixtures point SAGE_HOME elsewhere).
USER_MODELS_DIR = Path(os.environ.get("SAGE_HOME", "~/.sage")).expanduser() / "models"


def _sage(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SAGE, "studio", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def studio_env(tmp_path) -> dict:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    prepared = USER_MODELS_DIR / DEFAULT_MODEL_NAME
    if prepared.is_dir():  # linked, not converted again: the conversion is tested with the model store
        (home / "models" / DEFAULT_MODEL_NAME).symlink_to(prepared)
    env = dict(os.environ, SAGE_HOME=str(home), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    for var in ("SAGE_CHAT_BASE_URL", "SAGE_STUDIO_API_KEY", "RAY_ADDRESS"):
        env.pop(var, None)
    return env


def test_status_and_stop_when_nothing_runs(studio_env):
    status = _sage(studio_env, "status", timeout=120)
    assert status.returncode == 1 and "not running" in status.stdout
    stop = _sage(studio_env, "stop", timeout=120)
    assert stop.returncode == 0 and "not running" in stop.stdout


@pytest.mark.slow
def test_start_chat_status_logs_stop(studio_env):
    from openai import OpenAI

    port = free_port()
    state_file = Path(studio_env["SAGE_HOME"]) / "studio" / "state.json"
    start = _sage(studio_env, "start", "--port", str(port), "--dashboard-port", "0", "--num-cpus", "4",
                  timeout=900)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert f"http://127.0.0.1:{port}/v1" in start.stdout and "/ui" in start.stdout
        state = json.loads(state_file.read_text())
        assert owned_processes(state["run_id"]), "the studio's processes carry the run marker"

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=120)
        reply = client.chat.completions.create(
            model="sage-default", temperature=0, max_tokens=40,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        assert "Paris" in reply.choices[0].message.content

        again = _sage(studio_env, "start", "--port", str(port), timeout=300)
        assert again.returncode == 0 and "already running" in again.stdout
        assert json.loads(state_file.read_text())["run_id"] == state["run_id"], "a second start changes nothing"

        status = _sage(studio_env, "status", "--json", timeout=300)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        deployments = {d["name"]: d for d in report["applications"]["studio"]["deployments"]}
        engine = deployments[f"LLM-{DEFAULT_MODEL_NAME}"]
        assert engine["status"] == "HEALTHY" and engine["replicas_running"] == 1
        assert deployments["Gateway"]["status"] == "HEALTHY"
        assert report["urls"]["gateway"] == f"http://127.0.0.1:{port}/v1"
        table = _sage(studio_env, "status", timeout=300)
        assert DEFAULT_MODEL_NAME in table.stdout and "HEALTHY" in table.stdout

        logs = _sage(studio_env, "logs", "-n", "200", "--filter", "Gateway", timeout=300)
        assert logs.returncode == 0 and "/v1/chat/completions" in logs.stdout
    finally:
        stop = _sage(studio_env, "stop", timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert owned_processes(state["run_id"]) == [], "stop leaves no process of ours"
    assert not state_file.exists()
    assert _sage(studio_env, "status", timeout=120).returncode == 1
