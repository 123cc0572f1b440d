"""``sage finetune``: start, list, follow and cancel fine-tunes of a running studio, over its HTTP API."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import httpx
import typer

from sage_cli.gateway_client import URL_OPTION, call, check, client
from sage_studio.settings import DEFAULT_MODEL_NAME

app = typer.Typer(help="Fine-tune models with LoRA on the studio's Ray cluster.", no_args_is_help=True)
FINAL = ("completed", "failed", "cancelled")


@app.command()
def start(
    data: Path = typer.Option(..., "--data", exists=True, help="JSONL, a JSON array of rows, Parquet, CSV/TSV, "
                              "Arrow/Feather, or a folder saved by Hugging Face datasets (save_to_disk)."),
    model: str = typer.Option(DEFAULT_MODEL_NAME, "--model",
                              help="Base model: a prepared name, a checkpoint folder or a hub id (org/name)."),
    columns: Optional[str] = typer.Option(
        None, "--columns", metavar="FIELD=COLUMN,...",
        help="Which columns hold the dataset's fields, e.g. instruction=prompt,output=completion (default: detected)."),
    epochs: int = typer.Option(1, help="Passes over the dataset."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many steps."),
    batch_size: int = typer.Option(4, help="Rows per step on each worker."),
    learning_rate: float = typer.Option(2e-4, help="Peak learning rate."),
    max_length: int = typer.Option(512, help="Tokens per row."),
    lora_r: int = typer.Option(8, help="LoRA rank."),
    lora_alpha: int = typer.Option(16, help="LoRA alpha."),
    lora_dropout: float = typer.Option(0.05, help="LoRA dropout."),
    num_workers: int = typer.Option(1, help="Ray Train workers."),
    cpus_per_worker: float = typer.Option(1, help="CPUs per worker."),
    worker_resource: Optional[list[str]] = typer.Option(
        None, "--worker-resource", metavar="NAME=AMOUNT",
        help="A Ray resource each worker reserves besides its CPUs, e.g. train_gpu=1 to run on those nodes "
             "(repeatable).",
    ),
    val_size: Optional[float] = typer.Option(None, help="Fraction held out for evaluation (0-0.5); default 0.1 "
                                             "with >= 50 rows, else 0."),
    eval_steps: Optional[int] = typer.Option(None, help="Steps between held-out evaluations."),
    name: Optional[str] = typer.Option(None, help="Display name."),
    detach: bool = typer.Option(False, "--detach", help="Return once queued instead of following progress."),
    url: str = URL_OPTION,
) -> None:
    """Upload a dataset, show its validation report, queue a fine-tune and follow it with a progress bar."""
    resources = _parse_resources(worker_resource or [])
    form = {"model": model, "max_length": str(max_length)}
    if columns:
        form["columns"] = json.dumps(_parse_columns(columns))
    with client(url) as http, _upload_file(data) as (filename, f):
        ds = call(http, "POST", "/api/datasets", files={"file": (filename, f)}, data=form)
        report = ds["report"]
        mapped = ", ".join(f"{k}←{v}" for k, v in report.get("column_mapping", {}).items())
        typer.echo(f"dataset {ds['id']}: {report['format']}, {report['rows_valid']} valid / "
                   f"{report['rows_total']} rows" + (f" (columns {mapped})" if mapped else ""))
        for err in report["errors"][:5]:
            typer.secho(f"  row {err['row']}: {err['reason']}", fg="yellow")
        if report.get("tokens") and report["tokens"]["over_max_length"]:
            typer.secho(f"  {report['tokens']['over_max_length']} rows are longer than {max_length} tokens "
                        "and will be truncated", fg="yellow")
        body = {"model": model, "dataset_id": ds["id"], "epochs": epochs, "max_steps": max_steps,
                "batch_size": batch_size, "learning_rate": learning_rate, "max_length": max_length,
                "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
                "num_workers": num_workers, "cpus_per_worker": cpus_per_worker, "name": name,
                "val_size": val_size, "eval_steps": eval_steps}
        if resources:
            body["worker_resources"] = resources
        task = call(http, "POST", "/api/finetune/create", json=body)
        typer.echo(f"task {task['id']} {task['state']}")
        if not detach:
            _follow(http, task["id"])


@contextmanager
def _upload_file(data: Path):
    """(file name, open file) to upload: the file itself, or a folder (a datasets save_to_disk) zipped first."""
    if not data.is_dir():
        with open(data, "rb") as f:
            yield data.name, f
        return
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # Arrow shards barely compress: store them
            for path in sorted(p for p in data.rglob("*") if p.is_file()):
                zf.write(path, path.relative_to(data).as_posix())
        tmp.seek(0)
        yield f"{data.name}.zip", tmp


def _parse_columns(text: str) -> dict[str, str]:
    """``"instruction=prompt,output=completion"`` → ``{"instruction": "prompt", ...}``; the studio checks names."""
    pairs = {}
    for item in text.split(","):
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise typer.BadParameter(f"'{item}' is not FIELD=COLUMN (e.g. instruction=prompt)", param_hint="--columns")
        pairs[field.strip()] = column.strip()
    return pairs


def _parse_resources(items: list[str]) -> dict[str, float]:
    """``["train_gpu=1", "memory=2e9"]`` → ``{"train_gpu": 1.0, "memory": 2e9}``; the studio checks the values."""
    resources: dict[str, float] = {}
    for item in items:
        name, sep, amount = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            resources[name.strip()] = float(amount)
        except ValueError:
            raise typer.BadParameter(f"'{item}' is not NAME=AMOUNT (e.g. train_gpu=1)",
                                     param_hint="--worker-resource") from None
    return resources


def _follow(http: httpx.Client, task_id: str) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        row = bar.add_task("queued", total=None, info="")
        while True:
            task = call(http, "GET", f"/api/finetune/tasks/{task_id}")
            p = task.get("progress", {})
            info = f"loss {p['loss']:.4f}" if p.get("loss") is not None else p.get("phase", "")
            bar.update(row, description=task["state"], total=p.get("total_steps"), completed=p.get("step", 0),
                       info=info)
            if task["state"] in FINAL:
                break
            time.sleep(1)
    colour = {"completed": "green", "failed": "red"}.get(task["state"], "yellow")
    typer.secho(f"task {task_id} {task['state']}" + (f": {task['error']}" if task.get("error") else ""), fg=colour)
    if task["state"] == "completed":
        typer.echo(f"adapter: {p.get('adapter_path')}")
        if task.get("evaluation"):
            ev = task["evaluation"]
            typer.echo(f"held-out loss on {ev['rows']} rows: base {ev['base']['loss']} "
                       f"(perplexity {ev['base']['perplexity']}) -> fine-tuned {ev['fine_tuned']['loss']} "
                       f"(perplexity {ev['fine_tuned']['perplexity']})")
    else:
        raise typer.Exit(1)


@app.command("list")
def list_tasks(url: str = URL_OPTION) -> None:
    """Tasks, newest first: id, state, progress, last loss, name."""
    with client(url) as http:
        tasks = call(http, "GET", "/api/finetune/tasks")
    if not tasks:
        typer.echo("no fine-tune tasks")
    for t in tasks:
        p = t.get("progress", {})
        steps = f"{p.get('step', 0)}/{p['total_steps']}" if p.get("total_steps") else "-"
        loss = f"{p['loss']:.4f}" if p.get("loss") is not None else "-"
        typer.echo(f"{t['id']}  {t['state']:<10} {steps:>9}  loss {loss:<8} {t['name']}")


@app.command()
def logs(task_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the task ends."),
         url: str = URL_OPTION) -> None:
    """Print a task's log (or stream it with --follow)."""
    with client(url) as http:
        if not follow:
            response = http.get(f"/api/finetune/tasks/{task_id}/logs")
            check(response) if not response.is_success else sys.stdout.write(response.text)
            return
        with http.stream("GET", f"/api/finetune/tasks/{task_id}/logs", params={"follow": "true"}) as stream:
            if not stream.is_success:
                stream.read()
                check(stream)
            for chunk in stream.iter_text():
                sys.stdout.write(chunk)
                sys.stdout.flush()


@app.command()
def cancel(task_id: str, url: str = URL_OPTION) -> None:
    """Cancel a queued or running task."""
    with client(url) as http:
        task = call(http, "POST", f"/api/finetune/tasks/{task_id}/cancel")
    typer.echo(f"task {task_id} {task['state']}")
