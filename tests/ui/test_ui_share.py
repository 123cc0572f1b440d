"""Sharing the studio: `sage studio start --share` (``sage_cli.share``: a Gradio tunnel to the studio's port, which
then requires its API key) and ``ui.share.launch_shared`` (the UI alone, in-process, behind a user:password login).
Gradio's share server is made unreachable, so they behave the same with or without network: the studio or UI
still runs and says there is no link."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sage_cli.launcher import StudioState
from sage_cli.processes import new_run_id, owned_processes
from sage_cli.share import URL_WAIT_S, start_share
from ui.app import LOGIN_USER
from ui.share import launch_shared, parse_auth

SAGE = str(Path(sys.executable).parent / "sage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sage(env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([SAGE, "studio", *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def unreachable_share_server(monkeypatch) -> None:
    """Point Gradio's share-server request at a closed local port (as on a machine without network)."""
    closed = f"http://127.0.0.1:{free_port()}"
    for var in ("HTTPS_PROXY", "https_proxy"):  # the share server is https; local http calls stay direct
        monkeypatch.setenv(var, closed)
    for var in ("NO_PROXY", "no_proxy", "GRADIO_SHARE_SERVER_ADDRESS", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_auth_is_user_colon_password_or_generated():
    assert parse_auth("alice:s3cret:with:colons") == ("alice", "s3cret:with:colons", False)
    user, password, generated = parse_auth(None)
    assert user == "sage" and len(password) >= 16 and generated
    assert parse_auth(None)[1] != password
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(ValueError, match="user:password"):
            parse_auth(bad)


def test_shared_ui_requires_the_login(monkeypatch):
    unreachable_share_server(monkeypatch)
    shared = launch_shared(f"http://127.0.0.1:{free_port()}", auth="alice:s3cret", port=free_port())
    try:
        # Gradio cannot make the tunnel: the UI still runs and says so with None.
        assert shared.share_url is None
        with httpx.Client(base_url=shared.local_url, timeout=30) as client:
            assert client.get("config").status_code == 401
            refused = client.post("login", data={"username": "alice", "password": "wrong"})
            assert refused.status_code == 400
            assert client.post("login", data={"username": "alice", "password": "s3cret"}).status_code == 200
            config = client.get("config")
            assert config.status_code == 200 and config.json()["title"] == "SAGE Studio"
    finally:
        shared.close()


def test_share_without_network_leaves_a_reason_and_no_process(monkeypatch, tmp_path):
    """``start_share`` (what `sage studio start --share` runs): no link, a readable reason, nothing left running."""
    unreachable_share_server(monkeypatch)
    state = StudioState(run_id=new_run_id(), owns_ray=False, dashboard_url="http://127.0.0.1:1", http_host="0.0.0.0",
                        http_port=free_port(), serve_config_path=str(tmp_path / "serve.yaml"), log_dir=str(tmp_path))
    started = time.monotonic()
    assert start_share(state, tmp_path / "share.log") == (None, None)
    assert time.monotonic() - started < URL_WAIT_S, "a refused connection is a failure at once, not a time-out"
    assert state.share_error.startswith("the share link could not be made (it needs internet access")
    assert "share link failed: Could not get share link from Gradio API Server" in state.share_error
    assert owned_processes(state.run_id) == []


def test_studio_start_share_offline_still_starts_behind_a_key(tmp_path):
    """`sage studio start --share` where Gradio's share server cannot be reached: the studio starts, says why there
    is no link, prints the generated key; the gateway wants that key and the UI a login with it; `stop` leaves
    nothing behind."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, SAGE_HOME=str(home), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               GRADIO_SHARE_SERVER_ADDRESS=f"127.0.0.1:{free_port()}")  # a closed port: unreachable share server
    for var in ("SAGE_CHAT_BASE_URL", "SAGE_STUDIO_API_KEY", "SAGE_STUDIO_API_KEY_FILE", "RAY_ADDRESS"):
        env.pop(var, None)
    port = free_port()
    state_file = home / "studio" / "state.json"
    start = sage(env, "start", "--no-llm", "--share", "--port", str(port), "--dashboard-port", "0",
                 "--num-cpus", "2", "--timeout", "300", timeout=600)
    run_id = json.loads(state_file.read_text())["run_id"] if state_file.exists() else None
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        out = " ".join(start.stdout.split())  # rich wraps long lines
        assert "The studio is running." in out
        assert "share link: none: the share link could not be made (it needs internet access to Gradio's share" in out
        key = re.search(r"API key: (sk-sage-\S+)", out).group(1)
        state = json.loads(state_file.read_text())
        assert state["share_url"] is None and state["share_pid"] is None and "could not be made" in state["share_error"]

        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/models", timeout=30).status_code == 401
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
        with httpx.Client(base_url=f"{base}/ui/", timeout=60) as ui:  # the local UI serves, behind the login
            assert ui.get("").status_code == 200
            assert ui.get("config").status_code == 401
            assert ui.post("login", data={"username": LOGIN_USER, "password": "wrong"}).status_code == 400
            assert ui.post("login", data={"username": LOGIN_USER, "password": key}).status_code == 200
            assert ui.get("config").json()["title"] == "SAGE Studio"

        status = sage(env, "status", timeout=300)
        assert "could not be made" in " ".join(status.stdout.split())
    finally:
        stop = sage(env, "stop", timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert run_id and owned_processes(run_id) == []
