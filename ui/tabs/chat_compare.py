"""Chat tab, compare mode: one prompt, two models (any two of the base, fine-tunes, a remote), side by side, both
replies streaming at once. Comparisons are not stored in a session: they are for looking, not for memory.
``create_compare_panel`` lays it out and wires it to a ``CompareController``."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from ui import strings
from ui.client import ApiError, StudioClient
from ui.render import error_notice, error_text, notice

_DONE = object()


class CompareController:
    """Streams one prompt to two models concurrently; each yield carries both conversations as far as they got."""

    def __init__(self, client: StudioClient):
        self.client = client

    async def _pump(self, side: int, prompt: str, model: str, queue: asyncio.Queue) -> None:
        try:
            async for piece in self.client.stream_chat([{"role": "user", "content": prompt}], model):
                await queue.put((side, piece.text, piece.model))
        except Exception as exc:  # noqa: BLE001 - a failed side says why in its own column
            message = exc.message if isinstance(exc, ApiError) else error_text(exc, strings.TAB_CHAT)
            await queue.put((side, strings.CHAT_REPLY_FAILED.format(message=message), None))
        finally:
            await queue.put((side, _DONE, None))

    async def compare(self, prompt: str, model_a: str, model_b: str):
        prompt = (prompt or "").strip()
        if not prompt:
            yield gr.update(), gr.update(), gr.update()
            return
        if not model_a or not model_b or model_a == model_b:
            yield gr.update(), gr.update(), notice(strings.CHAT_COMPARE_SAME, "warn")
            return
        replies, answered_by = ["", ""], [model_a, model_b]
        queue: asyncio.Queue = asyncio.Queue()
        tasks = [asyncio.create_task(self._pump(i, prompt, m, queue)) for i, m in enumerate((model_a, model_b))]

        def view(i: int) -> list[dict[str, Any]]:
            return [{"role": "user", "content": prompt}, {"role": "assistant", "content": replies[i]}]

        try:
            yield view(0), view(1), ""
            open_sides = 2
            while open_sides:
                side, text, model = await queue.get()
                if text is _DONE:
                    open_sides -= 1
                    continue
                replies[side] += text
                answered_by[side] = model or answered_by[side]
                yield view(0), view(1), gr.update()
        finally:
            for task in tasks:  # Stop pressed or the page went away: end both streams
                task.cancel()
        yield view(0), view(1), notice(strings.CHAT_COMPARE_DONE.format(a=answered_by[0], b=answered_by[1]), "ok")

    async def model_choices(self):
        try:
            ids = [m["id"] for m in await self.client.models() if m.get("kind") != "embedding"]
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), error_notice(exc, strings.CHAT_COMPARE)
        second = ids[1] if len(ids) > 1 else None
        return (gr.update(choices=ids, value=ids[0] if ids else None), gr.update(choices=ids, value=second),
                gr.update())


def create_compare_panel(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, gr.components.Component]:
    """The compare panel (inside the current layout context); returns its components by name."""
    c: dict[str, Any] = {}
    with gr.Accordion(strings.CHAT_COMPARE, open=False, elem_id="chat-compare"):
        with gr.Row(equal_height=True):
            c["model_a"] = gr.Dropdown(choices=[], label=strings.CHAT_COMPARE_A, allow_custom_value=True,
                                       elem_id="compare-model-a")
            c["model_b"] = gr.Dropdown(choices=[], label=strings.CHAT_COMPARE_B, allow_custom_value=True,
                                       elem_id="compare-model-b")
        with gr.Row(equal_height=True):
            c["prompt"] = gr.Textbox(placeholder=strings.CHAT_COMPARE_PROMPT, show_label=False, scale=8,
                                     elem_id="compare-input")
            c["run"] = gr.Button(strings.CHAT_COMPARE_RUN, variant="primary", scale=1, min_width=90,
                                 elem_id="compare-run")
        c["status"] = gr.HTML(elem_id="compare-status")
        with gr.Row(equal_height=True):
            c["bot_a"] = gr.Chatbot(height=320, show_label=True, label=strings.CHAT_COMPARE_A, elem_id="compare-a")
            c["bot_b"] = gr.Chatbot(height=320, show_label=True, label=strings.CHAT_COMPARE_B, elem_id="compare-b")
    ctl = CompareController(client)
    compare, choices = ctl.compare, ctl.model_choices  # one object per handler: one concurrency group each
    pickers = [c["model_a"], c["model_b"], c["status"]]
    demo.load(choices, None, pickers)
    tab.select(choices, None, pickers)  # fine-tunes switched to elsewhere become pickable
    outputs = [c["bot_a"], c["bot_b"], c["status"]]
    c["run"].click(compare, [c["prompt"], c["model_a"], c["model_b"]], outputs)
    c["prompt"].submit(compare, [c["prompt"], c["model_a"], c["model_b"]], outputs)
    return c
