"""The selected node's config form in the Pipelines tab: one widget per field of its operator's JSON schema
(``ui.schema_form`` decides which), drawn inside ``gr.render`` whenever the document or the selection changes.
Applying it is one edit of the document (``PipelinesController.apply_config``), so it can be undone."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from ui import schema_form, strings
from ui.render import esc


def config_widget(spec: schema_form.FieldSpec, config: dict[str, Any], node_id: str) -> gr.components.Component:
    """The input for one config field: a dropdown, checkbox, number or text box as its schema asks."""
    value = schema_form.initial_value(spec, config)
    # interactive=True: inside gr.render, Gradio otherwise shows every field that starts with a value as read-only.
    common = {"label": spec.label + (" *" if spec.required else ""), "info": spec.description or None,
              "key": f"cfg-{node_id}-{spec.name}", "interactive": True}
    if spec.kind == "choice":
        return gr.Dropdown(choices=spec.choices, value=value, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind in ("integer", "number"):
        return gr.Number(value=value, precision=0 if spec.kind == "integer" else None, **common)
    return gr.Textbox(value=value, lines=4 if spec.kind == "textarea" else 1, **common)


def render(apply: Callable, form_inputs: list, form_outputs: list, doc: dict[str, Any], node_id: str | None,
           ops: dict[str, dict[str, Any]]) -> None:
    """The form of node ``node_id``: its label, its settings, and an Apply button calling
    ``apply(node_id, specs, *form_inputs, label, *values)`` into ``form_outputs``."""
    current = next((n for n in doc["nodes"] if n["id"] == node_id), None)
    if current is None:
        gr.Markdown(strings.PL_PICK_NODE, elem_classes="sage-muted")
        return
    op = ops.get(current["type"], {})
    gr.Markdown(f'**{esc(op.get("label", current["type"]))}** · `{current["id"]}`')
    label = gr.Textbox(current.get("label", ""), label=strings.PL_NODE_LABEL, key=f"label-{node_id}", interactive=True)
    specs = schema_form.fields(op.get("config_schema", {}))
    widgets = [config_widget(spec, current.get("config", {}), node_id) for spec in specs]
    if not specs:
        gr.Markdown(strings.PL_NO_SETTINGS, elem_classes="sage-muted")
    button = gr.Button(strings.PL_APPLY_CONFIG, variant="primary", size="sm", elem_id="pl-apply")
    button.click(functools.partial(apply, node_id, specs), [*form_inputs, label, *widgets], form_outputs)
