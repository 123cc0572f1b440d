"""``sage studio ...``: start, stop and inspect the studio on a local Ray cluster."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run the studio.", no_args_is_help=True)
