"""``sage studio start`` as a library call: options → validated app config → Ray head → Serve deploy → running.

The CLI (``studio_cli.py``) only parses flags and renders progress; tests call ``start_studio`` the same way.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sage_cli import launcher, processes
from sage_studio.api_key import KEY_FILE_NAME, KEY_FILE_VAR, LOGIN_FILE_NAME, LOGIN_FILE_VAR, write_key_file
from sage_studio.settings import DEFAULT_MODEL_NAME, get_settings

Report = Callable[[str], None]


@dataclass
class StartOptions:
    """Every ``sage studio start`` flag."""

    host: str = "127.0.0.1"
    port: int = 8000
    llm: bool = True
    llm_model: str | None = None
    engine: str = "auto"
    use_finetuned: bool = False
    share: bool = False
    auth: tuple[str, str] | None = None  # the UI's login (user, password), besides user 'sage' + the API key
    address: str | None = None
    ui: bool = True
    num_cpus: int | None = None
    dashboard_port: int | None = None
    proxy_location: str = "HeadOnly"
    timeout_s: float = 900
    model_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetunedModel:
    """A completed fine-tune whose adapter can be served."""

    task_id: str
    name: str
    base: str
    adapter_path: Path
    finished_at: float | None
    final_loss: float | None


def list_finetuned() -> list[FinetunedModel]:
    """Completed fine-tunes with an adapter on disk, newest first."""
    from train.store import FinetuneStore
    from train.task_folder import adapter_dir

    store = FinetuneStore(get_settings().sage_home)
    found = []
    for task in store.list_tasks(("completed",)):
        adapter = adapter_dir(store.task_dir(task.id))
        if not (adapter / "adapter_config.json").is_file():
            continue
        name = task.name if task.name and ":" not in task.name else task.id
        found.append(FinetunedModel(task.id, name, str(task.config.get("model", DEFAULT_MODEL_NAME)), adapter,
                                    task.finished_at, task.progress.get("loss")))
    return sorted(found, key=lambda f: f.finished_at or 0, reverse=True)


def _latest_finetune(served: set[str]) -> FinetunedModel:
    """The fine-tune ``--use-finetuned`` serves: the latest completed one, trained on a model the studio serves."""
    tunes = list_finetuned()
    if not tunes:
        raise launcher.LaunchError("--use-finetuned: there is no completed fine-tune yet (see `sage finetune list`).")
    tune = tunes[0]
    if tune.base not in served:
        raise launcher.LaunchError(
            f"--use-finetuned: the latest fine-tune '{tune.name}' was trained on '{tune.base}', but the studio serves "
            f"{sorted(served)}. Start with --llm-model {tune.base}.")
    return tune


def _switch_to_finetune(state: launcher.StudioState, tune: FinetunedModel, key: str | None) -> str:
    """Make ``tune`` the chat model through the running gateway: the same checked, probed switch the UI and
    ``POST /api/finetune/use-as-backend`` make (``deployments/model_switch.py``); returns its served name."""
    import httpx

    from sage_studio.http_errors import error_message
    from sage_studio.operations import operation_id_of

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=state.base_url, headers=headers, timeout=60) as http:
        response = http.post("/api/finetune/use-as-backend", json={"task_id": tune.task_id})
        if not response.is_success:
            raise launcher.LaunchError(f"--use-finetuned: the studio refused fine-tune '{tune.name}' "
                                       f"({response.status_code}): {error_message(response)}")
        body = response.json()
        # A merged fine-tune answers 202: the merge and the load run as an operation, followed here to its end.
        while (operation_id := operation_id_of(body)) is not None:
            answer = http.get(f"/api/operations/{operation_id}")
            if not answer.is_success:
                raise launcher.LaunchError(f"--use-finetuned: cannot follow the switch: {error_message(answer)}")
            operation = answer.json()
            if operation.get("state") == "failed":
                raise launcher.LaunchError(f"--use-finetuned: switching to fine-tune '{tune.name}' failed: "
                                           f"{operation.get('error')}")
            if operation.get("state") == "succeeded":
                body = operation["result"]
            else:
                time.sleep(1)
    return body["model"]


def studio_args(opts: StartOptions, report: Report) -> dict[str, Any]:
    """The validated ``StudioConfig`` for these options, as the Serve config's ``args``."""
    from deployments.config import ModelConfig, StudioConfig
    from sage_studio.model_store import prepare_default_model, resolve_model_path, served_name

    settings = get_settings()
    models = []
    if opts.llm:
        source = opts.llm_model or settings.studio_llm_model
        if source == DEFAULT_MODEL_NAME:
            report(f"preparing {DEFAULT_MODEL_NAME} (first run: converting the embedded GGUF, about a minute)")
            prepare_default_model()
        elif not opts.address:
            # With a remote cluster the path must exist on the workers' shared storage, not necessarily here.
            # A hub id not cached yet is downloaded here, with its progress bar, rather than in a replica's log.
            resolve_model_path(source, download=True)
        name = served_name(source)
        models.append(ModelConfig(name=name, source=source, engine=opts.engine, **opts.model_overrides))
    config = StudioConfig(models=models, sage_home=str(settings.sage_home))
    if opts.use_finetuned:  # checked before anything starts; the switch itself happens once the app runs
        if not models:
            raise launcher.LaunchError("--use-finetuned needs a local model: drop --no-llm.")
        _latest_finetune({m.name for m in models})
    return config.model_dump(mode="json")


def _ui_available() -> bool:
    return importlib.util.find_spec("ui") is not None and importlib.util.find_spec("ui.app") is not None


