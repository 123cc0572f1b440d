"""End to end: `sage studio start` → a chat answer through the official openai client → status → logs → stop,
and no process of ours left. A subprocess with its own SAGE_HOME, like a user on a fresh laptop."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sage_cli.launcher import free_port
from sage_cli.processes import owned_processes
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


def _files_holding(secret: str, folders: list[Path], since: float) -> list[str]:
    """Files under ``folders`` written since ``since`` that contain ``secret``."""
    hits = []
    for folder in folders:
        for path in folder.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime >= since and path.stat().st_size < 64 << 20:
                    if secret.encode() in path.read_bytes():
                        hits.append(str(path))
            except OSError:  # rotated or removed meanwhile
                continue
    return hits


@pytest.mark.slow
def test_start_chat_status_logs_stop(studio_env):
    """With an API key, as a real deployment has: the key reaches the replicas as a 0600 file, never through the
    Serve config or Ray's logs, and both the API and the UI ask for it."""
    import httpx
    from openai import OpenAI

    key = "sk-sage-cli-test-" + secrets.token_urlsafe(18)
    studio_env["SAGE_STUDIO_API_KEY"] = key
    began = time.time() - 1
    port = free_port()
    studio_dir = Path(studio_env["SAGE_HOME"]) / "studio"
    state_file = studio_dir / "state.json"
    start = _sage(studio_env, "start", "--port", str(port), "--dashboard-port", "0", "--num-cpus", "4",
                  timeout=900)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert f"http://127.0.0.1:{port}/v1" in start.stdout and "/ui" in start.stdout
        state = json.loads(state_file.read_text())
        assert owned_processes(state["run_id"]), "the studio's processes carry the run marker"

        key_file = studio_dir / "api_key"
        assert key_file.read_text().strip() == key and key_file.stat().st_mode & 0o777 == 0o600
        assert key not in Path(state["serve_config_path"]).read_text()
        assert "SAGE_STUDIO_API_KEY_FILE" in Path(state["serve_config_path"]).read_text()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/models", timeout=60).status_code == 401
        assert httpx.get(f"{base}/ui/config", timeout=60).status_code == 401, "the UI asks for a login"

        client = OpenAI(base_url=f"{base}/v1", api_key=key, timeout=120)
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
        assert key not in logs.stdout + status.stdout + table.stdout
        # Ray's runtime-env agent logs the env_vars it sets up: they hold the key file's path, not the key.
        leaked = _files_holding(key, [Path("/tmp/ray"), Path(state["log_dir"])], since=began)
        assert leaked == [], f"the API key was written to {leaked}"
    finally:
        stop = _sage(studio_env, "stop", timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert owned_processes(state["run_id"]) == [], "stop leaves no process of ours"
    assert not state_file.exists()
    assert _sage(studio_env, "status", timeout=120).returncode == 1
