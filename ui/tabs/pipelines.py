"""Pipelines tab: operator palette, nodes and their schema-generated config forms, port connections, a live
picture of the graph, run with per-node outputs, save/open, templates, import/export, Python export, undo/redo.

The document being edited lives in the browser session (``gr.State``); edits are pure functions from
``ui.pipeline_editor`` so undo/redo is a list of earlier documents. Runs, saves and exports go through the API.
``create_pipelines_tab`` lays the tab out and wires its events to a ``PipelinesController``, which holds the client.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ui import pipeline_editor as edit
from ui import schema_form, strings
from ui.client import StudioClient
from ui.pipeline_graph import render_svg
from ui.render import error_notice, esc, notice
from ui.tabs import in_order
from ui.tabs.pipelines_view import (
    RESULT_COLUMNS,
    describe_operator,
    input_ports,
    operator_choices,
    parse_input,
    result_rows,
    saved_choices,
    template_choices,
)

# What every edit refreshes (``PipelinesController.show``'s outputs, in order), and what the tab's load fills.
VIEW_OUTPUTS = ("pipeline", "history", "results", "graph", "node", "src", "tgt", "conns", "name", "status")
LOAD_OUTPUTS = ("operators", "operator", "template", "saved", "status")
# An export also offers the file, shows the Python script and opens its panel.
EXPORT_OUTPUTS = (*VIEW_OUTPUTS, "download", "python_code", "python_panel")


def guarded(edit_handler: Callable) -> Callable:
    """An edit handler whose ``EditError`` becomes a warning and leaves the document as it was."""
    @functools.wraps(edit_handler)
    def handler(self: PipelinesController, doc, hist, ops, *args):
        try:
            return edit_handler(self, doc, hist, ops, *args)
        except edit.EditError as exc:
            return self.show(doc, hist, ops, message=notice(str(exc), "warn"))
    return handler


class PipelinesController:
    """The Pipelines tab's event handlers. Edit handlers take the document, its history and the palette first
    (``pipeline``, ``history``, ``operators``) and return ``show``'s updates."""

    def __init__(self, client: StudioClient):
        self.client = client

    # -- showing the document ----------------------------------------------------------------------------------

    @staticmethod
    def show(doc, hist, ops, selected=None, runs=None, message=""):
        """Every part of the tab that shows the document, refreshed after a change."""
        ids = [n["id"] for n in doc["nodes"]]
        selected = selected if selected in ids else (ids[-1] if ids else None)
        picture = render_svg(doc, ops, selected, runs) or notice(strings.PL_EMPTY)
        labels = [(edit.connection_label(c), i) for i, c in enumerate(doc["connections"])]
        return (doc, hist, runs or {}, picture, gr.update(choices=ids, value=selected),
                gr.update(choices=ids), gr.update(choices=ids), gr.update(choices=labels, value=None),
                doc.get("name", ""), message)

    def change(self, doc, hist, ops, new_doc, selected=None, message=""):
        """``show`` for ``new_doc``, with ``doc`` recorded so the change can be undone."""
        return self.show(new_doc, edit.record(hist, doc), ops, selected, None, message)

    @staticmethod
    def picture(doc, ops, node_id, runs) -> str:
        return render_svg(doc, ops, node_id, runs) or notice(strings.PL_EMPTY)

    @staticmethod
    def describe(type_name, ops) -> str:
        return describe_operator(ops.get(type_name or ""))

    @staticmethod
    def ports_of(target, doc, ops):
        names = input_ports(doc, ops, target)
        return gr.update(choices=names, value=names[0] if len(names) == 1 else None)

    async def load(self):
        """When the tab opens: the operator palette, the templates and the saved pipelines."""
        out = {}
        try:
            palette = await self.client.operators()
        except Exception as exc:  # noqa: BLE001
            out["status"] = error_notice(exc, strings.TAB_PIPELINES)
            return in_order(out, LOAD_OUTPUTS)
        out["operators"] = {op["type"]: op for op in palette}
        out["operator"] = gr.update(choices=operator_choices(palette))
        try:
            out["template"] = gr.update(choices=template_choices(await self.client.templates()))
            out["saved"] = gr.update(choices=saved_choices(await self.client.list_pipelines()))
        except Exception as exc:  # noqa: BLE001
            out["status"] = error_notice(exc, strings.TAB_PIPELINES)
        return in_order(out, LOAD_OUTPUTS)

    # -- edits -------------------------------------------------------------------------------------------------

    def add(self, doc, hist, ops, type_name):
        if not type_name or type_name not in ops:
            return self.show(doc, hist, ops, message=notice(strings.PL_PICK_OPERATOR, "warn"))
        new_doc, node_id = edit.add_node(doc, ops[type_name])
        return self.change(doc, hist, ops, new_doc, node_id)

    @guarded
    def remove(self, doc, hist, ops, node_id):
        return self.change(doc, hist, ops, edit.remove_node(doc, node_id or ""))

    @guarded
    def connect(self, doc, hist, ops, source, target, port):
        return self.change(doc, hist, ops, edit.connect(doc, source or "", target or "", port, ops), target)

    @guarded
    def disconnect(self, doc, hist, ops, index):
        return self.change(doc, hist, ops, edit.disconnect(doc, -1 if index is None else index))

    @guarded
    def undo(self, doc, hist, ops):
        new_doc, hist = edit.undo(hist, doc)
        return self.show(new_doc, hist, ops)

    @guarded
    def redo(self, doc, hist, ops):
        new_doc, hist = edit.redo(hist, doc)
        return self.show(new_doc, hist, ops)

    def new(self, doc, hist, ops):
        return self.change(doc, hist, ops, edit.new_pipeline())

    def rename(self, doc, hist, ops, new_name):
        if not new_name.strip() or new_name == doc.get("name"):
            return self.show(doc, hist, ops)
        return self.change(doc, hist, ops, {**doc, "name": new_name.strip()})

    def apply_config(self, node_id, specs, doc, hist, ops, new_label, *values):
        """The config form's values (``specs`` order) become the node's config and label, once they check out."""
        config, problems = schema_form.to_config(specs, list(values))
        if problems:
            return self.show(doc, hist, ops, node_id, message=notice(" ".join(problems), "warn"))
        new_doc = edit.set_config(doc, node_id, config, new_label)
        done = notice(strings.PL_CONFIG_APPLIED.format(node=node_id), "ok")
        return self.change(doc, hist, ops, new_doc, node_id, done)

    def config_form(self, form_inputs: list, form_outputs: list, doc, node_id, ops) -> None:
        """The selected node's config form, generated from its operator's JSON schema (run by ``gr.render``)."""
        current = next((n for n in doc["nodes"] if n["id"] == node_id), None)
        if current is None:
            gr.Markdown(strings.PL_PICK_NODE, elem_classes="sage-muted")
            return
        op = ops.get(current["type"], {})
        gr.Markdown(f'**{esc(op.get("label", current["type"]))}** · `{current["id"]}`')
        label = gr.Textbox(current.get("label", ""), label=strings.PL_NODE_LABEL, key=f"label-{node_id}")
        specs = schema_form.fields(op.get("config_schema", {}))
        widgets = [_config_widget(spec, current.get("config", {}), node_id) for spec in specs]
        if not specs:
            gr.Markdown(strings.PL_NO_SETTINGS, elem_classes="sage-muted")
        apply = gr.Button(strings.PL_APPLY_CONFIG, variant="primary", size="sm", elem_id="pl-apply")
        apply.click(functools.partial(self.apply_config, node_id, specs), [*form_inputs, label, *widgets],
                    form_outputs)

    # -- the API: open, save, import, export, run --------------------------------------------------------------

    async def open_template(self, doc, hist, ops, name):
        return await self._open(doc, hist, ops, name, self.client.create_from_template)

    async def open_saved(self, doc, hist, ops, pipeline_id):
        return await self._open(doc, hist, ops, pipeline_id, self.client.get_pipeline)

    async def _open(self, doc, hist, ops, item, fetch):
        if not item:
            return self.show(doc, hist, ops, message=notice(strings.PL_PICK_ITEM, "warn"))
        try:
            loaded = await fetch(item)
        except Exception as exc:  # noqa: BLE001
            return self.show(doc, hist, ops, message=error_notice(exc, strings.FEAT_OPEN))
        return self.change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"))

    async def save(self, doc, hist, ops):
        try:
            stored = await self.client.save_pipeline(doc)
        except Exception as exc:  # noqa: BLE001
            return *self.show(doc, hist, ops, message=error_notice(exc, strings.FEAT_SAVE)), gr.update()
        listing = await self.client.list_pipelines()
        return (*self.show(stored, hist, ops, message=notice(strings.PL_SAVED.format(id=stored["id"]), "ok")),
                gr.update(choices=saved_choices(listing), value=stored["id"]))

    async def import_file(self, doc, hist, ops, file_path):
        try:
            loaded = await self.client.import_pipeline(Path(file_path).name, Path(file_path).read_bytes())
        except Exception as exc:  # noqa: BLE001
            return self.show(doc, hist, ops, message=error_notice(exc, strings.FEAT_IMPORT))
        return self.change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"))

    async def export_json(self, doc, hist, ops):
        return await self._export(doc, hist, ops, python=False)

    async def export_python(self, doc, hist, ops):
        return await self._export(doc, hist, ops, python=True)

    async def _export(self, doc, hist, ops, python: bool):
        """Save (the API exports saved pipelines), then offer the file for download."""
        try:
            stored = await self.client.save_pipeline(doc)
            fetch = self.client.python_export if python else self.client.export_pipeline
            text = await fetch(stored["id"])
        except Exception as exc:  # noqa: BLE001
            return (*self.show(doc, hist, ops, message=error_notice(exc, strings.FEAT_EXPORT)), gr.update(),
                    gr.update(), gr.update())
        folder = Path(tempfile.mkdtemp(prefix="sage-export-"))
        path = folder / f'{stored["id"]}{".py" if python else ".json"}'
        path.write_text(text)
        return (*self.show(stored, hist, ops, message=notice(strings.PL_EXPORT_READY.format(file=path.name), "ok")),
                gr.update(value=str(path), visible=True), gr.update(value=text) if python else gr.update(),
                gr.Accordion(open=True) if python else gr.update())

    async def run(self, doc, hist, ops, text):
        if not doc["nodes"]:
            return notice(strings.PL_EMPTY, "warn"), gr.update(), gr.update(), gr.update()
        try:
            outcome = await self.client.run_pipeline(doc, parse_input(text))
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_RUN), pd.DataFrame(columns=RESULT_COLUMNS), {}, gr.update()
        runs = outcome.get("nodes") or {}
        message = (notice(strings.PL_RUN_OK.format(ms=outcome.get("duration_ms", 0)), "ok") if outcome["status"] == "ok"
                   else notice(strings.PL_RUN_FAILED.format(error=outcome.get("error")), "error"))
        selected = doc["nodes"][-1]["id"]
        return message, result_rows(outcome), runs, render_svg(doc, ops, selected, runs)