def start_studio(opts: StartOptions, report: Report = lambda _: None) -> launcher.StudioState:
    """Start the studio (idempotent callers check ``read_state`` first); returns the recorded state."""
    settings = get_settings()
    log_dir = settings.studio_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if not opts.address and not launcher.port_is_free(opts.port, "0.0.0.0" if opts.host == "0.0.0.0" else opts.host):
        raise launcher.LaunchError(f"Port {opts.port} is already in use on {opts.host}: pass --port with a free one.")
    if opts.share and not settings.studio_api_key:
        # A share link exposes the whole port: never without a key. Set in this process only (the CLI prints it);
        # the Ray head does not inherit it (launcher._ray_env): replicas read the key file (deploy_config).
        import os

        from sage_studio.api_key import KEY_VAR
        from sage_cli.share import new_login_key

        os.environ[KEY_VAR] = new_login_key()
        get_settings.cache_clear()
        settings = get_settings()
        report(f"--share: generated the studio login/API key {settings.studio_api_key} (also in {key_file_path()})")
    key = settings.studio_api_key
    args = studio_args(opts, report)

    run_id = processes.new_run_id()
    if opts.address:
        report(f"joining the Ray cluster at {opts.address}")
        dashboard = launcher.discover_dashboard(opts.address)
        gcs = None if opts.address.startswith(("http://", "https://")) else opts.address
        state = launcher.StudioState(run_id=run_id, owns_ray=False, dashboard_url=dashboard, gcs_address=gcs,
                                     http_host=opts.host, http_port=opts.port, log_dir=str(log_dir),
                                     serve_config_path=str(settings.studio_dir / "serve_config.yaml"))
    else:
        report("starting a local Ray head")
        head = launcher.start_ray_head(run_id, log_dir / "ray-head.log", num_cpus=opts.num_cpus,
                                       dashboard_port=opts.dashboard_port)
        state = launcher.StudioState(run_id=run_id, owns_ray=True, head_pid=head.pid, gcs_address=head.gcs_address,
                                     dashboard_url=head.dashboard_url or "", http_host=opts.host, http_port=opts.port,
                                     log_dir=str(log_dir),
                                     serve_config_path=str(settings.studio_dir / "serve_config.yaml"))
    launcher.write_state(state)  # from here on, `sage studio stop` can clean up whatever happens next
    try:
        return _deploy(state, opts, args, key, report)
    except BaseException:
        report("start failed: stopping what was started")
        launcher.stop_studio(state, grace_s=15)
        raise


def key_file_path() -> Path:
    return get_settings().studio_dir / KEY_FILE_NAME


def deploy_config(state: launcher.StudioState, opts: StartOptions, args: dict[str, Any], key: str | None
                  ) -> dict[str, Any]:
    """The Serve config to deploy, written to ``state.serve_config_path``. With a key, the key goes to
    ``SAGE_HOME/studio/api_key`` (0600) and the replicas get only its path (``SAGE_STUDIO_API_KEY_FILE``): the
    config, which the dashboard shows, and Ray's runtime-env log, which records ``env_vars``, never hold it."""
    key_file = key_file_path()
    env_vars = None
    if key:
        env_vars = {KEY_FILE_VAR: str(write_key_file(key_file, key))}
    else:
        key_file.unlink(missing_ok=True)  # a key of an earlier run must not lie around
    login_file = get_settings().studio_dir / LOGIN_FILE_NAME
    if opts.auth:
        env_vars = (env_vars or {}) | {LOGIN_FILE_VAR: str(write_key_file(login_file, ":".join(opts.auth)))}
    else:
        login_file.unlink(missing_ok=True)
    local_gateway = f"http://127.0.0.1:{opts.port}" if opts.host in ("0.0.0.0", "::") else state.base_url
    ui_args = ({"gateway_url": local_gateway, "dashboard_url": state.dashboard_url}
               if opts.ui and _ui_available() else None)
    config = launcher.serve_config(args, opts.host, opts.port, ui_args, opts.proxy_location, env_vars)
    launcher.write_serve_config(config, Path(state.serve_config_path))
    return config


def _deploy(state: launcher.StudioState, opts: StartOptions, args: dict[str, Any], key: str | None,
            report: Report) -> launcher.StudioState:
    from deployments import serve_rest

    if opts.share:
        from sage_cli.share import start_share

        report("opening a Gradio share link")
        state.share_pid, state.share_url = start_share(state, Path(state.log_dir) / "share.log")
        launcher.write_state(state)
    config = deploy_config(state, opts, args, key)
    ui_deployed = len(config["applications"]) > 1
    client = serve_rest.serve_client(state.dashboard_url)
    report(f"deploying {state.serve_config_path}")
    serve_rest.deploy(client, config)
    started = time.monotonic()

    def progress(status: serve_rest.AppStatus | None) -> None:
        waited = time.monotonic() - started
        if status is None:
            report(f"waiting for Serve to build the application ({waited:.0f} s)")
            return
        parts = [f"{d.name} {d.status.lower()} {d.replicas_running}/{d.replicas_target or '?'}"
                 for d in status.deployments]
        report(f"{status.status.lower()} ({waited:.0f} s): " + (", ".join(parts) or "building"))

    serve_rest.wait_running(client, launcher.APP_NAME, opts.timeout_s, progress)
    if opts.use_finetuned:
        tune = _latest_finetune({m["name"] for m in args["models"]})
        report(f"switching the chat model to fine-tune '{tune.name}'")
        chosen = _switch_to_finetune(state, tune, key)
        report(f"chat model: fine-tune '{chosen}' on {tune.base}")
    if ui_deployed:
        serve_rest.wait_running(client, launcher.UI_APP_NAME, max(60.0, opts.timeout_s / 4), progress)
    return state
