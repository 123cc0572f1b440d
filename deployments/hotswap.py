"""Hot swap as a declarative Serve redeploy: patch the running app's config with a new serving state and let Serve
apply it.

Only ``user_config`` changes, so Serve calls ``reconfigure`` on the live replicas instead of restarting them: the
engine keeps its loaded weights, the adapter is loaded beside them, and no request waits for a model load
(measured in ``bench/hotswap.py``; the reasons are in ``docs/design.md``). A fine-tune served as merged weights is
a new model: the engines load it in the background beside the current one (``deployments/engine_weights.py``), so
that switch is two redeploys — engines first, then the gateway (``deployments/routers/models.py``).
"""

from __future__ import annotations

import asyncio
import time

from deployments import serve_rest
from deployments.config import GATEWAY_NAME
from deployments.serving_state import ServingState


class NotDeclarativeError(RuntimeError):
    """The app was started with Python's ``serve.run``: there is no declarative config to change."""


class Redeployer:
    def __init__(self, app_name: str, dashboard_url: str, engine_deployments: dict[str, str]):
        self.app_name = app_name
        self.dashboard_url = dashboard_url
        self.engine_deployments = engine_deployments  # base model name → engine deployment name
        self._lock = asyncio.Lock()  # one swap at a time per gateway replica

    def _client(self):
        return serve_rest.serve_client(self.dashboard_url)  # with the cluster's auth token, like the CLI

    def _patched_config(self, details: dict, state: ServingState, gateway: ServingState | None = None,
                        also: dict[str, list] | None = None) -> dict:
        apps = details.get("applications", {})
        mine = apps.get(self.app_name, {}).get("deployed_app_config")
        if not mine:
            raise NotDeclarativeError(
                f"Application '{self.app_name}' was started from Python (serve.run), so it has no config to redeploy. "
                "Start it with `sage studio start`, `serve run deployments/serve_config.yaml` or `serve deploy`."
            )
        overrides = {GATEWAY_NAME: (gateway or state).gateway_user_config()}
        overrides |= {dep: state.engine_user_config(base, (also or {}).get(base, []))
                      for base, dep in self.engine_deployments.items()}
        deployments = [d for d in mine.get("deployments", []) if d["name"] not in overrides]
        for d in mine.get("deployments", []):
            if d["name"] in overrides:
                deployments.append(d | {"user_config": overrides.pop(d["name"])})
        deployments += [{"name": name, "user_config": cfg} for name, cfg in overrides.items()]
        # A PUT replaces every declaratively deployed app: send the others back unchanged.
        others = [a["deployed_app_config"] for n, a in apps.items() if n != self.app_name and a.get("deployed_app_config")]
        config = {"applications": others + [mine | {"deployments": deployments}]}
        for key in ("proxy_location", "http_options"):
            if details.get(key) is not None:
                config[key] = details[key]
        return config

    async def replicas(self, deployment: str) -> int:
        details = await asyncio.to_thread(self._client().get_serve_details)
        dep = details["applications"][self.app_name]["deployments"].get(deployment, {})
        return max(1, sum(r.get("state") == "RUNNING" for r in dep.get("replicas", [])))

    async def apply(self, state: ServingState, timeout_s: float = 180, gateway: ServingState | None = None,
                    also: dict[str, list] | None = None) -> None:
        """Deploy the new state and wait until Serve reports the app running with it.

        ``gateway``: a different state for the gateway (the first step of a weights switch keeps routing as it is
        while the engines load); ``also``: base model → weights the engine keeps loaded beside the state's."""
        async with self._lock:
            client = self._client()
            details = await asyncio.to_thread(client.get_serve_details)
            before = details["applications"][self.app_name]["last_deployed_time_s"]
            await asyncio.to_thread(client.deploy_applications, self._patched_config(details, state, gateway, also))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                app = (await asyncio.to_thread(client.get_serve_details))["applications"][self.app_name]
                if app["last_deployed_time_s"] == before:  # Serve has not taken the new config in yet
                    pass
                elif app["status"] == serve_rest.APP_RUNNING:
                    return
                elif app["status"] in serve_rest.APP_FAILED:
                    raise RuntimeError(f"Serve could not apply the new model: {app.get('message')}")
                await asyncio.sleep(0.25)
            raise TimeoutError(f"Serve did not finish applying the new model within {timeout_s:.0f} s")
