"""The ``sage`` command: one console-script entry point, one typer sub-app per area."""

from __future__ import annotations

import typer

from sage_cli.finetune import app as finetune_app
from sage_cli.models import app as models_app
from sage_cli.pipeline import app as pipeline_app
from sage_cli.studio import app as studio_app

app = typer.Typer(help="SAGE Studio on Ray: chat, pipelines, fine-tuning and hot-swap of LLMs.", no_args_is_help=True)
app.add_typer(studio_app, name="studio")
app.add_typer(models_app, name="models")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(finetune_app, name="finetune")