def _config_widget(spec: schema_form.FieldSpec, config: dict[str, Any], node_id: str) -> gr.components.Component:
    """The input for one config field: a dropdown, checkbox, number or text box as its schema asks."""
    value = schema_form.initial_value(spec, config)
    common = {"label": spec.label + (" *" if spec.required else ""), "info": spec.description or None,
              "key": f"cfg-{node_id}-{spec.name}"}
    if spec.kind == "choice":
        return gr.Dropdown(choices=spec.choices, value=value, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind in ("integer", "number"):
        return gr.Number(value=value, precision=0 if spec.kind == "integer" else None, **common)
    return gr.Textbox(value=value, lines=4 if spec.kind == "textarea" else 1, **common)


def create_pipelines_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, Any]:
    """Build the Pipelines tab inside the current Blocks context."""
    pl = PipelinesController(client)
    c = {"pipeline": gr.State(edit.new_pipeline()), "history": gr.State(edit.empty_history()),
         "operators": gr.State({}), "results": gr.State({})}
    c |= _toolbar()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240, elem_classes="sage-sidebar"):
            c |= _library()
        with gr.Column(scale=3):
            c |= _canvas()
        with gr.Column(scale=2, min_width=280, elem_classes="sage-sidebar"):
            c["node"] = gr.Dropdown(label=strings.PL_NODE, choices=[], elem_id="pl-node")
            c["remove"] = gr.Button(strings.PL_REMOVE_NODE, size="sm", variant="stop", elem_id="pl-remove")
            with gr.Column(elem_id="pl-form"):
                form = functools.partial(pl.config_form, [c["pipeline"], c["history"], c["operators"]],
                                         [c[name] for name in VIEW_OUTPUTS])
                gr.render(inputs=[c["pipeline"], c["node"], c["operators"]])(form)
    with gr.Accordion(strings.PL_PYTHON, open=False, elem_id="pl-python-panel") as c["python_panel"]:
        c["python_code"] = gr.Code(language="python", interactive=False, elem_id="pl-python-code")
    _wire(tab, pl, c)
    return {"pipeline": c["pipeline"], "graph": c["graph"], "status": c["status"]}


