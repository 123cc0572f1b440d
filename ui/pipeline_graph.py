"""Where auto-layout puts a pipeline's nodes: a layered left-to-right layout of its DAG, in canvas pixels.

Layers come from the longest path from a source, so every wire points right and branches/joins read at a glance;
within a layer nodes keep the order of their current canvas position.
"""

from __future__ import annotations

from typing import Any

# The canvas draws nodes NODE_W wide; a column pitch of NODE_W + GAP_X leaves room for the wires between them.
NODE_W, GAP_X = 170, 70
ROW_PITCH = 150
PAD = 40


def layers(pipeline: dict[str, Any]) -> dict[str, int]:
    """Column of each node: 0 for nodes without inputs, else one more than its furthest input."""
    ids = [n["id"] for n in pipeline.get("nodes", [])]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for c in pipeline.get("connections", []):
        if c.get("source") in preds and c.get("target") in preds:
            preds[c["target"]].append(c["source"])
    layer = {i: 0 for i in ids}
    # Bellman-Ford style relaxation, bounded so a cycle (which validation reports) cannot loop forever.
    for _ in range(len(ids)):
        changed = False
        for node, sources in preds.items():
            want = max((layer[s] + 1 for s in sources), default=0)
            if want > layer[node] and want < len(ids):
                layer[node], changed = want, True
        if not changed:
            break
    return layer


def layout(pipeline: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Top-left corner of every node."""
    layer = layers(pipeline)
    columns: dict[int, list[dict[str, Any]]] = {}
    for order, node in enumerate(pipeline.get("nodes", [])):
        node = {**node, "_order": order}
        columns.setdefault(layer[node["id"]], []).append(node)
    out = {}
    for col, nodes in columns.items():
        nodes.sort(key=lambda n: ((n.get("position") or {}).get("y", 0), n["_order"]))
        for row, node in enumerate(nodes):
            out[node["id"]] = (PAD + col * (NODE_W + GAP_X), PAD + row * ROW_PITCH)
    return out
