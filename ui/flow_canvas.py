"""The Pipelines tab's flow canvas: a Drawflow node editor inside a ``gr.HTML`` component, the view it draws, and
the edits it sends back.

Drawflow (MIT, vendored in ``ui/assets/vendor/drawflow``, never fetched from a CDN) draws nodes, ports and wires
and does the dragging, panning and zooming; ``ui/assets/flow_canvas.js`` binds it to Gradio. The document stays on
the Python side. The canvas's value is a *view* of it (``canvas_view``: nodes with their ports and the types each
input accepts, wires, the selection, run results, validation issues); each edit made on the canvas comes back as
an ``edit`` event and goes through ``ui.pipeline_editor`` (``apply_edit``) like every other edit, so the checks and
undo/redo are the same whichever way a pipeline is edited.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path
from typing import Any

import gradio as gr

from ui import pipeline_editor as edit
from ui import strings
from ui.render import esc, preview

ASSETS = Path(__file__).parent / "assets"
DRAWFLOW = ASSETS / "vendor" / "drawflow"
CSS_PATHS = [DRAWFLOW / "drawflow.min.css", ASSETS / "flow_canvas.css"]
# Every view gets a new revision, so the browser sees a change even when an edit was refused and the document is
# the one it had: the canvas then redraws it and drops what it drew ahead of the answer.
_REVISIONS = itertools.count(1)
# Far enough for any real canvas; keeps a hand-made event from storing absurd positions.
_COORD_LIMIT = 100_000
_PORT_KEYS = ("name", "type", "required", "multiple", "accepts")
# Sentences the canvas itself shows (it fills the {placeholders}), so they live with all the others.
_TEXT = {"incompatible": strings.PL_INCOMPATIBLE, "port_taken": strings.PL_PORT_TAKEN,
         "self_loop": strings.PL_SELF_LOOP}


@functools.cache
def head() -> str:
    """Drawflow and the canvas's script, inline: no URL to serve under a route prefix, nothing to fetch."""
    scripts = [(DRAWFLOW / "drawflow.min.js").read_text(), (ASSETS / "flow_canvas.js").read_text()]
    return "".join(f"<script>{script}</script>" for script in scripts)


def _frame() -> str:
    """The canvas's fixed HTML: toolbar, drawing area, empty-state text, hint and the line that says why a wire was
    refused. It never changes, so Gradio never redraws it over what Drawflow put inside."""
    tools = [("zoom-out", "−", strings.PL_ZOOM_OUT), ("zoom-in", "+", strings.PL_ZOOM_IN),
             ("fit", strings.PL_FIT, strings.PL_FIT), ("layout", strings.PL_AUTO_LAYOUT, strings.PL_AUTO_LAYOUT),
             ("delete", strings.PL_DELETE, strings.PL_DELETE)]
    buttons = "".join(f'<button type="button" class="sage-flow-tool" id="pl-{act}" data-act="{act}" '
                      f'title="{esc(title)}" aria-label="{esc(title)}">{esc(text)}</button>'
                      for act, text, title in tools)
    return (f'<div class="sage-flow" data-pending="0"><div class="sage-flow-tools">{buttons}</div>'
            '<div class="sage-flow-area" id="pipeline-graph"></div>'
            f'<div class="sage-flow-empty">{esc(strings.PL_CANVAS_EMPTY)}</div>'
            '<div class="sage-flow-toast" role="alert" hidden></div>'
            f'<div class="sage-flow-hint">{esc(strings.PL_CANVAS_HINT)}</div></div>')


def canvas(view: str) -> gr.HTML:
    """The canvas component; its ``edit`` event carries ``{"edit": {...}}`` (see ``apply_edit``)."""
    return gr.HTML(view, html_template=_frame(), head=head(), apply_default_css=False, elem_id="pl-canvas",
                   js_on_load="SageFlow.mountCanvas(element, props, watch, (edit) => trigger('edit', {edit}))")


def palette() -> gr.HTML:
    """The draggable operator palette; its value is ``palette_view``'s JSON. Its script comes with the canvas."""
    frame = (f'<div class="sage-palette"><input type="search" class="sage-palette-filter" '
             f'placeholder="{esc(strings.PL_PALETTE_FILTER)}" aria-label="{esc(strings.PL_PALETTE_FILTER)}">'
             f'<div class="sage-palette-list"></div><p class="sage-muted">{esc(strings.PL_PALETTE_HELP)}</p></div>')
    wait = ("(function mount() { window.SageFlow ? SageFlow.mountPalette(element, props, watch) "
            ": setTimeout(mount, 30); })()")
    return gr.HTML("[]", html_template=frame, apply_default_css=False, elem_id="pl-palette", js_on_load=wait)


def palette_view(operators: list[dict[str, Any]]) -> str:
    """What the palette lists: each operator's type, label, category and description, in palette order."""
    keys = ("type", "label", "category", "description")
    return json.dumps([{k: op.get(k, "") for k in keys} for op in operators])


