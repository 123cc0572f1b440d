"""A studio app deployed on Serve with an API key: every operation of its OpenAPI schema refuses a missing or
wrong key and takes the right one; the UI's client and the official openai client work with the key; bodies over
the limit get 413 through Serve; the key shows up in no answer and in no Ray log."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import openai
import pytest

from deployments.security import MISSING_KEY, OPEN_PATHS, WRONG_KEY
from reliability_helpers import report

pytestmark = pytest.mark.reliability


def operations(url: str) -> list[tuple[str, str]]:
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    out = []
    for path, item in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "missing-id", path)
        out += [(method.upper(), concrete) for method in item if method in ("get", "post", "put", "patch", "delete")]
    return out


def test_every_operation_needs_the_key(secure_app, pytestconfig):
    ops = operations(secure_app.url)
    protected = [(m, p) for m, p in ops if p not in OPEN_PATHS]
    assert len(protected) >= 40 and {p.split("/")[1] for _, p in protected} >= {"v1", "api", "sessions", "memory"}
    seen: list[str] = []
    with httpx.Client(base_url=secure_app.url, timeout=60) as client:
        for method, path in protected:
            for headers, message in (({}, MISSING_KEY), ({"Authorization": "Bearer not-the-key"}, WRONG_KEY)):
                resp = client.request(method, path, headers=headers)
                assert resp.status_code == 401, (method, path, resp.status_code, resp.text)
                assert resp.json()["error"]["message"] == message
                seen.append(resp.text)
            # Right key: past the check. A body that is not JSON stops routes that take one at validation (422)
            # before they do real work (a dataset build, a fine-tune); nothing may be a 5xx.
            resp = client.request(method, path, content=b"not json",
                                  headers=secure_app.auth | {"Content-Type": "application/json"})
            assert resp.status_code not in (401, 403) and resp.status_code < 500, (method, path, resp.text)
            seen.append(resp.text + str(resp.headers))
        assert client.get("/health").status_code == 200
        assert client.get("/v1/models", headers=secure_app.auth).status_code == 200
    assert not any(secure_app.key in text for text in seen)
    report(pytestconfig, f"[auth] {len(protected)} protected operations: 401 without/with a wrong key, "
                         f"accepted with the key; open: {sorted(p for _, p in ops if p in OPEN_PATHS)} and the docs pages")


def test_ui_client_and_openai_client_use_the_key(secure_app, studio):
    from ui.client import ApiError, StudioClient

    async def with_client(key):
        client = StudioClient(secure_app.url, key)
        try:
            created = await client.request("POST", "/sessions", json={"title": "keyed"})
            return await client.request("GET", f"/sessions/{created['id']}")
        finally:
            await client.aclose()

    assert asyncio.run(with_client(secure_app.key))["title"] == "keyed"
    with pytest.raises(ApiError) as refused:
        asyncio.run(with_client(None))
    assert refused.value.status == 401 and "API key" in refused.value.message

    client = openai.OpenAI(base_url=f"{secure_app.url}/v1", api_key=secure_app.key, max_retries=0)
    ask = dict(model=studio.model, max_tokens=4, temperature=1.0, seed=5, messages=[{"role": "user", "content": "hi"}])
    reply = client.chat.completions.create(**ask)
    # The keyed app's remote is the shared studio: its answer to the same (seeded) request comes back unchanged.
    direct = openai.OpenAI(base_url=f"{studio.base_url}/v1", api_key="unused", max_retries=0)
    assert reply.choices[0].message.content == direct.chat.completions.create(**ask).choices[0].message.content
    assert reply.usage.completion_tokens == 4
    wrong = openai.OpenAI(base_url=f"{secure_app.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_body_limits_through_serve(secure_app):
    limit = secure_app.max_body_bytes
    big = {"model": "sage-default", "messages": [{"role": "user", "content": "x" * (limit + 10)}]}
    resp = httpx.post(f"{secure_app.url}/v1/chat/completions", json=big, headers=secure_app.auth, timeout=60)
    assert resp.status_code == 413 and "limit" in resp.json()["error"]["message"]

    def chunked():
        for _ in range(limit // 8192 + 2):
            yield b" " * 8192

    resp = httpx.post(f"{secure_app.url}/sessions", content=chunked(), timeout=60,
                      headers=secure_app.auth | {"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    # Multipart uploads have the larger limit: this one passes the body check and reaches its route (404: no such
    # pipeline, answered after the form was read); five times as much does not.
    upload = b"a,b\n" + b"1,2\n" * ((limit + 4096) // 4)
    url = f"{secure_app.url}/api/pipelines/missing-pipeline/batch"
    resp = httpx.post(url, files={"file": ("in.csv", upload)}, headers=secure_app.auth, timeout=60)
    assert resp.status_code == 404, resp.text
    resp = httpx.post(url, files={"file": ("in.csv", upload * 5)}, headers=secure_app.auth, timeout=60)
    assert resp.status_code == 413, resp.text


def test_the_key_is_in_no_ray_log(secure_app):
    import ray

    session_dir = Path(ray._private.worker._global_node.get_session_dir_path())  # this test run's Ray session
    hits = []
    for path in (session_dir / "logs").rglob("*"):
        if path.is_file() and path.stat().st_size < 64 << 20:
            if secure_app.key.encode() in path.read_bytes():
                hits.append(str(path))
    assert hits == [], f"the API key was written to {hits}"


@pytest.fixture(scope="module")
def keyed_ui(secure_app, studio, tmp_path_factory):
    """The UI as Serve hosts it for ``sage studio start``: its replica gets only the key file's path."""
    from ray import serve

    from deployments.ui_deployment import StudioUI, UIConfig
    from sage_studio.api_key import KEY_FILE_VAR, write_key_file

    key_file = write_key_file(tmp_path_factory.mktemp("ui_key") / "api_key", secure_app.key)
    env = {"env_vars": {KEY_FILE_VAR: str(key_file)}}
    ui = StudioUI.options(ray_actor_options={"num_cpus": 0, "runtime_env": env})
    serve.run(ui.bind(UIConfig(gateway_url=secure_app.url).model_dump()), name="secureui", route_prefix="/secureui")
    yield f"{studio.base_url}/secureui"
    serve.delete("secureui")


def test_the_served_ui_asks_for_a_login_when_the_studio_has_a_key(keyed_ui, secure_app):
    from ui.app import LOGIN_USER

    with httpx.Client(base_url=keyed_ui, timeout=60) as client:
        assert client.get("/").status_code == 200  # the page itself: Gradio renders its login form
        refused = client.get("/config")  # the app's config (components, API) needs a login
        assert refused.status_code == 401, refused.text
        for user, password in ((LOGIN_USER, "not-the-key"), ("someone", secure_app.key), (LOGIN_USER, "")):
            resp = client.post("/login", data={"username": user, "password": password})
            assert resp.status_code in (400, 422), (user, resp.status_code, resp.text)
            assert client.get("/config").status_code == 401
        resp = client.post("/login", data={"username": LOGIN_USER, "password": secure_app.key})
        assert resp.status_code == 200 and resp.json() == {"success": True}, resp.text
        config = client.get("/config")  # the login cookie now opens it
        assert config.status_code == 200 and config.json()["components"]
        assert secure_app.key not in config.text and secure_app.key not in resp.text
