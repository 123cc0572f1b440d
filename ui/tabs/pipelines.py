"""Pipelines tab: a flow canvas (drag operators from the palette, wire ports, move nodes, pan and zoom), the
selected node's schema-generated config form and output, run with per-node results on the canvas, save/open,
templates, import/export, Python export, undo/redo.

The document being edited lives in the browser session (``gr.State``); edits are pure functions from
``ui.pipeline_editor`` so undo/redo is a list of earlier documents. The canvas (``ui.flow_canvas``) draws a view of
the document and sends its edits back through ``PipelinesController.canvas_edit``; a keyboard panel offers the
same edits without a mouse. Runs, saves and exports go through the API. ``create_pipelines_tab`` lays the tab out
and wires its events to a ``PipelinesController``, which holds the client.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ui import flow_canvas, schema_form, strings
from ui import pipeline_editor as edit
from ui.client import ApiError, StudioClient
from ui.flow_canvas import canvas_view
from ui.render import error_notice, notice
from ui.tabs import in_order, pipelines_form
from ui.tabs.pipelines_view import (
    RESULT_COLUMNS,
    describe_operator,
    input_ports,
    node_output,
    operator_choices,
    parse_input,
    result_rows,
    saved_choices,
    template_choices,
)

# What every edit refreshes (``PipelinesController.show``'s outputs, in order), and what the tab's load fills.
VIEW_OUTPUTS = ("pipeline", "history", "results", "issues", "canvas", "node", "node_output", "src", "tgt", "conns",
                "name", "status")
LOAD_OUTPUTS = ("operators", "palette", "operator", "template", "saved", "status")
# ``show``'s ``selected`` is a node id, None (the last node: what an opened pipeline shows), or NOTHING (after a
# deletion on the canvas, so a second Delete does not remove another node).
NOTHING = ""
# What a run refreshes: its notice and table, the results and problems, the canvas and the selected node's output.
RUN_OUTPUTS = ("run_status", "run_table", "results", "issues", "canvas", "node_output")
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
    def show(doc, hist, ops, selected=None, runs=None, message="", issues=None, fit=False):
        """Every part of the tab that shows the document, refreshed after a change: the canvas with the last run's
        results and the validation ``issues`` on it, the selected node, the keyboard panel's lists."""
        ids = [n["id"] for n in doc["nodes"]]
        selected = None if selected == NOTHING else selected if selected in ids else (ids[-1] if ids else None)
        labels = [(edit.connection_label(c), i) for i, c in enumerate(doc["connections"])]
        return (doc, hist, runs or {}, issues or [], canvas_view(doc, ops, selected, runs, issues, fit),
                gr.update(choices=ids, value=selected), node_output(selected, runs, issues),
                gr.update(choices=ids), gr.update(choices=ids), gr.update(choices=labels, value=None),
                doc.get("name", ""), message)

    def change(self, doc, hist, ops, new_doc, selected=None, message="", fit=False):
        """``show`` for ``new_doc``, with ``doc`` recorded so the change can be undone."""
        return self.show(new_doc, edit.record(hist, doc), ops, selected, None, message, fit=fit)

    @staticmethod
    def pick_node(doc, ops, node_id, runs, issues):
        """A node picked in the list: selected on the canvas, its output shown."""
        return canvas_view(doc, ops, node_id, runs, issues), node_output(node_id, runs, issues)

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
        out["palette"] = flow_canvas.palette_view(palette)
        out["operator"] = gr.update(choices=operator_choices(palette))
        try:
            out["template"] = gr.update(choices=template_choices(await self.client.templates()))
            out["saved"] = gr.update(choices=saved_choices(await self.client.list_pipelines()))
        except Exception as exc:  # noqa: BLE001
            out["status"] = error_notice(exc, strings.TAB_PIPELINES)
        return in_order(out, LOAD_OUTPUTS)

    # -- edits -------------------------------------------------------------------------------------------------

    def canvas_edit(self, doc, hist, ops, runs, issues, evt: gr.EventData):
        """An edit made on the canvas (``ui.flow_canvas.apply_edit``); a click selecting a node, and undo/redo
        from the keyboard, come this way too."""
        request = getattr(evt, "edit", None)
        op = request.get("op") if isinstance(request, dict) else None
        if op == "select":
            return self.show(doc, hist, ops, request.get("id"), runs, issues=issues)
        if op in ("undo", "redo"):
            return self.undo(doc, hist, ops) if op == "undo" else self.redo(doc, hist, ops)
        try:
            new_doc, selected = flow_canvas.apply_edit(doc, ops, request)
        except edit.EditError as exc:
            return self.show(doc, hist, ops, runs=runs, issues=issues, message=notice(str(exc), "warn"))
        if op == "move":  # where a node sits changes nothing the last run or check said about it
            return self.show(new_doc, edit.record(hist, doc), ops, selected, runs, issues=issues)
        if op in ("remove", "disconnect"):
            selected = NOTHING
        return self.change(doc, hist, ops, new_doc, selected, fit=op == "layout")

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
        return self.change(doc, hist, ops, edit.new_pipeline(), fit=True)

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
        pipelines_form.render(self.apply_config, form_inputs, form_outputs, doc, node_id, ops)

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
        return self.change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"),
                           fit=True)

    async def problems(self, doc, exc: Exception) -> list[dict[str, Any]]:
        """After the API refused ``doc`` as invalid (422): every issue, each naming its node or wire, for the canvas."""
        if not (isinstance(exc, ApiError) and exc.status == 422):
            return []
        try:
            return (await self.client.validate_pipeline(doc)).get("issues") or []
        except Exception:  # noqa: BLE001 - the refusal's own sentence is already shown
            return []

    async def save(self, doc, hist, ops, runs):
        try:
            stored = await self.client.save_pipeline(doc)
        except Exception as exc:  # noqa: BLE001
            issues = await self.problems(doc, exc)
            culprit = next((i["node"] for i in issues if i.get("node")), None)
            return *self.show(doc, hist, ops, culprit, message=error_notice(exc, strings.FEAT_SAVE),
                              issues=issues), gr.update()
        listing = await self.client.list_pipelines()
        # Saving changes nothing a run showed: its results stay on the canvas.
        saved = notice(strings.PL_SAVED.format(id=stored["id"]), "ok")
        return (*self.show(stored, hist, ops, runs=runs, message=saved),
                gr.update(choices=saved_choices(listing), value=stored["id"]))

    async def import_file(self, doc, hist, ops, file_path):
        try:
            loaded = await self.client.import_pipeline(Path(file_path).name, Path(file_path).read_bytes())
        except Exception as exc:  # noqa: BLE001
            return self.show(doc, hist, ops, message=error_notice(exc, strings.FEAT_IMPORT))
        return self.change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"),
                           fit=True)

    async def export_json(self, doc, hist, ops, runs):
        return await self._export(doc, hist, ops, runs, python=False)

    async def export_python(self, doc, hist, ops, runs):
        return await self._export(doc, hist, ops, runs, python=True)

    async def _export(self, doc, hist, ops, runs, python: bool):
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
        ready = notice(strings.PL_EXPORT_READY.format(file=path.name), "ok")
        return (*self.show(stored, hist, ops, runs=runs, message=ready),
                gr.update(value=str(path), visible=True), gr.update(value=text) if python else gr.update(),
                gr.Accordion(open=True) if python else gr.update())

    async def run(self, doc, hist, ops, selected, text):
        """Run the document; each node's status, time and output land on the canvas (``RUN_OUTPUTS``)."""
        if not doc["nodes"]:
            return in_order({"run_status": notice(strings.PL_EMPTY, "warn")}, RUN_OUTPUTS)
        try:
            outcome = await self.client.run_pipeline(doc, parse_input(text))
        except Exception as exc:  # noqa: BLE001
            issues = await self.problems(doc, exc)
            return (error_notice(exc, strings.FEAT_RUN), pd.DataFrame(columns=RESULT_COLUMNS), {}, issues,
                    canvas_view(doc, ops, selected, None, issues), node_output(selected, None, issues))
        runs = outcome.get("nodes") or {}
        message = (notice(strings.PL_RUN_OK.format(ms=outcome.get("duration_ms", 0)), "ok") if outcome["status"] == "ok"
                   else notice(strings.PL_RUN_FAILED.format(error=outcome.get("error")), "error"))
        return (message, result_rows(outcome), runs, [], canvas_view(doc, ops, selected, runs),
                node_output(selected, runs, []))


