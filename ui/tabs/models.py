"""Models tab: the current chat model, the base and fine-tuned models available, and a switch.

Built on the hot-swap API (``/api/finetune/models``, ``current-model``, ``switch-model``); while that API is not
there, it still lists what the gateway serves (``/v1/models``) and says the switch is not available.
``create_models_tab`` lays the tab out; ``ModelsController`` holds the client and handles its events.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from sage_studio.settings import DEFAULT_MODEL_ALIAS
from ui import strings
from ui.client import StudioClient
from ui.render import card, cards, error_notice, esc, fmt, kv_table, notice


def model_entries(listing: Any) -> list[dict[str, Any]]:
    """The models of ``GET /api/finetune/models``, whether it answers a list or groups them (base/finetuned)."""
    if isinstance(listing, list):
        return listing
    if isinstance(listing, dict):
        if isinstance(listing.get("models"), list):
            return listing["models"]
        out = []
        for kind in ("base", "base_models", "finetuned", "finetuned_models", "fine_tuned"):
            for item in listing.get(kind) or []:
                out.append({"kind": "finetuned" if "fine" in kind else "base", **item})
        return out
    return []


def model_name(entry: dict[str, Any]) -> str:
    return str(entry.get("name") or entry.get("id") or entry.get("model") or "?")


def current_name(current: dict[str, Any]) -> str:
    return str(current.get("model") or current.get("name") or current.get("id") or "?")


def model_cards(entries: list[dict[str, Any]], current: str | None) -> str:
    items = []
    for entry in entries:
        name = model_name(entry)
        kind = entry.get("kind") or entry.get("type") or ("finetuned" if entry.get("task_id") else "base")
        rows = [(k.replace("_", " "), v) for k, v in entry.items()
                if k not in ("name", "id", "kind", "type") and not isinstance(v, (dict, list))]
        items.append(card(name, kv_table(rows[:6]), badge="current" if name == current else str(kind),
                          active=name == current))
    return cards(items)


class ModelsController:
    """The Models tab's event handlers: what the studio serves and chats with, and the switch."""

    def __init__(self, client: StudioClient):
        self.client = client

    async def load(self, message: str = ""):
        try:
            served = [m["id"] for m in await self.client.models()]
        except Exception as exc:  # noqa: BLE001
            return "", gr.update(), error_notice(exc, strings.TAB_MODELS), ""
        try:
            cur = current_name(await self.client.current_model())
            entries = model_entries(await self.client.finetune_models())
        except Exception as exc:  # noqa: BLE001 - fall back to what the gateway serves
            cur, entries = await self._served_only(served)
            message = message or error_notice(exc, strings.FEAT_SWITCH)
        current_html = card(strings.MODELS_CURRENT, f'<div class="sage-big">{esc(fmt(cur))}</div>'
                            f'<div class="sage-muted">{strings.MODELS_SERVED}: {esc(", ".join(served))}</div>')
        names = [model_name(e) for e in entries]
        return current_html, gr.update(choices=names, value=cur if cur in names else None), message, \
            model_cards(entries, cur)

    async def _served_only(self, served: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
        """Without the hot-swap API: the current model as ``/health`` names it, and the served models."""
        health = {}
        try:
            health = await self.client.health()
        except Exception:  # noqa: BLE001
            pass
        return health.get("default_model"), [{"name": name, "kind": "served"} for name in served
                                             if name != DEFAULT_MODEL_ALIAS]

    @staticmethod
    def switching(name: str | None):
        return notice(strings.MODELS_SWITCHING.format(model=name), "info") if name else gr.update()

    async def switch(self, name: str | None):
        if not name:
            return gr.update(), gr.update(), notice(strings.MODELS_PICK_FIRST, "warn"), gr.update()
        try:
            await self.client.switch_model(name)
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), error_notice(exc, strings.FEAT_SWITCH), gr.update()
        return await self.load(notice(strings.MODELS_SWITCHED.format(model=name), "ok"))


def create_models_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, gr.components.Component]:
    """Build the Models tab inside the current Blocks context."""
    with gr.Row():
        current = gr.HTML(elem_id="models-current")
        refresh = gr.Button(strings.MODELS_REFRESH, size="sm", scale=0, min_width=100)
    with gr.Row(equal_height=True):
        pick = gr.Dropdown(label=strings.MODELS_PICK, choices=[], scale=3, elem_id="models-pick")
        switch = gr.Button(strings.MODELS_SWITCH, variant="primary", scale=1, elem_id="models-switch")
    status = gr.HTML(elem_id="models-status")
    gr.Markdown(f"#### {strings.MODELS_AVAILABLE}")
    available = gr.HTML(elem_id="models-available")

    models = ModelsController(client)
    load = models.load  # one object for both events (concurrency group: id(fn))
    outputs = [current, pick, status, available]
    tab.select(load, None, outputs)
    refresh.click(load, None, outputs)
    switch.click(models.switching, [pick], [status], queue=False).then(models.switch, [pick], outputs)
    return {"pick": pick, "switch": switch, "status": status}