def canvas_view(doc: dict[str, Any], ops: dict[str, dict[str, Any]], selected: str | None = None,
                runs: dict[str, Any] | None = None, issues: list[dict[str, Any]] | None = None,
                fit: bool = False) -> str:
    """The JSON the canvas draws: ``doc``'s nodes (with their operator's ports, as ``ops`` - the palette by type -
    describes them) and wires, which node is selected, each node's run result and the validation ``issues``;
    ``fit`` asks the canvas to zoom so the whole graph shows (after opening a pipeline or an auto-layout)."""
    nodes = []
    for node in doc["nodes"]:
        op = ops.get(node["type"], {})
        pos = node.get("position") or {}
        nodes.append({"id": node["id"], "type": node["type"], "label": node.get("label") or node["id"],
                      "x": pos.get("x", 0), "y": pos.get("y", 0), "category": op.get("category", ""),
                      "operator": op.get("label", node["type"]), "output": op.get("output", {}).get("type", "any"),
                      "inputs": [{k: p[k] for k in _PORT_KEYS if k in p} for p in op.get("inputs", [])]})
    wires = [{"source": c["source"], "target": c["target"], "port": edit.target_port(c, doc, ops)}
             for c in doc["connections"]]
    marks = {node_id: {"status": r.get("status", ""), "ms": round(r.get("duration_ms") or 0),
                       "preview": preview(r.get("error") or r.get("output"), 140)}
             for node_id, r in (runs or {}).items()}
    return json.dumps({"rev": next(_REVISIONS), "nodes": nodes, "wires": wires, "selected": selected,
                       "runs": marks, "issues": issue_marks(doc, ops, issues or []), "fit": fit, "text": _TEXT},
                      default=str)


def issue_marks(doc: dict[str, Any], ops: dict[str, dict[str, Any]],
                issues: list[dict[str, Any]]) -> dict[str, Any]:
    """``/api/pipelines/validate``'s issues by what they point at: node ids, wires (matched by the builder's
    connection label), and the rest (an empty pipeline, a cycle)."""
    wires = {}
    for c in doc["connections"]:
        target = f'{c["target"]}.{c["target_port"]}' if c.get("target_port") else c["target"]
        wires[f'{c["source"]}.{c.get("source_port") or "output"} → {target}'] = c
    out: dict[str, Any] = {"nodes": {}, "wires": [], "other": []}
    for issue in issues:
        wire = wires.get(issue.get("connection") or "")
        if wire:
            out["wires"].append({"source": wire["source"], "target": wire["target"],
                                 "port": edit.target_port(wire, doc, ops), "message": issue["message"]})
        if issue.get("node"):
            out["nodes"].setdefault(issue["node"], []).append(issue["message"])
        elif not wire:
            out["other"].append(issue["message"])
    return out


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise edit.EditError(strings.PL_CANVAS_BAD_EDIT)
    return value


def _point(request: dict[str, Any]) -> dict[str, float]:
    try:
        x, y = float(request["x"]), float(request["y"])
    except (KeyError, TypeError, ValueError):
        raise edit.EditError(strings.PL_CANVAS_BAD_EDIT) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise edit.EditError(strings.PL_CANVAS_BAD_EDIT)
    return {"x": max(-_COORD_LIMIT, min(_COORD_LIMIT, x)), "y": max(-_COORD_LIMIT, min(_COORD_LIMIT, y))}


def apply_edit(doc: dict[str, Any], ops: dict[str, dict[str, Any]],
               request: Any) -> tuple[dict[str, Any], str | None]:
    """An edit sent by the canvas, applied with ``ui.pipeline_editor``: the new document and the node to select.

    ``request`` is ``{"op": ...}`` with ``add`` (type, x, y: a palette drop), ``move`` (id, x, y), ``connect`` /
    ``disconnect`` (source, target, port), ``remove`` (id) or ``layout``. Anything else, or a field of the wrong
    kind, is an ``EditError``: the event comes from a browser, so it is checked like any input."""
    if not isinstance(request, dict):
        raise edit.EditError(strings.PL_CANVAS_BAD_EDIT)
    op = request.get("op")
    if op == "add":
        type_name = _text(request, "type")
        if type_name not in ops:
            raise edit.EditError(strings.PL_PICK_OPERATOR)
        return edit.add_node(doc, ops[type_name], _point(request))
    if op == "move":
        node_id, where = _text(request, "id"), _point(request)
        return edit.move_node(doc, node_id, where["x"], where["y"]), node_id
    if op in ("connect", "disconnect"):
        source, target, port = _text(request, "source"), _text(request, "target"), _text(request, "port")
        if op == "connect":
            return edit.connect(doc, source, target, port, ops), target
        return edit.disconnect_ports(doc, source, target, port, ops), None
    if op == "remove":
        return edit.remove_node(doc, _text(request, "id")), None
    if op == "layout":
        return edit.auto_layout(doc), None
    raise edit.EditError(strings.PL_CANVAS_BAD_EDIT)