def create_pipelines_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, Any]:
    """Build the Pipelines tab inside the current Blocks context."""
    pl = PipelinesController(client)
    c = {"pipeline": gr.State(edit.new_pipeline()), "history": gr.State(edit.empty_history()),
         "operators": gr.State({}), "results": gr.State({}), "issues": gr.State([])}
    c |= _toolbar()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=190, elem_classes="sage-sidebar"):
            c |= _library()
        with gr.Column(scale=4, min_width=460):
            c |= _canvas()
        with gr.Column(scale=1, min_width=270, elem_classes="sage-sidebar"):
            c["node"] = gr.Dropdown(label=strings.PL_NODE, choices=[], elem_id="pl-node")
            c["remove"] = gr.Button(strings.PL_REMOVE_NODE, size="sm", variant="stop", elem_id="pl-remove")
            # Made here (the form's Apply refreshes it), drawn below the form.
            c["node_output"] = gr.HTML(elem_id="pl-node-output", render=False)
            with gr.Column(elem_id="pl-form"):
                form = functools.partial(pl.config_form, [c["pipeline"], c["history"], c["operators"]],
                                         [c[name] for name in VIEW_OUTPUTS])
                # One render at a time: canvas edits come in quick succession, and two renders of the same keyed
                # widgets at once collide (Gradio's DuplicateBlockError).
                gr.render(inputs=[c["pipeline"], c["node"], c["operators"]], concurrency_limit=1)(form)
            gr.Markdown(f"#### {strings.PL_NODE_OUTPUT}")
            c["node_output"].render()
    with gr.Accordion(strings.PL_PYTHON, open=False, elem_id="pl-python-panel") as c["python_panel"]:
        c["python_code"] = gr.Code(language="python", interactive=False, elem_id="pl-python-code")
    _wire(tab, pl, c)
    return {"pipeline": c["pipeline"], "canvas": c["canvas"], "status": c["status"]}


