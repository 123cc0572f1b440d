"""Editing a pipeline document in the browser session: add/remove nodes, connect ports, set configs, undo/redo.

Pure functions on the ``VisualPipeline`` JSON (plain dicts, as the API sends and takes it); every edit returns a
new document, so the undo history is simply the list of earlier documents. Checks that need the whole graph
(cycles, required config, port types) stay the server's job: ``/api/pipelines/validate`` names the culprit.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ui import strings
from ui.pipeline_graph import layout

HISTORY_LIMIT = 50


class EditError(ValueError):
    """An edit that cannot be made, with the reason for the user."""


def new_pipeline(name: str = strings.PL_UNTITLED) -> dict[str, Any]:
    return {"id": "", "name": name, "description": "", "nodes": [], "connections": []}


def _node(pipeline: dict[str, Any], node_id: str) -> dict[str, Any]:
    for node in pipeline["nodes"]:
        if node["id"] == node_id:
            return node
    raise EditError(strings.PL_NO_NODE.format(node=node_id))


def _fresh_id(pipeline: dict[str, Any], type_name: str) -> str:
    taken = {n["id"] for n in pipeline["nodes"]}
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", type_name)[:56]
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def _place(pipeline: dict[str, Any]) -> dict[str, Any]:
    # Positions are what the saved file carries for other editors: keep them in step with the drawing.
    for node_id, (x, y) in layout(pipeline).items():
        _node(pipeline, node_id)["position"] = {"x": x, "y": y}
    return pipeline


def add_node(pipeline: dict[str, Any], operator: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A new node of ``operator`` (a palette entry) with a free id; returns the new document and the id."""
    out = copy.deepcopy(pipeline)
    node_id = _fresh_id(out, operator["type"])
    y = max((n.get("position", {}).get("y", 0) for n in out["nodes"]), default=-100) + 100
    out["nodes"].append({"id": node_id, "type": operator["type"], "label": operator.get("label", node_id),
                         "position": {"x": 0, "y": y}, "config": {}})
    return _place(out), node_id


def remove_node(pipeline: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Drop a node and every connection touching it."""
    out = copy.deepcopy(pipeline)
    _node(out, node_id)
    out["nodes"] = [n for n in out["nodes"] if n["id"] != node_id]
    out["connections"] = [c for c in out["connections"] if node_id not in (c["source"], c["target"])]
    return _place(out)


def connect(pipeline: dict[str, Any], source: str, target: str, port: str | None,
            operators: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Connect ``source``'s output to ``target``'s input ``port`` (may be None when the target has one input)."""
    out = copy.deepcopy(pipeline)
    src, tgt = _node(out, source), _node(out, target)
    if source == target:
        raise EditError(strings.PL_SELF_LOOP)
    inputs = operators.get(tgt["type"], {}).get("inputs", [])
    names = [p["name"] for p in inputs]
    if not names:
        raise EditError(strings.PL_SOURCE_HAS_NO_INPUT.format(target=target, type=tgt["type"]))
    if port is None:
        if len(names) > 1:
            raise EditError(strings.PL_PICK_PORT.format(target=target, ports=", ".join(names)))
        port = names[0]
    if port not in names:
        raise EditError(strings.PL_NO_SUCH_PORT.format(target=target, port=port, ports=", ".join(names)))
    spec = next(p for p in inputs if p["name"] == port)
    for c in out["connections"]:
        if c["source"] == source and c["target"] == target and (c.get("target_port") or names[0]) == port:
            raise EditError(strings.PL_ALREADY_CONNECTED.format(source=source, target=target, port=port))
        if not spec.get("multiple") and c["target"] == target and (c.get("target_port") or names[0]) == port:
            raise EditError(strings.PL_PORT_TAKEN.format(port=port, target=target, source=c["source"]))
    out["connections"].append({"source": src["id"], "target": tgt["id"], "source_port": "output", "target_port": port})
    return _place(out)


def connection_label(c: dict[str, Any]) -> str:
    return f"{c['source']} → {c['target']}" + (f".{c['target_port']}" if c.get("target_port") else "")


def disconnect(pipeline: dict[str, Any], index: int) -> dict[str, Any]:
    out = copy.deepcopy(pipeline)
    if not 0 <= index < len(out["connections"]):
        raise EditError(strings.PL_CONNECTION_GONE)
    del out["connections"][index]
    return _place(out)


def set_config(pipeline: dict[str, Any], node_id: str, config: dict[str, Any],
               label: str | None = None) -> dict[str, Any]:
    out = copy.deepcopy(pipeline)
    node = _node(out, node_id)
    node["config"] = config
    if label is not None and label.strip():
        node["label"] = label.strip()
    return out


# -- undo/redo: {"past": [documents], "future": [documents]} -------------------------------------------------------

def empty_history() -> dict[str, list]:
    return {"past": [], "future": []}


def record(history: dict[str, list], before: dict[str, Any]) -> dict[str, list]:
    """History after an edit made to ``before``: it can be undone; what was undone before can't be redone."""
    return {"past": (history["past"] + [before])[-HISTORY_LIMIT:], "future": []}


def undo(history: dict[str, list], current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    if not history["past"]:
        raise EditError(strings.PL_NOTHING_TO_UNDO)
    return history["past"][-1], {"past": history["past"][:-1], "future": [current] + history["future"]}


def redo(history: dict[str, list], current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    if not history["future"]:
        raise EditError(strings.PL_NOTHING_TO_REDO)
    return history["future"][0], {"past": history["past"] + [current], "future": history["future"][1:]}
