"""``sage studio start|stop|status|logs``: run the studio on a local Ray head (or an existing cluster) and inspect it."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from sage_cli import launcher
from sage_studio.api_key import parse_login

app = typer.Typer(help="Run the studio.", no_args_is_help=True)
# Wide enough for the status table when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def _print_urls(state: launcher.StudioState) -> None:
    for name, url in state.urls().items():
        console.print(f"  {name + ':':<15} {url}")
    if state.share_error:
        console.print(f"  {'share link:':<15} [yellow]none[/yellow]: {state.share_error}")
    if state.gcs_address:
        console.print(f"  {'Ray address:':<15} {state.gcs_address}  (other nodes: ray start --address=...)")


@app.command()
def start(
    host: str = typer.Option("127.0.0.1", help="Interface Serve's HTTP proxy binds (0.0.0.0 to reach it from others)."),
    port: int = typer.Option(8000, help="Serve's HTTP port: gateway /v1, studio API /api, UI /ui."),
    no_llm: bool = typer.Option(False, "--no-llm", help="No local engine (chat goes to SAGE_CHAT_BASE_URL if set)."),
    llm_model: Optional[str] = typer.Option(
        None, help="Chat model: a prepared model name or an HF checkpoint folder (default: SAGE_STUDIO_LLM_MODEL)."),
    engine: str = typer.Option("auto", help="auto (vLLM where it runs), vllm, transformers or remote."),
    use_finetuned: bool = typer.Option(False, "--use-finetuned", help="Chat with the latest completed fine-tune."),
    list_finetuned: bool = typer.Option(False, "--list-finetuned", help="List completed fine-tunes and exit."),
    share: bool = typer.Option(False, "--share", help="Also open a Gradio share link (login required)."),
    auth: Optional[str] = typer.Option(
        None, "--auth", metavar="USER:PASSWORD",
        help="The UI's login (e.g. for --share), besides user 'sage' with the API key as password."),
    address: Optional[str] = typer.Option(
        None, help="Deploy onto an existing Ray cluster (its dashboard URL or Ray address) instead of a local head."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Do not deploy the Gradio UI application."),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs the local Ray head offers (default: all cores)."),
    dashboard_port: Optional[int] = typer.Option(None, help="Ray dashboard port (default 8265, or a free one)."),
    proxy_location: str = typer.Option("HeadOnly", help="Serve proxies: HeadOnly or EveryNode (clusters)."),
    timeout: float = typer.Option(900, help="Seconds to wait for the application to be running."),
) -> None:
    """Start Ray, deploy the studio's Serve application and print its URLs (a second start only says where it is)."""
    from sage_cli.start import StartOptions, start_studio

    try:
        login = parse_login(auth) if auth is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--auth") from None
    if list_finetuned:
        _list_finetuned()
        return
    state = launcher.read_state()
    if state is not None:
        if launcher.studio_running(state):
            console.print(f"The studio is already running (started {_ago(state.started_at)}):")
            _print_urls(state)
            return
        err.print("A previous studio did not stop cleanly: cleaning it up first.")
        launcher.stop_studio(state, grace_s=10)
    opts = StartOptions(host=host, port=port, llm=not no_llm, llm_model=llm_model, engine=engine,
                        use_finetuned=use_finetuned, share=share, auth=login, address=address, ui=not no_ui, num_cpus=num_cpus,
                        dashboard_port=dashboard_port, proxy_location=proxy_location, timeout_s=timeout)
    had_key = bool(launcher.get_settings().studio_api_key)
    interactive = console.is_terminal
    with console.status("starting the studio", spinner="dots") as spinner:
        last = [""]

        def report(text: str) -> None:
            if interactive:
                spinner.update(text)
            elif text.split(" (")[0] != last[0].split(" (")[0]:  # in logs, one line per phase, not per poll
                console.print(f"… {text}")
            last[0] = text

        try:
            state = start_studio(opts, report)
        except (launcher.LaunchError, ValueError) as exc:
            err.print(f"[red]Could not start the studio:[/red] {exc}")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - e.g. Serve's deploy failure: show its words, not a traceback
            err.print(f"[red]Could not start the studio:[/red] {type(exc).__name__}: {exc}")
            err.print(f"Logs: {launcher.get_settings().studio_dir / 'logs'}, and `sage studio logs` while it runs.")
            raise typer.Exit(1) from None
    console.print("[green]The studio is running.[/green]")
    _print_urls(state)
    if share and not had_key:  # in a terminal the progress line that named it was only a spinner's text
        from ui.app import LOGIN_USER

        console.print(f"  {'API key:':<15} {launcher.get_settings().studio_api_key}  (generated for --share: the "
                      f"gateway's bearer key, and the UI's password for user '{LOGIN_USER}')")
    if login:
        console.print(f"  {'UI login:':<15} user '{login[0]}' with the password given to --auth")
    console.print("Stop it with `sage studio stop`; follow its logs with `sage studio logs -f`.")


def _ago(ts: float) -> str:
    import time

    seconds = int(time.time() - ts)
    return f"{seconds // 60} min ago" if seconds >= 60 else f"{seconds} s ago"


def _list_finetuned() -> None:
    from sage_cli.start import list_finetuned

    tunes = list_finetuned()
    if not tunes:
        console.print("No completed fine-tunes yet. Start one with `sage finetune start --model M --data data.jsonl`.")
        return
    table = Table("name", "task", "base model", "final loss", "adapter")
    for t in tunes:
        table.add_row(t.name, t.task_id, t.base, f"{t.final_loss:.4f}" if t.final_loss is not None else "-",
                      str(t.adapter_path))
    console.print(table)
    console.print("`sage studio start --use-finetuned` serves the first one as the chat model.")


