"""The ``sage`` command: one console-script entry point, one typer sub-app per area."""

from __future__ import annotations

import typer

from sage_cli.finetune import app as finetune_app
from sage_cli.pipeline import app as pipeline_app
from sage_cli.studio import app as studio_app

app = typer.Typer(help="SAGE Studio on Ray: chat, pipelines, fine-tuning and hot-swap of LLMs.", no_args_is_help=True)
models_app = typer.Typer(help="Models the studio can serve.", no_args_is_help=True)
app.add_typer(studio_app, name="studio")
app.add_typer(models_app, name="models")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(finetune_app, name="finetune")


@models_app.command("prepare")
def models_prepare(
    tiny: bool = typer.Option(False, help="Also build the tiny random test model under SAGE_HOME/models/tiny-llama."),
) -> None:
    """Materialize the embedded SmolLM2 as an HF checkpoint (idempotent, verified by checksums)."""
    from sage_studio.model_store import build_tiny_llama, prepare_default_model
    from sage_studio.settings import get_settings

    path = prepare_default_model()
    typer.echo(f"SmolLM2-135M-Instruct ready at {path}")
    if tiny:
        typer.echo(f"tiny-llama ready at {build_tiny_llama(get_settings().models_dir / 'tiny-llama')}")
