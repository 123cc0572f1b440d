"""What the Fine-tune tab shows, as pure functions of API answers: the validation report, the task table rows,
the loss curve and the recommendation text (kept apart from the layout so they are easy to test)."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from ui import strings
from ui.render import esc, fmt, kv_table, notice

TASK_COLUMNS = ["Task", "Name", "State", "Progress", "Loss", "ETA", "Started"]
LOSS_COLUMNS = ["step", "loss", "curve"]
_STATE_ICONS = {"pending": "○", "queued": "◷", "preparing": "◔", "training": "◑", "completed": "●",
                "failed": "✕", "cancelled": "⊘"}


def dataset_choices(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f'{d.get("name") or d["id"]} · {d.get("rows_valid", 0)} rows ({d["id"]})', d["id"]) for d in datasets]


def base_model_choices(listing: Any, default: str) -> tuple[list[str], str]:
    """Base models from ``/api/finetune/models`` and the one to preselect (the base of the current chat model,
    else the first served base); ``default`` is offered too, as any prepared model can be fine-tuned."""
    from ui.tabs.models import model_entries, model_name

    entries = model_entries(listing)
    bases = [e for e in entries if (e.get("kind") or "base") == "base" and not e.get("task_id")]
    current = next((e for e in entries if e.get("current")), None)
    chosen = (current.get("base") or model_name(current)) if current else None
    names = [model_name(e) for e in bases]
    if chosen not in names:
        chosen = names[0] if names else default
    return list(dict.fromkeys([*names, default])), chosen


def report_html(record: dict[str, Any]) -> str:
    """The validation report of an uploaded dataset: verdict, counts, token stats, row errors and a preview."""
    report = record.get("report") or {}
    total, valid, invalid = report.get("rows_total", 0), report.get("rows_valid", 0), report.get("rows_invalid", 0)
    if not valid:
        verdict = notice(strings.FT_REPORT_NONE, "error")
    elif invalid:
        verdict = notice(strings.FT_REPORT_BAD.format(invalid=invalid, total=total, valid=valid), "warn")
    else:
        verdict = notice(strings.FT_REPORT_OK.format(valid=valid, total=total, fmt=report.get("format")), "ok")
    stats = [("dataset", f'{record.get("name")} ({record.get("id")})'), ("format", report.get("format")),
             ("rows total / valid / invalid", f"{total} / {valid} / {invalid}"),
             ("size", f'{record.get("size_bytes", 0) / 1024:.1f} KiB'),
             ("checked in", f'{report.get("seconds", 0):.2f} s')]
    tokens = report.get("tokens")
    if tokens:
        stats += [(f'tokens ({tokens.get("model")})',
                   f'p50 {tokens["p50"]} · p95 {tokens["p95"]} · max {tokens["max"]}'),
                  (f'rows over max length {tokens.get("max_length")}',
                   f'{tokens.get("over_max_length", 0)} (they would be truncated)')]
    parts = [verdict, kv_table(stats)]
    errors = report.get("errors") or []
    if errors:
        rows = "".join(f'<tr><td>{e["row"]}</td><td>{esc(e["reason"])}</td></tr>' for e in errors)
        parts.append(f'<div class="sage-subtitle">Problems</div><table class="sage-table sage-errors" '
                     f'id="ft-errors"><tr><th>Row</th><th>Reason</th></tr>{rows}</table>')
    preview = report.get("preview") or []
    if preview:
        convs = []
        for conversation in preview[:3]:
            turns = "".join(f'<div class="sage-turn"><b>{esc(t.get("role", ""))}</b> '
                            f'{esc(str(t.get("content", ""))[:200])}</div>' for t in conversation)
            convs.append(f'<div class="sage-conv">{turns}</div>')
        parts.append(f'<div class="sage-subtitle">Preview</div>{"".join(convs)}')
    return f'<div class="sage-report">{"".join(parts)}</div>'


def _eta(seconds: Any) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _progress(task: dict[str, Any]) -> str:
    p = task.get("progress") or {}
    step, total = p.get("step"), p.get("total_steps")
    if task.get("state") == "completed" and total:
        return f"{total}/{total} (100%)"
    if step is None or not total:
        return "—"
    return f"{step}/{total} ({100 * step / total:.0f}%)"


def task_rows(tasks: list[dict[str, Any]], now: float | None = None) -> list[list[str]]:
    """One table row per task, newest first as the API lists them."""
    now = now or time.time()
    rows = []
    for t in tasks:
        p = t.get("progress") or {}
        state = t.get("state", "?")
        started = t.get("started_at") or t.get("created_at")
        ago = f"{int((now - started) // 60)} min ago" if started else "—"
        eta = _eta(p.get("eta_s")) if state == "training" else "—"
        rows.append([t["id"], t.get("name", ""), f'{_STATE_ICONS.get(state, "")} {state}', _progress(t),
                     fmt(p.get("loss")), eta, ago])
    return rows


def task_notice(task: dict[str, Any]) -> str:
    """One line on the selected task: its state, and why it failed or is still waiting."""
    state, progress = task.get("state", "?"), task.get("progress") or {}
    text = f'{task.get("name") or task["id"]} ({task["id"]}): {state}'
    if task.get("error"):
        return notice(f'{text} — {task["error"]}', "error" if state == "failed" else "warn")
    if state == "queued" and progress.get("submit_error"):
        return notice(strings.FT_SUBMIT_RETRY.format(task=text, error=progress["submit_error"]), "warn")
    if state == "queued":
        return notice(strings.FT_QUEUED.format(task=text), "info")
    ev = task.get("evaluation")
    if ev:
        text += strings.FT_EVALUATION.format(rows=ev["rows"], base=ev["base"]["loss"], tuned=ev["fine_tuned"]["loss"],
                                             base_ppl=ev["base"]["perplexity"], tuned_ppl=ev["fine_tuned"]["perplexity"])
    return notice(text, "ok" if state == "completed" else "info")


def task_choices(tasks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f'{t.get("name") or t["id"]} · {t.get("state")} ({t["id"]})', t["id"]) for t in tasks]


def loss_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format for one LinePlot with two curves: the training loss per step and the held-out eval_loss."""
    rows = [(p["step"], p["loss"], strings.FT_CURVE_TRAIN) for p in points if p.get("loss") is not None]
    rows += [(p["step"], p["eval_loss"], strings.FT_CURVE_EVAL) for p in points if p.get("eval_loss") is not None]
    # LoRA's B matrices start at zero, so the base model's held-out loss is the curve's step 0: a run evaluated only
    # at its last step still draws a line from where it started.
    rows += [(0, p["base_eval_loss"], strings.FT_CURVE_EVAL) for p in points if p.get("base_eval_loss") is not None]
    # Typed columns even when empty: the plot needs numeric axes, not categories.
    return pd.DataFrame(rows, columns=LOSS_COLUMNS).astype({"step": "int64", "loss": "float64", "curve": "str"})


