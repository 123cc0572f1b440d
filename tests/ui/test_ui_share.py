"""``ui.share.launch_shared`` (what `sage studio start --share` calls): the UI always sits behind a login, and a
machine without network still gets a running UI and a clear "no link"."""

from __future__ import annotations

import socket

import httpx
import pytest

from ui.share import launch_shared, parse_auth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_auth_is_user_colon_password_or_generated():
    assert parse_auth("alice:s3cret:with:colons") == ("alice", "s3cret:with:colons", False)
    user, password, generated = parse_auth(None)
    assert user == "sage" and len(password) >= 16 and generated
    assert parse_auth(None)[1] != password
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(ValueError, match="user:password"):
            parse_auth(bad)


def test_shared_ui_requires_the_login():
    shared = launch_shared(f"http://127.0.0.1:{free_port()}", auth="alice:s3cret", port=free_port())
    try:
        # Offline (as here) Gradio cannot make the tunnel: the UI still runs and says so with None.
        assert shared.share_url is None or shared.share_url.startswith("https://")
        with httpx.Client(base_url=shared.local_url, timeout=30) as client:
            assert client.get("config").status_code == 401
            refused = client.post("login", data={"username": "alice", "password": "wrong"})
            assert refused.status_code == 400
            assert client.post("login", data={"username": "alice", "password": "s3cret"}).status_code == 200
            config = client.get("config")
            assert config.status_code == 200 and config.json()["title"] == "SAGE Studio"
    finally:
        shared.close()
