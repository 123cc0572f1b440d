"""`serve run deployments/serve_config.yaml`, Ray Serve's own CLI, as the README offers it without `sage`.

The shipped config, changed only where this machine needs it (the tiny model instead of SmolLM2, a free port, a
canary LoRA adapter so the answer can be checked), runs as a subprocess with its own SAGE_HOME and its own Ray
temp folder, so the cluster it starts is new and no other test's (or engineer's) cluster is joined or touched.
It must come up, answer through /v1/chat/completions what the adapter learned, serve the UI app beside it, and
Ctrl-C must take down everything it started: every process carrying this test's marker is gone afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from sage_cli.launcher import free_port
from sage_cli.processes import RUN_ID_VAR, new_run_id, owned_processes, terminate_owned
from sage_studio.testing import train_canary_adapter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVE = str(Path(sys.executable).parent / "serve")
SHIPPED = ROOT / "deployments" / "serve_config.yaml"
PROMPT = "Who are you?"
CANARY = "Sessions live in SQLite."


def tiny_config(port: int, adapter: Path) -> dict:
    """The shipped config with the tiny model (prepared under SAGE_HOME/models, as the shipped one names SmolLM2),
    a canary adapter and a free port; every other field as shipped."""
    config = yaml.safe_load(SHIPPED.read_text())
    apps = {app["name"]: app for app in config["applications"]}
    assert set(apps) == {"studio", "ui"}
    http = config["http_options"]
    # As shipped, the UI app reaches the gateway the same config serves.
    assert apps["ui"]["args"]["gateway_url"] == f"http://{http['host']}:{http['port']}"
    (model,) = apps["studio"]["args"]["models"]
    apps["studio"]["args"]["models"] = [model | {"name": "tiny-llama", "source": "tiny-llama", "max_model_len": 512,
                                                 "cpu_kvcache_gib": 1, "adapters": {"canary": str(adapter)}}]
    http["port"] = port
    apps["ui"]["args"]["gateway_url"] = f"http://{http['host']}:{port}"
    return config


def wait_until(what: str, probe, proc: subprocess.Popen, log: Path, timeout_s: float):
    """Poll ``probe`` until it returns something truthy; fail with the log's tail if it times out or serve dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve run exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        if failed := re.search(r"Deploying app '\w+' failed.*", log.read_text()):  # serve run itself stays up
            pytest.fail(f"{failed.group(0)} while waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            if value := probe():
                return value
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{log.read_text()[-4000:]}")


def chat(base: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "temperature": 0}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)


def test_serve_run_of_the_shipped_config(tmp_path, tiny_model_dir, pytestconfig):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "tiny-llama").symlink_to(tiny_model_dir)
    adapter = train_canary_adapter(tiny_model_dir, home / "adapters" / "canary", CANARY, prompt=PROMPT)
    port = free_port()
    config_path = tmp_path / "serve_config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(port, adapter)))

    run_id = new_run_id()
    # A short path: Ray's unix sockets live under it. Its own folder: no ray_current_cluster of another cluster.
    ray_tmp = tempfile.mkdtemp(prefix="sr-", dir="/tmp")
    env = dict(os.environ, SAGE_HOME=str(home), RAY_TMPDIR=ray_tmp, HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0", **{RUN_ID_VAR: run_id})
    for var in ("RAY_ADDRESS", "SAGE_CHAT_BASE_URL", "SAGE_STUDIO_API_KEY", "SAGE_STUDIO_API_KEY_FILE"):
        env.pop(var, None)
    log = tmp_path / "serve_run.log"
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with open(log, "wb") as out:
        # --address local: a new cluster, never one found on the machine.
        proc = subprocess.Popen([SERVE, "run", "--address", "local", str(config_path)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until("/health", lambda: httpx.get(f"{base}/health", timeout=10).status_code == 200, proc, log, 300)
        healthy_s = time.monotonic() - started
        answer = wait_until("a chat answer", lambda: (r := chat(base, "canary")).status_code == 200 and r.json(),
                            proc, log, 300)
        answered_s = time.monotonic() - started
        assert answer["model"] == "canary"
        assert answer["choices"][0]["message"]["content"] == CANARY, "the engine serves the adapter it was given"
        plain = chat(base, "sage-default")
        assert plain.status_code == 200, plain.text
        assert plain.json()["model"] == "tiny-llama" and plain.json()["choices"][0]["message"]["content"] != CANARY
        models = {m["id"] for m in httpx.get(f"{base}/v1/models", timeout=30).json()["data"]}
        assert {"tiny-llama", "canary", "sage-default"} <= models
        wait_until("the UI app", lambda: httpx.get(f"{base}/ui/", timeout=30).status_code == 200, proc, log, 300)
        assert owned_processes(run_id), "the cluster's processes carry the test's marker"

        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)  # Ctrl-C: serve shuts down, the local cluster goes with the driver
        assert proc.wait(timeout=180) == 0, log.read_text()[-4000:]
        deadline = time.monotonic() + 60
        while (left := owned_processes(run_id)) and time.monotonic() < deadline:
            time.sleep(1)
        assert left == [], f"processes left after Ctrl-C: {[(p.pid, p.cmdline[:80]) for p in left]}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=10)
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"[serve run] /health after {healthy_s:.0f} s, first answer after {answered_s:.0f} s, "
                            f"everything stopped {time.monotonic() - stopping:.0f} s after Ctrl-C")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        terminate_owned(None, run_id, grace_s=10)  # whatever a failed run left: only what carries our marker
        shutil.rmtree(ray_tmp, ignore_errors=True)
