"""One module per UI tab; each exposes ``create_<tab>_tab(demo, client, ...)``, which lays the tab out and wires
its events to the tab's controller (the class that holds the ``StudioClient`` and handles those events)."""

from __future__ import annotations

from typing import Any

import gradio as gr


def in_order(updates: dict[str, Any], names: tuple[str, ...]) -> tuple:
    """A handler's updates by output name, as the tuple Gradio expects; an output not named stays as it is."""
    return tuple(updates.get(name, gr.update()) for name in names)
