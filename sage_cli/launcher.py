"""What ``sage studio start|stop|status`` drive: a Ray head we own, the studio's Serve config, and its state file.

``start`` = prepare the model → start ``ray start --head --block`` in its own session (unless ``address`` joins an
existing cluster) → write ``studio_dir/serve_config.yaml`` → deploy it through the dashboard's Serve REST API →
wait until RUNNING. ``stop`` = delete the Serve apps → SIGTERM/SIGKILL our process group → check that no process
carrying our run marker is left. Never ``ray stop``: it would kill every Ray cluster on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, Field

from sage_cli import processes
from sage_studio.api_key import KEY_VAR
from sage_studio.settings import get_settings

APP_NAME = "studio"
UI_APP_NAME = "ui"
STATE_FILE = "state.json"


class LaunchError(RuntimeError):
    """A start or stop step failed; the message says which and what to do."""


class StudioState(BaseModel):
    """What ``start`` records in ``studio_dir/state.json`` so later commands find the running studio."""

    run_id: str = Field(description="Marker every process we started carries (env SAGE_STUDIO_RUN_ID).")
    owns_ray: bool = Field(description="True when we started the Ray head (and so stop it).")
    head_pid: int | None = Field(None, description="pid (= process group) of `ray start --head --block`.")
    gcs_address: str | None = Field(None, description="Ray address other nodes join with `ray start --address`.")
    dashboard_url: str = Field(description="Ray dashboard (and Serve REST API) URL.")
    http_host: str
    http_port: int
    serve_config_path: str
    log_dir: str
    share_pid: int | None = None
    share_url: str | None = None
    share_error: str | None = Field(None, description="Why --share made no link (the studio runs without one).")
    started_at: float = Field(default_factory=time.time)

    def public_host(self) -> str:
        if self.http_host in ("0.0.0.0", "::"):
            return socket.gethostname()
        return self.http_host

    def urls(self) -> dict[str, str]:
        base = f"http://{self.public_host()}:{self.http_port}"
        urls = {"gateway": f"{base}/v1", "studio API": f"{base}/api", "UI": f"{base}/ui",
                "Ray dashboard": self.dashboard_url}
        if self.share_url:
            urls["share link"] = f"{self.share_url.rstrip('/')}/ui"
        return urls

    @property
    def base_url(self) -> str:
        return f"http://{self.public_host()}:{self.http_port}"


def state_path() -> Path:
    return get_settings().studio_dir / STATE_FILE


def read_state() -> StudioState | None:
    path = state_path()
    if not path.is_file():
        return None
    try:
        return StudioState.model_validate_json(path.read_text())
    except ValueError:
        return None


def write_state(state: StudioState) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)


def clear_state() -> None:
    state_path().unlink(missing_ok=True)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    # The `ray` next to this interpreter: the venv's, even when the venv isn't activated.
    local = Path(sys.executable).parent / "ray"
    found = str(local) if local.exists() else shutil.which("ray")
    if not found:
        raise LaunchError("The `ray` command is not installed in this environment (pip install 'ray[serve]').")
    return found


@dataclass
class RayNode:
    pid: int
    gcs_address: str
    dashboard_url: str | None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ray_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every default works offline: nothing the studio loads by default comes from a model hub.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["SAGE_HOME"] = str(get_settings().sage_home)
    # Replicas get the API key as a file path (studio_start.deploy_config), never as a variable Ray would inherit.
    env.pop(KEY_VAR, None)
    env.update(extra or {})
    return env


def _agent_port_args() -> list[str]:
    # Fixed defaults (10001, 52365) would collide with any other Ray node on this machine. Ports left at 0 are
    # published through files the raylet waits for with a short timeout, which a loaded machine can miss (the
    # raylet then aborts): explicit free ports need no such wait.
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]


def start_ray_head(
    run_id: str,
    log_path: Path,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    dashboard_port: int | None = None,
    autoscaling_config: Path | None = None,
    extra_env: dict[str, str] | None = None,
    gcs_port: int | None = None,
    timeout_s: float = 300,
    attempts: int = 2,
) -> RayNode:
    """``ray start --head --block`` as a child in its own session, on free ports; returns once the dashboard answers."""
    gcs_port = gcs_port or free_port()
    dash_port = free_port(8265 if dashboard_port is None else dashboard_port)  # 0: any free port
    args = [
        ray_executable(), "start", "--head", "--block", f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}", *_agent_port_args(),
    ]
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    if resources:
        args.append(f"--resources={json.dumps(resources)}")
    if autoscaling_config is not None:
        args.append(f"--autoscaling-config={autoscaling_config}")
    url = f"http://127.0.0.1:{dash_port}"
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, attempts + 1):
        pid = processes.spawn_owned(args, run_id, log_path, _ray_env(extra_env))
        try:
            wait_for_dashboard(url, pid, log_path, max(30.0, deadline - time.monotonic()))
            return RayNode(pid=pid, gcs_address=f"{node_ip()}:{gcs_port}", dashboard_url=url)
        except LaunchError:
            # Ray gives its raylet a fixed 30 s to register; on an overloaded machine that can fail once.
            processes.terminate_owned(pid, run_id, grace_s=10)
            if attempt == attempts or time.monotonic() > deadline:
                raise
    raise AssertionError("unreachable")


def start_ray_worker(
    run_id: str,
    gcs_address: str,
    log_path: Path,
    num_cpus: int = 1,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    dashboard_url: str | None = None,
    timeout_s: float = 300,
    attempts: int = 3,
) -> RayNode:
    """One more Ray node joining ``gcs_address`` (``ray start --address ... --block``), owned like the head.

    With ``dashboard_url``, waits until the node is ALIVE in the cluster, restarting it if it dies on the way: on a
    loaded machine the raylet aborts when its dashboard agent is slower than Ray's fixed start-up window.
    """
    args = [
        ray_executable(), "start", f"--address={gcs_address}", "--block", f"--num-cpus={num_cpus}",
        *_agent_port_args(), "--disable-usage-stats",
    ]
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    if resources:
        args.append(f"--resources={json.dumps(resources)}")
    if dashboard_url is None:
        return RayNode(pid=processes.spawn_owned(args, run_id, log_path, _ray_env(None)), gcs_address=gcs_address,
                       dashboard_url=None)
    before = len(_alive_nodes(dashboard_url))
    deadline = time.monotonic() + timeout_s
    for _ in range(attempts):
        pid = processes.spawn_owned(args, run_id, log_path, _ray_env(None))
        while time.monotonic() < deadline and processes.pid_alive(pid):
            try:
                if len(_alive_nodes(dashboard_url)) > before:
                    return RayNode(pid=pid, gcs_address=gcs_address, dashboard_url=dashboard_url)
            except Exception:  # noqa: BLE001 - the dashboard is busy; poll again
                pass
            time.sleep(2)
        processes.terminate_owned(pid, "-none-", grace_s=10)
        if time.monotonic() >= deadline:
            break
    raise LaunchError(f"The Ray worker node did not join {gcs_address}; see {log_path}:\n{_tail(log_path)}")


def node_ip() -> str:
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def wait_for_dashboard(url: str, pid: int | None, log_path: Path | None, timeout_s: float) -> None:
    from deployments.serve_rest import serve_client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pid is not None and not processes.pid_alive(pid):
            detail = _tail(log_path) if log_path else ""
            raise LaunchError(f"The Ray head exited during start-up. Last lines of {log_path}:\n{detail}")
        try:
            serve_client(url)
            # The dashboard can answer before the head's raylet has registered (or failed to): wait for the node.
            if _head_alive(url):
                return
        except Exception:  # noqa: BLE001 - not up yet (connection refused, 5xx while the head starts)
            pass
        time.sleep(1)
    raise LaunchError(f"The Ray head at {url} was not up within {timeout_s:.0f} s; see {log_path}.")


def _alive_nodes(dashboard_url: str) -> list:
    from ray.util.state import list_nodes

    return list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)


def _head_alive(dashboard_url: str) -> bool:
    return any(n.is_head_node for n in _alive_nodes(dashboard_url))


def discover_dashboard(address: str) -> str:
    """The dashboard URL of an existing cluster: given directly (http://...) or found through its Ray address."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/")
    import ray

    ctx = ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        url = ctx.dashboard_url
    finally:
        ray.shutdown()
    if not url:
        raise LaunchError(f"The Ray cluster at {address} runs without a dashboard; start it with --include-dashboard.")
    return url if url.startswith("http") else f"http://{url}"


def serve_config(
    studio_args: dict[str, Any],
    host: str,
    port: int,
    ui_args: dict[str, Any] | None,
    proxy_location: str = "HeadOnly",
    env_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Serve config (``ServeDeploySchema``) of the studio: its app at ``/`` and the UI app at ``/ui``.

    ``env_vars`` reach every replica of both apps, also on a cluster we did not start. Ray's runtime-env agent logs
    them in clear: pass a key's file (``SAGE_STUDIO_API_KEY_FILE``), never a key.
    """
    apps = [{"name": APP_NAME, "route_prefix": "/", "import_path": "deployments.app:build_app", "args": studio_args}]
    if ui_args is not None:
        apps.append({"name": UI_APP_NAME, "route_prefix": "/ui", "import_path": "deployments.ui_deployment:build_app",
                     "args": ui_args})
    if env_vars:
        for app in apps:
            app["runtime_env"] = {"env_vars": dict(env_vars)}
    return {"proxy_location": proxy_location, "http_options": {"host": host, "port": port}, "applications": apps}


def write_serve_config(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Written by `sage studio start`; deployed through the Serve REST API. Redeploy by hand with\n"
              "#   serve deploy <this file> -a <Ray dashboard URL>\n")
    # It may hold API keys (remote endpoint, share login): owner-only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(header + yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class StopReport:
    serve_deleted: bool
    leftover: list[processes.OwnedProcess]


def stop_studio(state: StudioState, grace_s: float = 30.0, log: Callable[[str], None] = lambda _: None) -> StopReport:
    """Delete the Serve apps, then end every process we own; returns what (if anything) survived."""
    from deployments.serve_rest import delete_all, serve_client

    deleted = False
    try:
        log("shutting down the Serve applications")
        deleted = delete_all(serve_client(state.dashboard_url), timeout_s=grace_s * 2)
    except Exception as exc:  # noqa: BLE001 - a dead dashboard must not keep us from killing the processes
        log(f"Serve shutdown through {state.dashboard_url} failed ({exc}); stopping the processes directly")
    leftover: list[processes.OwnedProcess] = []
    if state.share_pid:
        processes.terminate_owned(state.share_pid, "-no-marker-", grace_s=5)
    if state.owns_ray:
        log("stopping the Ray head and everything it started")
        leftover = processes.terminate_owned(state.head_pid, state.run_id, grace_s=grace_s)
    clear_state()
    return StopReport(serve_deleted=deleted, leftover=leftover)


def studio_running(state: StudioState) -> bool:
    """The recorded studio is alive: our head process runs (if we own it) and its dashboard answers."""
    if state.owns_ray and not processes.pid_alive(state.head_pid):
        return False
    from deployments.serve_rest import serve_client

    try:
        serve_client(state.dashboard_url)
    except Exception:  # noqa: BLE001 - unreachable means not running, whatever the reason
        return False
    return True
