"""Fixtures of the UI tests: the UI deployed as its own Serve application in the shared Serve instance, and a real
headless Chromium (the system's, driven by Playwright) whose pages record every console error.

Without a Chromium the browser tests fail and say how to install one; they never skip, so a run that did not
drive a browser cannot pass for one that did."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# $SAGE_CHROMIUM (a path, or a name on PATH) when set, else the first of these names on PATH.
CHROMIUM_ENV = "SAGE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VIEWPORT = {"width": 1440, "height": 1000}
LAPTOP = {"width": 1280, "height": 800}  # the smallest screen the UI must work on without scrolling sideways
# Bounds for a loaded 2-core machine (other suites running Ray and vLLM beside these); an idle one takes seconds.
ACTION_TIMEOUT_MS = 60_000
LOAD_TIMEOUT_MS = 90_000


@dataclass
class UIStudio:
    """The studio the UI tests drive: its gateway, the UI in front of it, and how to redeploy its app."""

    app_name: str
    route_prefix: str
    gateway_url: str
    ui_url: str
    dashboard_url: str
    args: dict
    shared: bool  # True when it is the session's shared studio (then anything changed must be put back)


def deploy(dashboard_url: str, apps: list[dict], timeout_s: float = 600) -> None:
    """Deploy ``apps`` declaratively (as `serve deploy` does), keeping every other declaratively deployed app."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    client = ServeSubmissionClient(dashboard_url)
    details = client.get_serve_details()
    names = {a["name"] for a in apps}
    others = [a["deployed_app_config"] for n, a in details.get("applications", {}).items()
              if n not in names and a.get("deployed_app_config")]
    config = {"applications": others + apps}
    for key in ("proxy_location", "http_options"):
        if details.get(key) is not None:
            config[key] = details[key]
    client.deploy_applications(config)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        states = client.get_serve_details()["applications"]
        status = {n: states.get(n, {}).get("status") for n in names}
        failed = [n for n, st in status.items() if st == "DEPLOY_FAILED"]
        assert not failed, states[failed[0]].get("message")
        if all(st == "RUNNING" for st in status.values()):
            return
        time.sleep(1)
    raise TimeoutError(f"apps {sorted(names)} not running after {timeout_s:.0f} s: {status}")


@pytest.fixture(scope="session")
def ui_studio(studio, sage_home, tmp_path_factory) -> UIStudio:
    """The UI as its own Serve application at /ui, in front of a studio deployed declaratively.

    Switching models is a declarative redeploy (it needs a Serve config to change): when the shared studio was
    started with Python's serve.run, the UI tests deploy their own studio app from a config, next to it."""
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from deployments.ui_deployment import UIConfig

    details = ServeSubmissionClient(studio.dashboard_url).get_serve_details()["applications"]
    shared = bool(details.get("studio", {}).get("deployed_app_config"))
    if shared:
        target = UIStudio("studio", "/", studio.base_url, f"{studio.base_url}/ui/", studio.dashboard_url,
                          details["studio"]["deployed_app_config"].get("args", {}), True)
        apps = []
    else:
        # Its own SAGE_HOME (two fine-tune managers must never share a task store), with the same models.
        home = tmp_path_factory.mktemp("ui_sage_home")
        (home / "models").symlink_to(sage_home / "models")
        args = studio.config.model_dump(mode="json") | {"sage_home": str(home)}
        target = UIStudio("uistudio", "/uistudio", f"{studio.base_url}/uistudio", f"{studio.base_url}/ui/",
                          studio.dashboard_url, args, False)
        apps = [{"name": target.app_name, "route_prefix": target.route_prefix,
                 "import_path": "deployments.app:build_app", "args": args}]
    ui_args = UIConfig(gateway_url=target.gateway_url, dashboard_url=studio.dashboard_url).model_dump(mode="json")
    apps.append({"name": "ui", "route_prefix": "/ui", "import_path": "deployments.ui_deployment:build_app",
                 "args": ui_args})
    deploy(studio.dashboard_url, apps)
    yield target
    serve.delete("ui")
    if not shared:
        serve.delete(target.app_name)


@pytest.fixture(scope="session")
def deploy_apps():
    """``deploy(dashboard_url, apps)``, for tests that redeploy an app (e.g. to stop its engine)."""
    return deploy


def find_chromium() -> str:
    """The Chromium executable the browser tests drive; fails the test (never skips it) when there is none."""
    wanted = os.environ.get(CHROMIUM_ENV)
    if wanted:
        found = shutil.which(wanted)
        if not found:
            pytest.fail(f"{CHROMIUM_ENV}={wanted!r} is not an executable Chromium. Point it at one, or unset it and "
                        "install one: apt-get install chromium (or bash scripts/setup.sh --test).", pytrace=False)
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"The browser tests need Chromium and found none on PATH (looked for {', '.join(CHROMIUM_NAMES)}). "
                f"Install it with apt-get install chromium (or bash scripts/setup.sh --test), or set {CHROMIUM_ENV} "
                "to its path.", pytrace=False)


@pytest.fixture(scope="session")
def chromium_lookup():
    """``find_chromium``, for the test that checks how a missing Chromium is reported."""
    return find_chromium


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class StudioPage:
    """A browser tab on the studio UI and what its console reported."""

    page: object
    console_errors: list[str] = field(default_factory=list)

    def open(self, url: str) -> "StudioPage":
        from playwright.sync_api import expect

        self.page.goto(url)
        self.page.get_by_role("tab", name="Chat").wait_for()
        # The page's load event fills the conversation list, or says there is none (or why it failed): once it
        # has, Gradio has wired the events, and a click can no longer race the list being replaced.
        loaded = self.page.locator("#chat-sessions label, #chat-status .sage-notice").first
        expect(loaded).to_be_visible(timeout=LOAD_TIMEOUT_MS)
        return self

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def _studio_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.set_default_navigation_timeout(LOAD_TIMEOUT_MS)  # the first page load builds Gradio's assets cache
    result = StudioPage(page)
    page.on("console", lambda msg: result.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: result.console_errors.append(f"page error: {exc}"))
    yield result
    context.close()


@pytest.fixture
def studio_page(browser):
    """A fresh browser context per test (no shared Gradio session state)."""
    yield from _studio_page(browser, VIEWPORT)


@pytest.fixture
def laptop_page(browser):
    """``studio_page`` on a 1280×800 screen."""
    yield from _studio_page(browser, LAPTOP)
