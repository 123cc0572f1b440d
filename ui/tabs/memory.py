"""Memory tab: one card per memory backend (which is in use, which this install can run) and per-session stats
with usage bars (``/memory/config`` and ``/memory/stats``)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui import strings
from ui.client import StudioClient
from ui.render import card, cards, error_notice, esc, fmt, notice, usage_bar


def backend_cards(config: dict[str, Any]) -> str:
    """Cards for ``/memory/config``'s available backends, the one in use highlighted."""
    in_use = config.get("backend")
    items = []
    for backend in config.get("available_backends", []):
        name = backend.get("name", "?")
        body = f'<div class="sage-card-body">{esc(backend.get("description", ""))}</div>'
        details = []
        if name == in_use:
            details = [f"window {config.get('max_dialogs')} dialogs", f"recall top {config.get('top_k')}"]
            if config.get("embedding_model"):
                details.append(f"embedder {config['embedding_model']}")
        if backend.get("missing"):
            details.append("needs " + ", ".join(backend["missing"]))
        if details:
            body += f'<div class="sage-muted">{esc(" · ".join(str(d) for d in details))}</div>'
        if name == in_use:
            badge = strings.MEMORY_IN_USE
        else:
            badge = "" if backend.get("available") else strings.MEMORY_UNAVAILABLE
        items.append(card(name, body, badge=badge, active=name == in_use))
    return cards(items)


def session_rows(stats: dict[str, Any]) -> str:
    """A table of sessions with dialog counts, a usage bar and the retrieval index size."""
    sessions = stats.get("sessions", [])
    if not sessions:
        return notice(strings.MEMORY_NO_SESSIONS)
    rows = []
    for s in sessions:
        index = s.get("index") or {}
        size = index.get("vectors", index.get("documents", index.get("nodes", index.get("size"))))
        index_text = f'{esc(str(index.get("type", "")))} · {esc(fmt(size))}' if index else "—"
        rows.append(
            f'<tr><td class="sage-title-cell">{esc(s.get("title", ""))}'
            f'<div class="sage-muted sage-id">{esc(s["session_id"])}</div></td>'
            f'<td>{s.get("dialog_count", 0)}</td><td class="sage-bar-cell">{usage_bar(s.get("usage_percent", 0))}</td>'
            f"<td>{index_text}</td></tr>"
        )
    head = "<tr><th>Session</th><th>Dialogs</th><th>Window usage</th><th>Index</th></tr>"
    return f'<table class="sage-table" id="memory-sessions">{head}{"".join(rows)}</table>'


class MemoryController:
    """The Memory tab's one handler: what ``/memory/config`` and ``/memory/stats`` answer, as cards and a table."""

    def __init__(self, client: StudioClient):
        self.client = client

    async def load(self):
        try:
            config = await self.client.memory_config()
            stats = await self.client.memory_stats()
        except Exception as exc:  # noqa: BLE001 - shown as a notice, the tab stays usable
            return "", error_notice(exc, strings.TAB_MEMORY), ""
        text = strings.MEMORY_SUMMARY.format(backend=config.get("backend"), max_dialogs=config.get("max_dialogs"),
                                             total=config.get("total_sessions", len(stats.get("sessions", []))))
        return text, backend_cards(config), session_rows(stats)


def create_memory_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> None:
    """Build the Memory tab inside the current Blocks context."""
    with gr.Row():
        summary = gr.Markdown(elem_id="memory-summary")
        refresh = gr.Button(strings.MEMORY_REFRESH, size="sm", scale=0, min_width=100)
    gr.Markdown(f"#### {strings.MEMORY_BACKENDS}")
    backends = gr.HTML(elem_id="memory-backends")
    gr.Markdown(f"#### {strings.MEMORY_SESSIONS}")
    sessions = gr.HTML(elem_id="memory-stats")

    load = MemoryController(client).load  # one object for both events (concurrency group: id(fn))
    tab.select(load, None, [summary, backends, sessions])
    refresh.click(load, None, [summary, backends, sessions])
