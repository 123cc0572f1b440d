"""``sage pipeline ...``: run, list, import, export and batch pipelines against the running studio.

Every command talks to the studio over HTTP (``--url``, env ``SAGE_STUDIO_URL``, default http://127.0.0.1:8000);
``run --local`` instead builds and runs the pipeline in this process (its generators still call the studio).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from sage_cli.gateway_client import URL_OPTION, call, client

app = typer.Typer(help="Run, list, import, export and batch pipelines.", no_args_is_help=True)

def _parse_input(text: Optional[str], json_text: Optional[str]) -> Any:
    if json_text is None:
        return text
    try:
        return json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--input-json is not valid JSON: {exc.msg}") from None


def _print_run(outcome: dict[str, Any], verbose: bool) -> None:
    if verbose:
        for node in outcome["nodes"].values():
            typer.echo(f"# {node['node_id']} ({node['type']}): {node['status']} in {node['duration_ms']:.1f} ms",
                       err=True)
            for line in node["logs"]:
                typer.echo(f"#   {line}", err=True)
    if outcome["status"] != "ok":
        typer.echo(outcome["error"], err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(outcome["result"], ensure_ascii=False, sort_keys=True, indent=None))


@app.command("run")
def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A pipeline JSON file (exported or plain)."),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="The run input, as text."),
    input_json: Optional[str] = typer.Option(None, "--input-json", help="The run input as a JSON object."),
    local: bool = typer.Option(False, help="Run in this process instead of in the studio's gateway."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each node's status, timing and log."),
    url: str = URL_OPTION,
) -> None:
    """Run a pipeline file on one input and print the terminal nodes' outputs as JSON."""
    from pipelines.models import import_json

    try:
        pipeline = import_json(file.read_bytes())
    except ValueError as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(1) from None
    value = _parse_input(input, input_json)
    if local:
        from pipelines import PipelineBuilder, PipelineRunner, PipelineValidationError
        from pipelines.operators.base import OperatorEnv

        try:
            built = PipelineBuilder(env=OperatorEnv.from_environment(studio_url=url)).build(pipeline)
        except PipelineValidationError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        _print_run(PipelineRunner(built).run(value).model_dump(mode="json"), verbose)
        return
    with client(url) as http:
        body = {"pipeline": pipeline.model_dump(mode="json"), "input": value}
        _print_run(call(http, "POST", "/api/pipelines/run", json=body), verbose)


@app.command("list")
def list_(url: str = URL_OPTION) -> None:
    """Saved pipelines, most recently changed first."""
    with client(url) as http:
        for item in call(http, "GET", "/api/pipelines"):
            typer.echo(f"{item['id']}  {item['nodes']:>3} nodes  {item['updated_at']}  {item['name']}")


@app.command("export")
def export(
    pipeline_id: str = typer.Argument(..., help="Id of a saved pipeline (see 'sage pipeline list')."),
    python: bool = typer.Option(False, "--python", help="Export a runnable Python script instead of JSON."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    url: str = URL_OPTION,
) -> None:
    """Download a saved pipeline as a versioned JSON file, or as a Python script."""
    with client(url) as http:
        text = call(http, "GET", f"/api/pipelines/{pipeline_id}/{'python' if python else 'export'}", raw=True).text
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@app.command("import")
def import_(file: Path = typer.Argument(..., exists=True, dir_okay=False), url: str = URL_OPTION) -> None:
    """Save a pipeline file in the studio (it gets a new id)."""
    with client(url) as http:
        saved = call(http, "POST", "/api/pipelines/import", files={"file": (file.name, file.read_bytes())})
    typer.echo(saved["id"])


@app.command("batch")
def batch(
    pipeline_id: str = typer.Argument(..., help="Id of a saved pipeline."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Inputs: .jsonl (one JSON per line) or .csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Save the output rows here when done."),
    wait: bool = typer.Option(True, help="Wait and show progress until the job finishes."),
    url: str = URL_OPTION,
) -> None:
    """Run every row of FILE through a saved pipeline on Ray Data."""
    with client(url) as http:
        job = call(http, "POST", f"/api/pipelines/{pipeline_id}/batch", follow=False,  # polled below, row by row
                   files={"file": (file.name, file.read_bytes())})
        typer.echo(f"job {job['job_id']} started", err=True)
        while wait and job["status"] in ("queued", "running"):
            time.sleep(1)
            job = call(http, "GET", f"/api/pipelines/batches/{job['job_id']}")
            typer.echo(f"\r{job['done']}/{job['total'] or '?'} rows, {job['failed']} failed", err=True, nl=False)
        if wait:
            typer.echo("", err=True)
            typer.echo(json.dumps({k: job[k] for k in ("status", "total", "done", "failed", "metrics", "errors", "error")},
                                  indent=2))
            if output is not None and job["status"] == "completed":
                output.write_bytes(call(http, "GET", f"/api/pipelines/batches/{job['job_id']}/output", raw=True).content)
            if job["status"] != "completed":
                raise typer.Exit(1)
