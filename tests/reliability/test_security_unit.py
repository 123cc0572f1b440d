"""The gateway's guards on the real gateway FastAPI app (no Serve): every route refuses a missing or wrong key,
open paths stay open, bodies over the limit get 413, CORS allows nobody by default."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from deployments.api import create_api
from deployments.config import GatewayConfig, StudioConfig
from deployments.model_router import ModelRouter
from deployments.security import MISSING_KEY, WRONG_KEY, key_matches, resolve_api_key

pytestmark = pytest.mark.reliability

KEY = "sk-test-0123456789"


def gateway_app(**gateway):
    config = StudioConfig(models=[], remote=None, gateway=GatewayConfig(**gateway))
    return create_api(config, ModelRouter(config, {}))


def all_routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) for every API route of the gateway, path parameters filled with a dummy id."""
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            path = route.path
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", "x")
            out += [(method, path) for method in sorted(route.methods)]
    return out


@pytest.fixture(scope="module")
def keyed():
    # No lifespan (no `with`): the key check runs before any route, so services are not needed to test it.
    return TestClient(gateway_app(api_key=SecretStr(KEY)), raise_server_exceptions=False)


def test_every_route_but_the_open_ones_refuses_a_missing_or_wrong_key(keyed):
    routes = all_routes(keyed.app)
    prefixes = {path.split("/")[1] for _, path in routes}
    assert {"v1", "api", "sessions", "memory"} <= prefixes  # the areas the issue names are all in the app
    checked = 0
    for method, path in routes:
        if path in ("/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
            continue
        for headers, message in (({}, MISSING_KEY), ({"Authorization": "Bearer wrong"}, WRONG_KEY),
                                 ({"Authorization": KEY}, WRONG_KEY), ({"Authorization": f"Basic {KEY}"}, WRONG_KEY)):
            resp = keyed.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path, headers, resp.status_code)
            assert resp.json()["error"]["message"] == message
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert KEY not in resp.text
        checked += 1
    assert checked >= 40, checked


def test_open_paths_need_no_key(keyed):
    schema = keyed.get("/openapi.json")
    assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]
    assert keyed.get("/docs").status_code == 200


def test_right_key_passes_the_check(keyed):
    # The schema is open anyway; a protected route with the right key reaches its handler (the gateway's own 404
    # for a model it does not serve proves it got past the key check without needing an engine).
    for auth in (f"Bearer {KEY}", f"bearer  {KEY} "):
        resp = keyed.post("/v1/chat/completions", json={"model": "m"}, headers={"Authorization": auth})
        assert resp.status_code == 404 and "'m' does not exist" in resp.json()["error"]["message"], resp.text


def test_key_comparison():
    assert key_matches(f"Bearer {KEY}", KEY)
    assert not key_matches(f"Bearer {KEY}x", KEY)
    assert not key_matches("Bearer ", KEY)
    assert not key_matches(None, KEY)
    assert not key_matches("Bearer \udcff", KEY)  # undecodable bytes never crash the check


def test_key_from_env_when_config_has_none(monkeypatch):
    monkeypatch.delenv("SAGE_STUDIO_API_KEY_FILE", raising=False)
    monkeypatch.setenv("SAGE_STUDIO_API_KEY", "from-env")
    assert resolve_api_key(StudioConfig(models=[], remote=None)) == "from-env"
    config = StudioConfig(models=[], remote=None, gateway=GatewayConfig(api_key=SecretStr("from-config")))
    assert resolve_api_key(config) == "from-config"
    monkeypatch.setenv("SAGE_STUDIO_API_KEY", "")
    assert resolve_api_key(StudioConfig(models=[], remote=None)) is None