@app.command()
def stop(grace: float = typer.Option(30, help="Seconds to wait for a clean exit before killing.")) -> None:
    """Shut down the Serve application and every process the studio started; checks nothing of ours is left."""
    state = launcher.read_state()
    if state is None:
        console.print("The studio is not running.")
        return
    with console.status("stopping the studio", spinner="dots") as spinner:
        report = launcher.stop_studio(state, grace_s=grace, log=spinner.update)
    if report.leftover:
        err.print("[red]These processes of the studio are still alive:[/red]")
        for proc in report.leftover:
            err.print(f"  pid {proc.pid} {proc.cmdline}")
        raise typer.Exit(1)
    where = "Ray head and all its processes stopped" if state.owns_ray else "Serve application removed from the cluster"
    console.print(f"The studio is stopped ({where}).")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Each deployment's health, replicas, model and URL; the Ray nodes. Exit code 1 when not running."""
    from deployments import serve_rest

    state = launcher.read_state()
    if state is None or not launcher.studio_running(state):
        if as_json:
            console.print_json(json.dumps({"running": False}))
        else:
            console.print("The studio is not running." + (" (stale state: run `sage studio stop`)" if state else ""))
        raise typer.Exit(1)
    client = serve_rest.serve_client(state.dashboard_url)
    details = client.get_serve_details()
    apps = {name: serve_rest.app_status(details, name) for name in (launcher.APP_NAME, launcher.UI_APP_NAME)}
    nodes = _nodes(state.dashboard_url)
    healthy = apps[launcher.APP_NAME] is not None and apps[launcher.APP_NAME].status == serve_rest.APP_RUNNING
    if as_json:
        payload = {"running": True, "healthy": healthy, "urls": state.urls(), "nodes": nodes,
                   "applications": {n: (a.__dict__ | {"deployments": [d.__dict__ for d in a.deployments]}) if a else None
                                    for n, a in apps.items()}}
        console.print_json(json.dumps(payload, default=str))
    else:
        _print_status(state, apps, nodes)
    if not healthy:
        raise typer.Exit(1)


def _nodes(dashboard_url: str) -> list[dict]:
    from ray.util.state import list_nodes

    try:
        found = list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - node info is extra; the app status above is what matters
        return []
    return [{"node_ip": n.node_ip, "head": n.is_head_node, "resources": n.resources_total} for n in found]


def _models_by_deployment(args: dict) -> dict[str, str]:
    from deployments.config import engine_deployment_name

    return {engine_deployment_name(m["name"]): f"{m['name']} ({m.get('engine', 'auto')}, {m['source']})"
            for m in args.get("models", [])}


def _print_status(state: launcher.StudioState, apps: dict, nodes: list[dict]) -> None:
    console.print(f"Studio started {_ago(state.started_at)}; Ray {'head owned by the studio' if state.owns_ray else 'cluster at ' + state.dashboard_url}.")
    table = Table("application", "deployment", "status", "replicas", "node(s)", "model / resources")
    for name, app_state in apps.items():
        if app_state is None:
            table.add_row(name, "-", "NOT DEPLOYED", "", "", "")
            continue
        models = _models_by_deployment(app_state.args)
        for dep in app_state.deployments:
            what = models.get(dep.name) or ", ".join(f"{k}={v:g}" for k, v in dep.resources.items() if v) or "-"
            if dep.name in models:
                what += "  [" + ", ".join(f"{k}={v:g}" for k, v in dep.resources.items() if v) + "]"
            style = "green" if dep.status == "HEALTHY" else "yellow"
            table.add_row(name, dep.name, f"[{style}]{dep.status}[/{style}]",
                          f"{dep.replicas_running}/{dep.replicas_target}", ", ".join(dep.nodes), what)
        if app_state.message and app_state.status != "RUNNING":
            console.print(f"[yellow]{name}: {app_state.status}: {app_state.message}[/yellow]")
    console.print(table)
    for node in nodes:
        res = ", ".join(f"{k}={v:g}" for k, v in sorted(node["resources"].items())
                        if not k.startswith(("node:", "memory", "object_store")))
        console.print(f"  node {node['node_ip']}{' (head)' if node['head'] else ''}: {res}")
    _print_urls(state)


@app.command()
def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C to quit)."),
    lines: int = typer.Option(50, "--lines", "-n", help="Lines of history per log."),
    match: Optional[str] = typer.Option(None, "--filter", help="Only logs whose label contains this (e.g. LLM, Gateway)."),
) -> None:
    """The app's logs from every node: Serve controller, proxies, replicas (and the engines' stderr)."""
    from sage_cli.logs import stream_logs

    state = launcher.read_state()
    if state is None or not launcher.studio_running(state):
        err.print("The studio is not running.")
        raise typer.Exit(1)

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if not state.gcs_address:
        err.print("Logs need the cluster's Ray address: start with --address <host:port> rather than a dashboard URL.")
        raise typer.Exit(1)
    try:
        count = stream_logs(state.dashboard_url, state.gcs_address, emit, tail=lines, follow=follow, match=match)
    except KeyboardInterrupt:
        return
    if count == 0:
        err.print("No log matched." if match else "No Serve logs yet.")