def recommendation_for(recommendations: list[dict[str, Any]], model: str | None) -> dict[str, Any] | None:
    """The recommendation for ``model``, else the first one (the default model's)."""
    for rec in recommendations:
        if rec.get("model") == model:
            return rec
    return recommendations[0] if recommendations else None


def parameters(size_b: float | None) -> str:
    """A parameter count given in billions, as people say it: 7 B, 135 M, under 1 M."""
    if size_b is None:
        return "?"
    if size_b >= 1:
        return f"{size_b:g} B"
    return f"{size_b * 1000:.0f} M" if size_b >= 0.001 else "under 1 M"


def recommendation_markdown(rec: dict[str, Any] | None, note: str | None = None) -> str:
    if not rec:
        return strings.FT_NO_RECOMMENDATION
    device = "GPU" if rec.get("use_gpu") else "CPU"
    lines = [f"**{rec.get('model')}** ({parameters(rec.get('model_size_b'))} parameters) on {device}: "
             f"batch **{rec.get('batch_size')}**, max length **{rec.get('max_length')}**, "
             f"LoRA r **{rec.get('lora_r')}**, **{rec.get('num_workers')}** worker(s)"
             + ("" if rec.get("fits", True) else " — ⚠️ not expected to fit")]
    lines += [f"- {n}" for n in rec.get("notes", [])]
    if note:
        lines.append(f"\n_{note}_")
    return "\n".join(lines)
