"""Helpers of the tests that need a studio laid out as users have it: an app deployed declaratively (so it can be
hot-swapped), and a model laid out in the Hugging Face cache as the hub lays it out."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def deploy_declaratively(dashboard_url: str, name: str, config, timeout: float = 600) -> None:
    """Deploy ``build_app(config)`` as the app ``name`` at ``/name`` through Serve's declarative REST API (as
    `sage studio start` and `serve deploy` do, so it can be hot-swapped) and wait until it runs."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    client = ServeSubmissionClient(dashboard_url)
    client.deploy_applications({"applications": [{"name": name, "route_prefix": f"/{name}",
                                                   "import_path": "deployments.app:build_app",
                                                   "args": config.model_dump(mode="json")}]})
    deadline = time.time() + timeout
    while time.time() < deadline:
        app = client.get_serve_details()["applications"].get(name, {})
        if app.get("status") == "RUNNING":
            return
        assert app.get("status") != "DEPLOY_FAILED", app.get("message")
        time.sleep(2)
    raise AssertionError(f"the app {name} did not start in {timeout:.0f} s")


def write_hub_cache(model_dir: Path, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay ``model_dir`` out in the HF cache as the hub would: blobs, ``snapshots/<commit>`` links, ``refs/main``."""
    from sage_studio.hub import hub_cache_dir

    repo = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for i, src in enumerate(sorted(p for p in Path(model_dir).iterdir() if p.is_file())):
        blob = repo / "blobs" / f"{i:040x}"
        shutil.copyfile(src, blob)
        link = snapshot / src.name
        if not link.exists():
            link.symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def switch(url: str, route: str, body: dict, timeout: float = 600) -> tuple[dict, float | None]:
    """POST a model switch (``use-as-backend`` or ``switch-model``) and follow it to its end: a slow one answers
    202 with an operation, polled here. Returns the new current model and how long the 202 took (None: 200)."""
    import httpx

    started = time.monotonic()
    resp = httpx.post(f"{url}/api/finetune/{route}", json=body, timeout=timeout)
    took = time.monotonic() - started
    if resp.status_code == 200:
        return resp.json(), None
    assert resp.status_code == 202, resp.text
    operation_id = resp.json()["operation_id"]
    assert resp.headers["location"] == f"/api/operations/{operation_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = httpx.get(f"{url}/api/operations/{operation_id}", timeout=30).json()
        assert operation["state"] != "failed", operation
        if operation["state"] == "succeeded":
            assert operation["progress"] == 1.0 and operation["kind"] == "model-switch"
            return operation["result"], took
        time.sleep(1)
    raise AssertionError(f"the switch {operation_id} did not end in {timeout:.0f} s")


def followed(client, response, status: int = 201, timeout: float = 300):
    """The answer the call gives once its work is done: a 202 (the validation ran past the studio's few seconds,
    e.g. a cold Ray Data) is followed through GET /api/operations/{id} and turned back into the answer it stands
    for (``status`` with the result, or the operation's error status and message)."""
    import httpx

    if response.status_code != 202 or "operation_id" not in response.json():
        return response
    op_id = response.json()["operation_id"]
    deadline = time.time() + timeout
    while (operation := client.get(f"/api/operations/{op_id}").json())["state"] not in ("succeeded", "failed"):
        assert time.time() < deadline, operation
        time.sleep(0.2)
    if operation["state"] == "succeeded":
        return httpx.Response(status, json=operation["result"])
    message = operation["error"]
    return httpx.Response(operation["error_status"], json={"error": {"message": message}, "detail": message})
