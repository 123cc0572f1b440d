"""The live picture of a pipeline: a layered left-to-right layout of its DAG, drawn as inline SVG.

Layers come from the longest path from a source, so every edge points right and branches/joins read at a glance;
within a layer nodes keep the order of their saved canvas position. After a run each node is outlined by its
status and shows its time.
"""

from __future__ import annotations

from html import escape
from typing import Any

NODE_W, NODE_H = 176, 62
GAP_X, GAP_Y = 84, 34
PAD = 24
CATEGORY_COLORS = {
    "source": "#0ea5e9", "transform": "#8b5cf6", "rag": "#10b981", "join": "#f59e0b", "llm": "#6366f1",
    "evaluator": "#ec4899", "sink": "#64748b",
}
STATUS_COLORS = {"ok": "#16a34a", "error": "#dc2626", "skipped": "#94a3b8"}


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
    """Top-left corner of every node's box."""
    layer = layers(pipeline)
    columns: dict[int, list[dict[str, Any]]] = {}
    for order, node in enumerate(pipeline.get("nodes", [])):
        node = {**node, "_order": order}
        columns.setdefault(layer[node["id"]], []).append(node)
    out = {}
    for col, nodes in columns.items():
        nodes.sort(key=lambda n: ((n.get("position") or {}).get("y", 0), n["_order"]))
        for row, node in enumerate(nodes):
            out[node["id"]] = (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    return out


def _port_y(y: float, index: int, count: int) -> float:
    return y + NODE_H * (index + 1) / (count + 1)


def render_svg(pipeline: dict[str, Any], operators: dict[str, dict[str, Any]], selected: str | None = None,
               results: dict[str, dict[str, Any]] | None = None) -> str:
    """The pipeline as an SVG (wrapped in a scrollable div); ``operators`` is the palette by type name."""
    nodes = pipeline.get("nodes", [])
    if not nodes:
        return ""
    pos = layout(pipeline)
    results = results or {}
    width = max(x for x, _ in pos.values()) + NODE_W + PAD
    height = max(y for _, y in pos.values()) + NODE_H + PAD
    by_id = {n["id"]: n for n in nodes}
    parts = ['<defs><marker id="sage-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#94a3b8"/></marker></defs>']
    for c in pipeline.get("connections", []):
        src, tgt = by_id.get(c.get("source")), by_id.get(c.get("target"))
        if src and tgt:
            parts.append(_edge_svg(c, pos[src["id"]], pos[tgt["id"]], operators.get(tgt["type"], {})))
    for node in nodes:
        parts.append(_node_svg(node, pos[node["id"]], operators.get(node["type"], {}), node["id"] == selected,
                               results.get(node["id"])))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="pipeline graph">{"".join(parts)}</svg>')
    return f'<div class="sage-graph" id="pipeline-graph">{svg}</div>'


def _edge_svg(c: dict[str, Any], source_xy: tuple[float, float], target_xy: tuple[float, float],
              target_op: dict[str, Any]) -> str:
    """A curve from the source's output to the target's input port (its only one when the connection names none)."""
    (sx, sy), (tx, ty) = source_xy, target_xy
    inputs = [p["name"] for p in target_op.get("inputs", [])]
    port = c.get("target_port") or (inputs[0] if len(inputs) == 1 else None)
    idx = inputs.index(port) if port in inputs else 0
    x1, y1 = sx + NODE_W, sy + NODE_H / 2
    x2, y2 = tx, _port_y(ty, idx, max(1, len(inputs)))
    mid = (x1 + x2) / 2
    return (f'<path class="sage-edge" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} '
            f'{x2 - 2:.0f},{y2:.0f}" fill="none" stroke="#94a3b8" stroke-width="1.6" '
            f'marker-end="url(#sage-arrow)"/>')


def _node_svg(node: dict[str, Any], xy: tuple[float, float], op: dict[str, Any], is_selected: bool,
              result: dict[str, Any] | None) -> str:
    """A node's box: its category's colour, label, operator, input ports and, after a run, its status and time."""
    x, y = xy
    color = CATEGORY_COLORS.get(op.get("category", ""), "#475569")
    if result:
        stroke = STATUS_COLORS.get(result.get("status"), color)
    else:
        stroke = "#1e293b" if is_selected else "#cbd5e1"
    stroke_w = 2.5 if result or is_selected else 1.2
    label = escape(str(node.get("label") or node["id"]))[:24]
    sub = escape(op.get("label", node["type"]))[:28]
    parts = [(f'<g class="sage-node" data-node="{escape(node["id"])}">'
              f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="9" fill="#ffffff" '
              f'stroke="{stroke}" stroke-width="{stroke_w}"/>'
              f'<rect x="{x}" y="{y}" width="6" height="{NODE_H}" rx="3" fill="{color}"/>'
              f'<text x="{x + 16}" y="{y + 24}" class="sage-node-title">{label}</text>'
              f'<text x="{x + 16}" y="{y + 43}" class="sage-node-sub">{sub}</text>')]
    if result:
        badge = f'{result.get("status")} · {result.get("duration_ms", 0):.0f} ms'
        parts.append(f'<text x="{x + NODE_W - 8}" y="{y + 14}" text-anchor="end" class="sage-node-badge" '
                     f'fill="{STATUS_COLORS.get(result.get("status"), "#475569")}">{escape(badge)}</text>')
    inputs = op.get("inputs", [])
    for i, port in enumerate(inputs):
        py = _port_y(y, i, len(inputs))
        parts.append(f'<circle cx="{x}" cy="{py:.0f}" r="4" fill="{color if port.get("required") else "#fff"}" '
                     f'stroke="{color}"/><title>{escape(port["name"])}</title>')
        if len(inputs) > 1:
            parts.append(f'<text x="{x - 6}" y="{py - 6:.0f}" text-anchor="end" class="sage-port">'
                         f'{escape(port["name"])}</text>')
    parts.append(f'<circle cx="{x + NODE_W}" cy="{y + NODE_H / 2}" r="4" fill="{color}"/></g>')
    return "".join(parts)
