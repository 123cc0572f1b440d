"""Editing a pipeline document in the browser session: add/move/remove nodes, connect ports, set configs,
auto-layout, undo/redo.

Pure functions on the ``VisualPipeline`` JSON (plain dicts, as the API sends and takes it); every edit returns a
new document, so the undo history is simply the list of earlier documents. Node positions are the user's (the
canvas saves where nodes were dropped and moved); only ``auto_layout`` rearranges them. A wire between port types
the builder would refuse is refused here too, by the palette's ``accepts`` (the builder's rule, sent with each
port). Checks that need the whole graph (cycles, required config) stay the server's job:
``/api/pipelines/validate`` names the culprit.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ui import strings
from ui.pipeline_graph import layout

HISTORY_LIMIT = 50
# Grid pitch (canvas pixels) of the spots a node added without a drop point may take.
FREE_SPOT_STEP = (240, 150)


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


def _free_spot(pipeline: dict[str, Any]) -> dict[str, float]:
    # A node added without a drop point (the keyboard's Add) goes to the first grid cell no node sits in.
    taken = [(n.get("position") or {}) for n in pipeline["nodes"]]
    for i in range(len(taken) + 1):
        x, y = 40 + (i % 4) * FREE_SPOT_STEP[0], 40 + (i // 4) * FREE_SPOT_STEP[1]
        if all(abs(p.get("x", 0) - x) >= FREE_SPOT_STEP[0] / 2 or abs(p.get("y", 0) - y) >= FREE_SPOT_STEP[1] / 2
               for p in taken):
            return {"x": x, "y": y}
    return {"x": 40, "y": 40}


def add_node(pipeline: dict[str, Any], operator: dict[str, Any],
             position: dict[str, float] | None = None) -> tuple[dict[str, Any], str]:
    """A new node of ``operator`` (a palette entry) with a free id, at ``position`` (where it was dropped) or in a
    free spot; returns the new document and the id."""
    out = copy.deepcopy(pipeline)
    node_id = _fresh_id(out, operator["type"])
    where = {"x": float(position["x"]), "y": float(position["y"])} if position else _free_spot(out)
    out["nodes"].append({"id": node_id, "type": operator["type"], "label": operator.get("label", node_id),
                         "position": where, "config": {}})
    return out, node_id


def move_node(pipeline: dict[str, Any], node_id: str, x: float, y: float) -> dict[str, Any]:
    out = copy.deepcopy(pipeline)
    _node(out, node_id)["position"] = {"x": float(x), "y": float(y)}
    return out


def auto_layout(pipeline: dict[str, Any]) -> dict[str, Any]:
    """Every node placed by ``ui.pipeline_graph.layout``: columns by depth in the DAG, left to right."""
    out = copy.deepcopy(pipeline)
    for node_id, (x, y) in layout(out).items():
        _node(out, node_id)["position"] = {"x": x, "y": y}
    return out


def remove_node(pipeline: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Drop a node and every connection touching it."""
    out = copy.deepcopy(pipeline)
    _node(out, node_id)
    out["nodes"] = [n for n in out["nodes"] if n["id"] != node_id]
    out["connections"] = [c for c in out["connections"] if node_id not in (c["source"], c["target"])]
    return out


def target_port(connection: dict[str, Any], pipeline: dict[str, Any],
                operators: dict[str, dict[str, Any]]) -> str | None:
    """The input a connection feeds: the one it names, else its target's only input (None when unknown)."""
    if connection.get("target_port"):
        return connection["target_port"]
    node_type = next((n["type"] for n in pipeline["nodes"] if n["id"] == connection["target"]), None)
    names = [p["name"] for p in operators.get(node_type, {}).get("inputs", [])]
    return names[0] if len(names) == 1 else None


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
    produced = operators.get(src["type"], {}).get("output", {}).get("type")
    if produced and "accepts" in spec and produced not in spec["accepts"]:
        raise EditError(strings.PL_INCOMPATIBLE.format(source=source, produced=produced, port=port, target=target,
                                                       expected=spec["type"]))
    for c in out["connections"]:
        if c["source"] == source and c["target"] == target and (c.get("target_port") or names[0]) == port:
            raise EditError(strings.PL_ALREADY_CONNECTED.format(source=source, target=target, port=port))
        if not spec.get("multiple") and c["target"] == target and (c.get("target_port") or names[0]) == port:
            raise EditError(strings.PL_PORT_TAKEN.format(port=port, target=target, source=c["source"]))
    out["connections"].append({"source": src["id"], "target": tgt["id"], "source_port": "output", "target_port": port})
    return out


def connection_label(c: dict[str, Any]) -> str:
    return f"{c['source']} → {c['target']}" + (f".{c['target_port']}" if c.get("target_port") else "")


def disconnect(pipeline: dict[str, Any], index: int) -> dict[str, Any]:
    out = copy.deepcopy(pipeline)
    if not 0 <= index < len(out["connections"]):
        raise EditError(strings.PL_CONNECTION_GONE)
    del out["connections"][index]
    return out


def disconnect_ports(pipeline: dict[str, Any], source: str, target: str, port: str | None,
                     operators: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Remove the connection from ``source`` into ``target``'s input ``port`` (the wire picked on the canvas)."""
    for index, c in enumerate(pipeline["connections"]):
        if c["source"] == source and c["target"] == target and target_port(c, pipeline, operators) == port:
            return disconnect(pipeline, index)
    raise EditError(strings.PL_CONNECTION_GONE)


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