def _toolbar() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row(equal_height=True, elem_classes="sage-toolbar"):
        # No label row above it: the canvas needs the height (the box still names itself to screen readers).
        c["name"] = gr.Textbox(label=strings.PL_NAME, show_label=False, placeholder=strings.PL_NAME,
                               value=strings.PL_UNTITLED, scale=3, container=False, elem_id="pl-name")
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
    c["palette"] = flow_canvas.palette()
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
    """The middle column: the flow canvas, the same edits by keyboard, and a run with its results."""
    c: dict[str, Any] = {"canvas": flow_canvas.canvas(canvas_view(edit.new_pipeline(), {}))}
    with gr.Accordion(strings.PL_KEYBOARD, open=False, elem_id="pl-keyboard"):
        with gr.Row(equal_height=True):
            c["operator"] = gr.Dropdown(label=strings.PL_OPERATOR, choices=[], scale=3, elem_id="pl-operator")
            c["add"] = gr.Button(strings.PL_ADD, scale=1, elem_id="pl-add")
        c["op_help"] = gr.Markdown(elem_classes="sage-muted")
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
    marks = [c["results"], c["issues"]]
    # Quiet: the lists refresh each time the tab opens, and the canvas shows its own pending state while an edit
    # is answered (Gradio's progress veil would flash over it at every drag).
    tab.select(pl.load, None, [c[name] for name in LOAD_OUTPUTS], show_progress="hidden")
    c["canvas"].edit(pl.canvas_edit, [*base, *marks], view, show_progress="hidden")
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
    c["save"].click(pl.save, [*base, c["results"]], [*view, c["saved"]])
    c["import"].upload(pl.import_file, [*base, c["import"]], view)
    c["export"].click(pl.export_json, [*base, c["results"]], export)
    c["python"].click(pl.export_python, [*base, c["results"]], export)
    c["run"].click(pl.run, [*base, c["node"], c["run_input"]], [c[name] for name in RUN_OUTPUTS])
    c["node"].input(pl.pick_node, [c["pipeline"], c["operators"], c["node"], *marks], [c["canvas"], c["node_output"]])
