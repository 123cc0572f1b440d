"""The Ray dashboard's Serve REST API, as the launcher uses it: deploy a config, read status, delete, wait.

Deploying declaratively (``PUT /api/serve/applications/``, what ``serve deploy`` does) rather than with Python's
``serve.run`` matters here: the hot-swap re-deploys the same config with a new checkpoint and Serve then
``reconfigure``s replicas in place instead of restarting them. Ray's own ``ServeSubmissionClient`` does the HTTP
(with the cluster's auth token); this module adds waiting, error reporting and a compact status.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

# Serve's terminal and in-between application states (ray.serve.schema.ApplicationStatus).
APP_RUNNING = "RUNNING"
APP_FAILED = {"DEPLOY_FAILED", "UNHEALTHY"}


class ServeDeployError(RuntimeError):
    """The application did not reach RUNNING; the message says why, in Serve's words."""


def enable_ray_auth_if_configured() -> None:
    """Send the cluster's auth token (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``) when one exists.

    Ray 2.60 enables token auth by default for clusters it starts, but only clients that opt in send the token.
    """
    from ray._private.authentication import authentication_token_setup as auth

    quiet = logging.getLogger(auth.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns "token auth enabled" on every call; that is what we want here
    try:
        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def serve_client(dashboard_url: str) -> ServeSubmissionClient:
    enable_ray_auth_if_configured()
    return ServeSubmissionClient(dashboard_url)


@dataclass
class DeploymentStatus:
    """One deployment of the studio application, as ``sage studio status`` shows it."""

    name: str
    status: str
    message: str
    replicas_running: int
    replicas_target: int | None
    nodes: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class AppStatus:
    """The studio application: its state, deployments and the config it was deployed with."""

    name: str
    status: str
    message: str
    deployments: list[DeploymentStatus]
    args: dict[str, Any]
    http_host: str | None = None
    http_port: int | None = None


def app_status(details: dict[str, Any], app_name: str) -> AppStatus | None:
    """Summarize ``GET /api/serve/applications/`` for one application (None when it is not deployed)."""
    app = (details.get("applications") or {}).get(app_name)
    if not app:
        return None
    deployments = []
    for name, dep in sorted((app.get("deployments") or {}).items()):
        replicas = dep.get("replicas") or []
        running = [r for r in replicas if r.get("state") == "RUNNING"]
        actor_opts = (dep.get("deployment_config") or {}).get("ray_actor_options") or {}
        resources = {k: v for k, v in (dep.get("required_resources") or {}).items() if v}
        if not resources:
            resources = {"CPU": actor_opts.get("num_cpus", 0), "GPU": actor_opts.get("num_gpus", 0)}
        deployments.append(DeploymentStatus(
            name=name,
            status=dep.get("status", "?"),
            message=dep.get("message") or "",
            replicas_running=len(running),
            replicas_target=dep.get("target_num_replicas"),
            nodes=sorted({r.get("node_ip") or r.get("node_id", "?")[:8] for r in running}),
            resources=resources,
        ))
    config = app.get("deployed_app_config") or {}
    http = details.get("http_options") or {}
    return AppStatus(
        name=app_name,
        status=app.get("status", "?"),
        message=app.get("message") or "",
        deployments=deployments,
        args=config.get("args") or {},
        http_host=http.get("host"),
        http_port=http.get("port"),
    )


def deploy(client: ServeSubmissionClient, serve_config: dict[str, Any]) -> None:
    """Submit a Serve config (``ServeDeploySchema`` as a dict); Serve builds it asynchronously."""
    client.deploy_applications(serve_config)


def wait_running(
    client: ServeSubmissionClient,
    app_name: str,
    timeout_s: float,
    on_update: Callable[[AppStatus | None], None] | None = None,
    poll_s: float = 1.0,
) -> AppStatus:
    """Poll until ``app_name`` is RUNNING; raise ``ServeDeployError`` on a failed state or the timeout."""
    deadline = time.monotonic() + timeout_s
    last: AppStatus | None = None
    while time.monotonic() < deadline:
        try:
            last = app_status(client.get_serve_details(), app_name)
        except Exception:  # noqa: BLE001 - the dashboard can blip while the controller starts; keep polling
            pass
        if on_update:
            on_update(last)
        if last and last.status == APP_RUNNING:
            return last
        if last and last.status in APP_FAILED:
            raise ServeDeployError(describe_failure(last))
        time.sleep(poll_s)
    state = f"still {last.status}" if last else "not created"
    raise ServeDeployError(f"Application '{app_name}' is {state} after {timeout_s:.0f} s. "
                           + (describe_failure(last) if last else ""))


def describe_failure(status: AppStatus) -> str:
    lines = [f"Application '{status.name}' is {status.status}."]
    if status.message:
        lines.append(status.message.strip())
    for dep in status.deployments:
        if dep.status not in ("HEALTHY",) and dep.message:
            lines.append(f"{dep.name}: {dep.status}: {dep.message.strip()}")
    return "\n".join(lines)


def delete_all(client: ServeSubmissionClient, timeout_s: float = 60.0) -> bool:
    """Shut Serve down (``DELETE /api/serve/applications/``) and wait until no application is left."""
    client.delete_applications()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not client.get_serve_details().get("applications"):
                return True
        except Exception:  # noqa: BLE001 - Serve's controller going away can fail a poll; try again
            pass
        time.sleep(1)
    return False