def _toolbar() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row(equal_height=True, elem_classes="sage-toolbar"):
        c["name"] = gr.Textbox(label=strings.PL_NAME, value=strings.PL_UNTITLED, scale=3, elem_id="pl-name")
        c["undo"] = gr.Button(strings.PL_UNDO, size="sm", scale=0, min_width=80, elem_id="pl-undo")
        c["redo"] = gr.Button(strings.PL_REDO, size="sm", scale=0, min_width=80, elem_id="pl-redo")
        c["new"] = gr.Button(strings.PL_NEW, size="sm", scale=0, min_width=70, elem_id="pl-new")
        c["save"] = gr.Button(strings.PL_SAVE, size="sm", variant="primary", scale=0, min_width=70, elem_id="pl-save")
    c["status"] = gr.HTML(elem_id="pl-status")
    return c


def _library() -> dict[str, Any]:
    """The left column: the operator palette, templates, saved pipelines, import and export."""
    c: dict[str, Any] = {}
    gr.Markdown(f"#### {strings.PL_PALETTE}")
    c["operator"] = gr.Dropdown(label=strings.PL_OPERATOR, choices=[], elem_id="pl-operator")
    c["op_help"] = gr.Markdown(elem_classes="sage-muted")
    c["add"] = gr.Button(strings.PL_ADD, variant="primary", elem_id="pl-add")
    gr.Markdown(f"#### {strings.PL_TEMPLATE}")
    c["template"] = gr.Dropdown(show_label=False, choices=[], elem_id="pl-template")
    c["use_template"] = gr.Button(strings.PL_USE_TEMPLATE, size="sm", elem_id="pl-use-template")
    gr.Markdown(f"#### {strings.PL_SAVED_LIST}")
    c["saved"] = gr.Dropdown(show_label=False, choices=[], elem_id="pl-saved")
    c["open"] = gr.Button(strings.PL_LOAD, size="sm", elem_id="pl-open")
    c["import"] = gr.UploadButton(strings.PL_IMPORT, file_types=[".json"], size="sm", elem_id="pl-import")
    with gr.Row():
        c["export"] = gr.Button(strings.PL_EXPORT, size="sm", elem_id="pl-export")
        c["python"] = gr.Button(strings.PL_PYTHON, size="sm", elem_id="pl-python")
    c["download"] = gr.File(label=strings.PL_DOWNLOAD, visible=False, elem_id="pl-download")
    return c


