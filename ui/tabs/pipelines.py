"""Pipelines tab: operator palette, nodes and their schema-generated config forms, port connections, a live
picture of the graph, run with per-node outputs, save/open, templates, import/export, Python export, undo/redo.

The document being edited lives in the browser session (``gr.State``); edits are pure functions from
``ui.pipeline_editor`` so undo/redo is a list of earlier documents. Runs, saves and exports go through the API.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ui import pipeline_editor as edit
from ui import schema_form, strings
from ui.client import StudioClient
from ui.pipeline_graph import render_svg
from ui.render import error_notice, esc, notice

RESULT_COLUMNS = ["Node", "Type", "Status", "Time (ms)", "Output"]


def _preview(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + " …"


def result_rows(run: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for node_id, r in (run.get("nodes") or {}).items():
        out = r.get("error") or _preview(r.get("output"))
        if r.get("output_items") is not None:
            out = f"[{r['output_items']} items] {out}"
        rows.append([node_id, r.get("type", ""), r.get("status", ""), round(r.get("duration_ms", 0), 1), out])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def saved_choices(listing: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f'{p["name"]} ({p["id"]})', p["id"]) for p in listing]


def parse_input(text: str) -> Any:
    """The run input: a JSON object or array when the text is one, else the text itself."""
    stripped = (text or "").strip()
    if stripped[:1] in "{[":
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def create_pipelines_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, Any]:
    """Build the Pipelines tab inside the current Blocks context."""
    pipeline = gr.State(edit.new_pipeline())
    history = gr.State(edit.empty_history())
    operators = gr.State({})
    results = gr.State({})
    with gr.Row(equal_height=True, elem_classes="sage-toolbar"):
        name = gr.Textbox(label=strings.PL_NAME, value="Untitled pipeline", scale=3, elem_id="pl-name")
        undo_btn = gr.Button(strings.PL_UNDO, size="sm", scale=0, min_width=80, elem_id="pl-undo")
        redo_btn = gr.Button(strings.PL_REDO, size="sm", scale=0, min_width=80, elem_id="pl-redo")
        new_btn = gr.Button(strings.PL_NEW, size="sm", scale=0, min_width=70, elem_id="pl-new")
        save_btn = gr.Button(strings.PL_SAVE, size="sm", variant="primary", scale=0, min_width=70, elem_id="pl-save")
    status = gr.HTML(elem_id="pl-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240, elem_classes="sage-sidebar"):
            gr.Markdown(f"#### {strings.PL_PALETTE}")
            operator = gr.Dropdown(label="Operator", choices=[], elem_id="pl-operator")
            op_help = gr.Markdown(elem_classes="sage-muted")
            add_btn = gr.Button(strings.PL_ADD, variant="primary", elem_id="pl-add")
            gr.Markdown(f"#### {strings.PL_TEMPLATE}")
            template = gr.Dropdown(show_label=False, choices=[], elem_id="pl-template")
            template_btn = gr.Button(strings.PL_USE_TEMPLATE, size="sm", elem_id="pl-use-template")
            gr.Markdown(f"#### {strings.PL_SAVED_LIST}")
            saved = gr.Dropdown(show_label=False, choices=[], elem_id="pl-saved")
            open_btn = gr.Button(strings.PL_LOAD, size="sm", elem_id="pl-open")
            import_btn = gr.UploadButton(strings.PL_IMPORT, file_types=[".json"], size="sm", elem_id="pl-import")
            with gr.Row():
                export_btn = gr.Button(strings.PL_EXPORT, size="sm", elem_id="pl-export")
                python_btn = gr.Button(strings.PL_PYTHON, size="sm", elem_id="pl-python")
            download = gr.File(label="Download", visible=False, elem_id="pl-download")
        with gr.Column(scale=3):
            graph = gr.HTML(notice(strings.PL_EMPTY), elem_id="pl-graph")
            with gr.Row(equal_height=True):
                src = gr.Dropdown(label=strings.PL_FROM, choices=[], elem_id="pl-from")
                tgt = gr.Dropdown(label=strings.PL_TO, choices=[], elem_id="pl-to")
                port = gr.Dropdown(label=strings.PL_PORT, choices=[], elem_id="pl-port")
                connect_btn = gr.Button(strings.PL_CONNECT, scale=0, min_width=90, elem_id="pl-connect")
            with gr.Row(equal_height=True):
                conns = gr.Dropdown(label=strings.PL_CONNECTIONS, choices=[], type="index", scale=3,
                                    elem_id="pl-connections")
                disconnect_btn = gr.Button(strings.PL_DISCONNECT, size="sm", scale=1, elem_id="pl-disconnect")
            with gr.Row(equal_height=True):
                run_input = gr.Textbox(label=strings.PL_INPUT, scale=4, elem_id="pl-input")
                run_btn = gr.Button(strings.PL_RUN, variant="primary", scale=1, elem_id="pl-run")
            run_status = gr.HTML(elem_id="pl-run-status")
            run_table = gr.Dataframe(headers=RESULT_COLUMNS, value=pd.DataFrame(columns=RESULT_COLUMNS), wrap=True,
                                     interactive=False, label=strings.PL_RESULTS, elem_id="pl-results")
        with gr.Column(scale=2, min_width=280, elem_classes="sage-sidebar"):
            node = gr.Dropdown(label=strings.PL_NODE, choices=[], elem_id="pl-node")
            remove_btn = gr.Button(strings.PL_REMOVE_NODE, size="sm", variant="stop", elem_id="pl-remove")
            with gr.Column(elem_id="pl-form"):
                @gr.render(inputs=[pipeline, node, operators])
                def config_form(doc, node_id, ops):
                    """The selected node's config form, generated from its operator's JSON schema."""
                    current = next((n for n in doc["nodes"] if n["id"] == node_id), None)
                    if current is None:
                        gr.Markdown(strings.PL_PICK_NODE, elem_classes="sage-muted")
                        return
                    op = ops.get(current["type"], {})
                    gr.Markdown(f'**{esc(op.get("label", current["type"]))}** · `{current["id"]}`')
                    label = gr.Textbox(current.get("label", ""), label="Label", key=f"label-{node_id}")
                    specs = schema_form.fields(op.get("config_schema", {}))
                    widgets = []
                    for spec in specs:
                        value = schema_form.initial_value(spec, current.get("config", {}))
                        common = dict(label=spec.label + (" *" if spec.required else ""), info=spec.description or None,
                                      key=f"cfg-{node_id}-{spec.name}")
                        if spec.kind == "choice":
                            widgets.append(gr.Dropdown(choices=spec.choices, value=value, **common))
                        elif spec.kind == "checkbox":
                            widgets.append(gr.Checkbox(value=bool(value), **common))
                        elif spec.kind in ("integer", "number"):
                            precision = 0 if spec.kind == "integer" else None
                            widgets.append(gr.Number(value=value, precision=precision, **common))
                        else:
                            widgets.append(gr.Textbox(value=value, lines=4 if spec.kind == "textarea" else 1, **common))
                    if not specs:
                        gr.Markdown(strings.PL_NO_SETTINGS, elem_classes="sage-muted")
                    apply = gr.Button(strings.PL_APPLY_CONFIG, variant="primary", size="sm", elem_id="pl-apply")

                    def apply_config(doc, hist, ops, new_label, *values):
                        config, problems = schema_form.to_config(specs, list(values))
                        if problems:
                            return view(doc, hist, ops, node_id, message=notice(" ".join(problems), "warn"))
                        new_doc = edit.set_config(doc, node_id, config, new_label)
                        done = notice(strings.PL_CONFIG_APPLIED.format(node=node_id), "ok")
                        return change(doc, hist, ops, new_doc, node_id, done)

                    apply.click(apply_config, [pipeline, history, operators, label, *widgets], view_outputs)
    with gr.Accordion(strings.PL_PYTHON, open=False, elem_id="pl-python-panel") as python_panel:
        python_code = gr.Code(language="python", interactive=False, elem_id="pl-python-code")

    view_outputs = [pipeline, history, results, graph, node, src, tgt, conns, name, status]

    def view(doc, hist, ops, selected=None, runs=None, message=""):
        """Every part of the tab that shows the document, refreshed after a change."""
        ids = [n["id"] for n in doc["nodes"]]
        selected = selected if selected in ids else (ids[-1] if ids else None)
        picture = render_svg(doc, ops, selected, runs) or notice(strings.PL_EMPTY)
        labels = [(edit.connection_label(c), i) for i, c in enumerate(doc["connections"])]
        return (doc, hist, runs or {}, picture, gr.update(choices=ids, value=selected),
                gr.update(choices=ids), gr.update(choices=ids), gr.update(choices=labels, value=None),
                doc.get("name", ""), message)

    def change(doc, hist, ops, new_doc, selected=None, message=""):
        return view(new_doc, edit.record(hist, doc), ops, selected, None, message)

    async def load():
        out = {}
        try:
            palette = await client.operators()
        except Exception as exc:  # noqa: BLE001
            out[status] = error_notice(exc, strings.TAB_PIPELINES)
            return out
        out[operators] = {op["type"]: op for op in palette}
        out[operator] = gr.update(choices=[(f'{op["category"]} · {op["label"]}', op["type"]) for op in palette])
        try:
            out[template] = gr.update(choices=[(t.get("title") or t["name"], t["name"])
                                               for t in await client.templates()])
            out[saved] = gr.update(choices=saved_choices(await client.list_pipelines()))
        except Exception as exc:  # noqa: BLE001
            out[status] = error_notice(exc, strings.TAB_PIPELINES)
        return out

    def describe(type_name, ops):
        op = ops.get(type_name or "")
        if not op:
            return ""
        ins = ", ".join(f'{p["name"]} ({p["type"]})' for p in op.get("inputs", [])) or "none"
        return f'{op["description"]}\n\n*Inputs:* {ins} · *Output:* {op["output"]["type"]}'

    def add(doc, hist, ops, type_name):
        if not type_name or type_name not in ops:
            return view(doc, hist, ops, message=notice(strings.PL_PICK_OPERATOR, "warn"))
        new_doc, node_id = edit.add_node(doc, ops[type_name])
        return change(doc, hist, ops, new_doc, node_id)

    def guarded(fn):
        """Run an edit; an ``EditError`` becomes a warning and leaves the document as it was."""
        def handler(doc, hist, ops, *args):
            try:
                return fn(doc, hist, ops, *args)
            except edit.EditError as exc:
                return view(doc, hist, ops, message=notice(str(exc), "warn"))
        return handler

    def ports_of(target, doc, ops):
        node_type = next((n["type"] for n in doc["nodes"] if n["id"] == target), None)
        names = [p["name"] for p in ops.get(node_type, {}).get("inputs", [])]
        return gr.update(choices=names, value=names[0] if len(names) == 1 else None)

    def do_undo(doc, hist, ops):
        new_doc, hist = edit.undo(hist, doc)
        return view(new_doc, hist, ops)

    def do_redo(doc, hist, ops):
        new_doc, hist = edit.redo(hist, doc)
        return view(new_doc, hist, ops)

    def rename(doc, hist, ops, new_name):
        if not new_name.strip() or new_name == doc.get("name"):
            return view(doc, hist, ops)
        return change(doc, hist, ops, {**doc, "name": new_name.strip()})

    async def open_saved(doc, hist, ops, pipeline_id, fetch):
        if not pipeline_id:
            return view(doc, hist, ops, message=notice(strings.PL_PICK_ITEM, "warn"))
        try:
            loaded = await (client.create_from_template(pipeline_id) if fetch == "template"
                            else client.get_pipeline(pipeline_id))
        except Exception as exc:  # noqa: BLE001
            return view(doc, hist, ops, message=error_notice(exc, strings.FEAT_OPEN))
        return change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"))

    async def save(doc, hist, ops):
        try:
            stored = await client.save_pipeline(doc)
        except Exception as exc:  # noqa: BLE001
            return *view(doc, hist, ops, message=error_notice(exc, strings.FEAT_SAVE)), gr.update()
        listing = await client.list_pipelines()
        return (*view(stored, hist, ops, message=notice(strings.PL_SAVED.format(id=stored["id"]), "ok")),
                gr.update(choices=saved_choices(listing), value=stored["id"]))

    async def do_import(doc, hist, ops, file_path):
        try:
            loaded = await client.import_pipeline(Path(file_path).name, Path(file_path).read_bytes())
        except Exception as exc:  # noqa: BLE001
            return view(doc, hist, ops, message=error_notice(exc, strings.FEAT_IMPORT))
        return change(doc, hist, ops, loaded, None, notice(strings.PL_LOADED.format(name=loaded["name"]), "ok"))

    async def export(doc, hist, ops, kind):
        """Save (the API exports saved pipelines), then offer the file for download."""
        try:
            stored = await client.save_pipeline(doc)
            fetch = client.python_export if kind == "python" else client.export_pipeline
            text = await fetch(stored["id"])
        except Exception as exc:  # noqa: BLE001
            return (*view(doc, hist, ops, message=error_notice(exc, strings.FEAT_EXPORT)), gr.update(), gr.update(),
                    gr.update())
        suffix = ".py" if kind == "python" else ".json"
        folder = Path(tempfile.mkdtemp(prefix="sage-export-"))
        path = folder / f'{stored["id"]}{suffix}'
        path.write_text(text)
        code = gr.update(value=text) if kind == "python" else gr.update()
        return (*view(stored, hist, ops, message=notice(f"{path.name} is ready to download.", "ok")),
                gr.update(value=str(path), visible=True), code,
                gr.Accordion(open=True) if kind == "python" else gr.update())

    async def run(doc, hist, ops, text):
        if not doc["nodes"]:
            return notice(strings.PL_EMPTY, "warn"), gr.update(), gr.update(), gr.update()
        try:
            outcome = await client.run_pipeline(doc, parse_input(text))
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_RUN), pd.DataFrame(columns=RESULT_COLUMNS), {}, gr.update()
        runs = outcome.get("nodes") or {}
        message = (notice(strings.PL_RUN_OK.format(ms=outcome.get("duration_ms", 0)), "ok") if outcome["status"] == "ok"
                   else notice(strings.PL_RUN_FAILED.format(error=outcome.get("error")), "error"))
        selected = doc["nodes"][-1]["id"]
        return message, result_rows(outcome), runs, render_svg(doc, ops, selected, runs)

    base = [pipeline, history, operators]
    tab.select(load, None, [operators, operator, template, saved, status])
    operator.change(describe, [operator, operators], [op_help])
    add_btn.click(add, [*base, operator], view_outputs)
    remove_btn.click(guarded(lambda d, h, o, n: change(d, h, o, edit.remove_node(d, n or ""))), [*base, node],
                     view_outputs)
    tgt.change(ports_of, [tgt, pipeline, operators], [port])
    connect_btn.click(guarded(lambda d, h, o, s, t, p: change(d, h, o, edit.connect(d, s or "", t or "", p, o), t)),
                      [*base, src, tgt, port], view_outputs)
    disconnect_btn.click(guarded(lambda d, h, o, i: change(d, h, o, edit.disconnect(d, -1 if i is None else i))),
                         [*base, conns], view_outputs)
    undo_btn.click(guarded(do_undo), base, view_outputs)
    redo_btn.click(guarded(do_redo), base, view_outputs)
    new_btn.click(lambda d, h, o: change(d, h, o, edit.new_pipeline()), base, view_outputs)
    name.blur(rename, [*base, name], view_outputs)
    template_btn.click(partial(open_saved, fetch="template"), [*base, template], view_outputs)
    open_btn.click(partial(open_saved, fetch="saved"), [*base, saved], view_outputs)
    save_btn.click(save, base, [*view_outputs, saved])
    import_btn.upload(do_import, [*base, import_btn], view_outputs)
    export_btn.click(partial(export, kind="json"), base, [*view_outputs, download, python_code, python_panel])
    python_btn.click(partial(export, kind="python"), base, [*view_outputs, download, python_code, python_panel])
    run_btn.click(run, [*base, run_input], [run_status, run_table, results, graph])
    node.input(lambda d, o, n, r: render_svg(d, o, n, r) or notice(strings.PL_EMPTY),
               [pipeline, operators, node, results], [graph])
    return {"pipeline": pipeline, "graph": graph, "status": status}
