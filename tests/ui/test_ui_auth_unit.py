"""The UI's logins without a browser or Ray: Gradio's login route of ``create_ui_app`` accepts the ``--auth`` login
and user 'sage' with the API key, and refuses anything else; ``--auth`` values are parsed strictly."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sage_studio.api_key import parse_login
from ui.app import LOGIN_USER, create_ui_app


def _login(client: TestClient, user: str, password: str) -> int:
    return client.post("/login", data={"username": user, "password": password}).status_code


def test_auth_login_and_key_login_both_open_the_ui_and_nothing_else_does():
    app = create_ui_app("http://127.0.0.1:9", api_key="sk-key", login=("alice", "pa:ss"))
    with TestClient(app) as client:
        assert client.get("/config").status_code == 401  # asks for a login first
        assert _login(client, "alice", "pa:ss") == 200
        assert _login(client, LOGIN_USER, "sk-key") == 200
        for user, password in (("alice", "sk-key"), (LOGIN_USER, "pa:ss"), ("bob", "pa:ss"), ("alice", "")):
            assert _login(client, user, password) in (400, 422), (user, password)  # 422: empty form field


def test_auth_alone_makes_the_ui_ask_for_a_login():
    with TestClient(create_ui_app("http://127.0.0.1:9", login=("alice", "s3cret"))) as client:
        assert client.get("/config").status_code == 401
        assert _login(client, "alice", "s3cret") == 200


def test_without_key_or_login_the_ui_is_open():
    with TestClient(create_ui_app("http://127.0.0.1:9")) as client:
        assert client.get("/config").status_code == 200


@pytest.mark.parametrize("text", ["alice", "alice:", ":pw", " :pw", ""])
def test_malformed_auth_values_are_refused_with_the_expected_shape(text):
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_login(text)


def test_password_may_hold_colons():
    assert parse_login("alice:a:b") == ("alice", "a:b")