def _canvas() -> dict[str, Any]:
    """The middle column: the graph's picture, connections, and a run with its results."""
    c: dict[str, Any] = {"graph": gr.HTML(notice(strings.PL_EMPTY), elem_id="pl-graph")}
    with gr.Row(equal_height=True):
        c["src"] = gr.Dropdown(label=strings.PL_FROM, choices=[], elem_id="pl-from")
        c["tgt"] = gr.Dropdown(label=strings.PL_TO, choices=[], elem_id="pl-to")
        c["port"] = gr.Dropdown(label=strings.PL_PORT, choices=[], elem_id="pl-port")
        c["connect"] = gr.Button(strings.PL_CONNECT, scale=0, min_width=90, elem_id="pl-connect")
    with gr.Row(equal_height=True):
        c["conns"] = gr.Dropdown(label=strings.PL_CONNECTIONS, choices=[], type="index", scale=3,
                                 elem_id="pl-connections")
        c["disconnect"] = gr.Button(strings.PL_DISCONNECT, size="sm", scale=1, elem_id="pl-disconnect")
    with gr.Row(equal_height=True):
        c["run_input"] = gr.Textbox(label=strings.PL_INPUT, scale=4, elem_id="pl-input")
        c["run"] = gr.Button(strings.PL_RUN, variant="primary", scale=1, elem_id="pl-run")
    c["run_status"] = gr.HTML(elem_id="pl-run-status")
    c["run_table"] = gr.Dataframe(headers=RESULT_COLUMNS, value=pd.DataFrame(columns=RESULT_COLUMNS), wrap=True,
                                  interactive=False, label=strings.PL_RESULTS, elem_id="pl-results")
    return c


def _wire(tab: gr.Tab, pl: PipelinesController, c: dict[str, Any]) -> None:
    base = [c["pipeline"], c["history"], c["operators"]]
    view = [c[name] for name in VIEW_OUTPUTS]
    export = [c[name] for name in EXPORT_OUTPUTS]
    tab.select(pl.load, None, [c[name] for name in LOAD_OUTPUTS])
    c["operator"].change(pl.describe, [c["operator"], c["operators"]], [c["op_help"]])
    c["add"].click(pl.add, [*base, c["operator"]], view)
    c["remove"].click(pl.remove, [*base, c["node"]], view)
    c["tgt"].change(pl.ports_of, [c["tgt"], c["pipeline"], c["operators"]], [c["port"]])
    c["connect"].click(pl.connect, [*base, c["src"], c["tgt"], c["port"]], view)
    c["disconnect"].click(pl.disconnect, [*base, c["conns"]], view)
    c["undo"].click(pl.undo, base, view)
    c["redo"].click(pl.redo, base, view)
    c["new"].click(pl.new, base, view)
    c["name"].blur(pl.rename, [*base, c["name"]], view)
    c["use_template"].click(pl.open_template, [*base, c["template"]], view)
    c["open"].click(pl.open_saved, [*base, c["saved"]], view)
    c["save"].click(pl.save, base, [*view, c["saved"]])
    c["import"].upload(pl.import_file, [*base, c["import"]], view)
    c["export"].click(pl.export_json, base, export)
    c["python"].click(pl.export_python, base, export)
    c["run"].click(pl.run, [*base, c["run_input"]], [c["run_status"], c["run_table"], c["results"], c["graph"]])
    c["node"].input(pl.picture, [c["pipeline"], c["operators"], c["node"], c["results"]], [c["graph"]])
