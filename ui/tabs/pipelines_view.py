"""What the Pipelines tab shows, as pure functions of API answers and of the document being edited: the run's
table, the selected node's output, the pick lists, the operator's description and the run input (kept apart from
the layout so they are easy to test)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ui import strings
from ui.render import esc, notice, preview

RESULT_COLUMNS = ["Node", "Type", "Status", "Time (ms)", "Output"]


def result_rows(run: dict[str, Any]) -> pd.DataFrame:
    """One row per node of a run: its type, status, time and (the start of) its output or error."""
    rows = []
    for node_id, r in (run.get("nodes") or {}).items():
        out = r.get("error") or preview(r.get("output"))
        if r.get("output_items") is not None:
            out = f"[{r['output_items']} items] {out}"
        rows.append([node_id, r.get("type", ""), r.get("status", ""), round(r.get("duration_ms", 0), 1), out])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def node_output(node_id: str | None, runs: dict[str, Any] | None, issues: list[dict[str, Any]] | None) -> str:
    """What the selected node did in the last run (status, time, output or error, log) and its validation
    problems, as HTML: what clicking a node on the canvas shows."""
    if not node_id:
        return ""
    parts = [notice(i["message"], "error") for i in issues or [] if i.get("node") == node_id]
    result = (runs or {}).get(node_id)
    if not result:
        parts.append(f'<p class="sage-muted">{esc(strings.PL_NO_RUN_YET)}</p>')
    else:
        status = str(result.get("status", ""))
        head = f'{node_id} · {status} · {result.get("duration_ms") or 0:.0f} ms'
        if result.get("output_items") is not None:
            head += f' · {result["output_items"]} items'
        body = result.get("error") or preview(result.get("output"), 4000)
        parts.append(f'<div class="sage-node-output-head sage-run-{esc(status)}">{esc(head)}</div>'
                     f'<pre class="sage-node-output-body">{esc(body)}</pre>')
        if result.get("logs"):
            parts.append(f'<details><summary>{esc(strings.PL_NODE_LOG)}</summary>'
                         f'<pre class="sage-node-output-log">{esc(chr(10).join(result["logs"]))}</pre></details>')
    return f'<div class="sage-node-output" data-node="{esc(node_id)}">{"".join(parts)}</div>'


def saved_choices(listing: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f'{p["name"]} ({p["id"]})', p["id"]) for p in listing]


def template_choices(templates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t.get("title") or t["name"], t["name"]) for t in templates]


def operator_choices(palette: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f'{op["category"]} · {op["label"]}', op["type"]) for op in palette]


def describe_operator(op: dict[str, Any] | None) -> str:
    """The palette's help line for an operator: what it does, its inputs and its output."""
    if not op:
        return ""
    ins = ", ".join(f'{p["name"]} ({p["type"]})' for p in op.get("inputs", [])) or "none"
    return f'{op["description"]}\n\n*Inputs:* {ins} · *Output:* {op["output"]["type"]}'


def input_ports(doc: dict[str, Any], ops: dict[str, dict[str, Any]], node_id: str | None) -> list[str]:
    """The names of the input ports of node ``node_id`` (none for a source or an unknown node)."""
    node_type = next((n["type"] for n in doc["nodes"] if n["id"] == node_id), None)
    return [p["name"] for p in ops.get(node_type, {}).get("inputs", [])]


def parse_input(text: str) -> Any:
    """The run input: a JSON object or array when the text is one, else the text itself."""
    stripped = (text or "").strip()
    if stripped[:1] in "{[":
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text
