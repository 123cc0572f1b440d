"""The UI Serve hosts, with an API key: a real headless Chromium meets Gradio's login form under the route prefix,
is refused with a wrong password, and gets the studio (its chat model list from the gateway) with the key.

The UI replica gets the key as ``sage studio start`` gives it: only the path of a 0600 key file in its
environment (``SAGE_STUDIO_API_KEY_FILE``), nothing in its args.
"""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from ui.app import LOGIN_USER

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def keyed_ui(studio, tmp_path_factory):
    from ray import serve

    from deployments.ui_deployment import StudioUI, UIConfig
    from sage_studio.api_key import KEY_FILE_VAR, write_key_file

    key = "sk-sage-ui-" + secrets.token_urlsafe(18)
    key_file = write_key_file(tmp_path_factory.mktemp("ui_login") / "api_key", key)
    env = {"env_vars": {KEY_FILE_VAR: str(key_file)}}
    ui = StudioUI.options(ray_actor_options={"num_cpus": 0, "runtime_env": env})
    # In front of the shared (open) gateway: the UI sends the key anyway, which an open gateway ignores.
    serve.run(ui.bind(UIConfig(gateway_url=studio.base_url).model_dump()), name="uilogin", route_prefix="/uilogin")
    yield f"{studio.base_url}/uilogin/", key
    serve.delete("uilogin")


def test_login_with_the_key_opens_the_studio(studio_page, keyed_ui, studio):
    url, key = keyed_ui
    page = studio_page.page
    page.goto(url)
    username, password = page.get_by_label("username"), page.get_by_label("password")
    expect(password).to_be_visible(timeout=90_000)
    expect(page.get_by_text("as user 'sage'")).to_be_visible()  # the login message says how
    expect(page.get_by_role("tab", name="Chat")).to_have_count(0)  # nothing of the studio before the login

    username.fill(LOGIN_USER)
    password.fill("not-the-key")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Incorrect credentials")).to_be_visible()

    username.fill(LOGIN_USER)  # the form may have been cleared by the refusal
    password.fill(key)
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Chat").wait_for(timeout=90_000)
    # The page's load event has filled the conversations (or said there are none) and the model picker, from
    # the gateway, through the UI's server-side client.
    expect(page.locator("#chat-sessions label, #chat-status .sage-notice").first).to_be_visible(timeout=90_000)
    page.locator("#chat-model input").click()
    expect(page.locator("#chat-model").get_by_role("option", name=studio.model, exact=True)).to_be_visible()
    studio_page.screenshot("ui-after-login")
    assert key not in page.content()