def test_key_from_a_file_and_fail_closed(monkeypatch, tmp_path):
    key_file = tmp_path / "api_key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("SAGE_STUDIO_API_KEY", "from-env")
    monkeypatch.setenv("SAGE_STUDIO_API_KEY_FILE", str(key_file))
    assert resolve_api_key(StudioConfig(models=[], remote=None)) == KEY  # the file wins over the variable
    key_file.write_text("  ")
    with pytest.raises(RuntimeError, match="empty"):
        resolve_api_key(StudioConfig(models=[], remote=None))
    monkeypatch.setenv("SAGE_STUDIO_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="cannot be read") as refused:
        gateway_app()
    assert KEY not in str(refused.value)


def test_key_never_dumped_in_clear_and_masked_value_refused():
    config = StudioConfig(models=[], remote=None, gateway=GatewayConfig(api_key=SecretStr(KEY)))
    dumped = config.model_dump_json()
    assert KEY not in dumped and KEY not in repr(config)
    with pytest.raises(ValidationError, match="masked"):
        StudioConfig.model_validate_json(dumped)
    with pytest.raises(ValidationError, match="empty"):
        GatewayConfig(api_key=SecretStr("  "))


def test_open_gateway_without_key(monkeypatch):
    monkeypatch.delenv("SAGE_STUDIO_API_KEY_FILE", raising=False)
    monkeypatch.delenv("SAGE_STUDIO_API_KEY", raising=False)
    client = TestClient(gateway_app(), raise_server_exceptions=False)
    resp = client.post("/v1/chat/completions", json={"model": "m"})
    assert resp.status_code == 404 and "'m' does not exist" in resp.json()["error"]["message"]


def test_body_limits():
    client = TestClient(gateway_app(max_body_bytes=4096, max_upload_bytes=16384), raise_server_exceptions=False)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}
    resp = client.post("/v1/chat/completions", json=big)
    assert resp.status_code == 413 and "4 KiB" in resp.json()["error"]["message"]

    def chunks():  # no Content-Length: counted while read
        for _ in range(10):
            yield b" " * 1000

    resp = client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    # Multipart gets the upload limit: 10 kB passes the body check (and then fails on its own route's checks).
    files = {"file": ("d.jsonl", b"{}\n" * 3000, "application/json")}
    assert client.post("/api/datasets", files=files).status_code != 413
    files = {"file": ("d.jsonl", b"{}\n" * 6000, "application/json")}
    assert client.post("/api/datasets", files=files).status_code == 413
    resp = client.post("/v1/chat/completions", content=b"{}", headers={"Content-Length": "abc"})
    assert resp.status_code in (400, 413)  # h11 may refuse it first; never a 5xx


def test_cors_is_closed_by_default_and_opens_for_named_origins():
    closed = TestClient(gateway_app(), raise_server_exceptions=False)
    resp = closed.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers
    pre = closed.options("/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers

    app = gateway_app(api_key=SecretStr(KEY), cors_origins=["https://team.example"])
    open_ = TestClient(app, raise_server_exceptions=False)
    pre = open_.options("/v1/models", headers={"Origin": "https://team.example", "Access-Control-Request-Method": "GET",
                                               "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://team.example"
    resp = open_.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize("status, retry_after_s, header", [(503, 4.5, "5"), (429, None, None)])
def test_an_engine_queue_refusal_is_an_openai_error_with_retry_after(status, retry_after_s, header):
    """What the gateway answers when Serve refuses a request at a full engine queue (the real path runs in
    test_backpressure.py; here every backpressure_config variant, on the gateway app alone)."""
    from ray.serve.exceptions import BackPressureError

    from deployments.model_router import EngineBusyError

    app = gateway_app()

    async def full_queue():
        refusal = BackPressureError(num_queued_requests=16, max_queued_requests=16, status_code=status,
                                    retry_after_s=retry_after_s)
        raise EngineBusyError("m", refusal)

    app.add_api_route("/v1/full-queue", full_queue)
    resp = TestClient(app, raise_server_exceptions=False).get("/v1/full-queue")
    assert resp.status_code == status and resp.headers.get("retry-after") == header
    error = resp.json()["error"]
    assert error["code"] == status and "queue is full" in error["message"] and "backpressure" in error["message"]
    assert error["type"] == ("rate_limit_error" if status == 429 else "service_unavailable")
