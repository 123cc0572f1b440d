"""``sage models``: prepare the embedded model, pull hub models into the Hugging Face cache, list what is here."""

from __future__ import annotations

import typer

app = typer.Typer(help="Models the studio can serve.", no_args_is_help=True)


@app.command("prepare")
def prepare(
    tiny: bool = typer.Option(False, help="Also build the tiny random test model under SAGE_HOME/models/tiny-llama."),
) -> None:
    """Materialize the embedded SmolLM2 as an HF checkpoint (idempotent, verified by checksums)."""
    from sage_studio.model_store import build_tiny_llama, prepare_default_model
    from sage_studio.settings import get_settings

    path = prepare_default_model()
    typer.echo(f"SmolLM2-135M-Instruct ready at {path}")
    if tiny:
        typer.echo(f"tiny-llama ready at {build_tiny_llama(get_settings().models_dir / 'tiny-llama')}")


@app.command("pull")
def pull(
    model: str = typer.Argument(..., help="Hub id: org/name, org/name@revision, or org/name:file.gguf."),
) -> None:
    """Download a model from the Hugging Face Hub into its cache once (with a progress bar); a GGUF file is then
    converted to a checkpoint under SAGE_HOME/models. Already cached: nothing is downloaded."""
    from sage_studio.hub import parse_hub_ref
    from sage_studio.model_store import ModelNotFoundError, resolve_model_path

    if parse_hub_ref(model) is None:
        typer.secho(f"'{model}' is not a hub id: use org/name, org/name@revision or org/name:file.gguf.",
                    err=True, fg="red")
        raise typer.Exit(2)
    try:
        path = resolve_model_path(model, download=True)
    except ModelNotFoundError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(1) from None
    typer.echo(f"{model} ready at {path}")
    typer.echo(f"serve it: sage studio start --llm-model {model}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table.")) -> None:
    """Models on this machine: prepared under SAGE_HOME/models, in the Hugging Face cache, and fine-tunes."""
    import json

    from deployments.model_catalog import available_models
    from sage_studio.settings import get_settings
    from train.store import FinetuneStore

    models = available_models(FinetuneStore(get_settings().sage_home))
    if as_json:
        typer.echo(json.dumps([m.model_dump() for m in models], indent=1))
        return
    if not models:
        typer.echo("No models yet: `sage models prepare` (the embedded SmolLM2) or `sage models pull org/name`.")
        return
    width = max(len(m.name) for m in models)
    for m in models:
        extra = f"  base {m.base}" + (f" ({m.label})" if m.label else "") if m.kind == "finetune" else ""
        typer.echo(f"{m.name:<{width}}  {m.kind:<8}  {_size(m.size_bytes):>9}  {m.path}{extra}")
