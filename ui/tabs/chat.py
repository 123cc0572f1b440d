"""Chat tab: the session list (new, rename, clear, delete), streaming replies, a model picker and the memory panel.

Sessions live in the studio (``/sessions``), so the list here and the API show the same conversations; a reply is
streamed from ``/v1/chat/completions`` with the session's id, and the gateway stores both turns when it ends.
``create_chat_tab`` lays the tab out and wires its events to a ``ChatController``, which holds the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from sage_studio.settings import DEFAULT_MODEL_ALIAS
from ui import strings
from ui.client import ApiError, StudioClient
from ui.render import card, error_notice, error_text, esc, notice, usage_bar
from ui.tabs.chat_compare import create_compare_panel


def _choices(sessions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s["title"], s["id"]) for s in sessions]


def _shown(session: dict[str, Any]) -> list[int]:
    """Which of a session's messages the chat shows, by their index in the session: its questions and answers
    (tool calls and their results are API-side)."""
    return [i for i, m in enumerate(session.get("messages", []))
            if m["role"] in ("user", "assistant") and not m.get("tool_calls")]


def _history(session: dict[str, Any]) -> list[dict[str, str]]:
    messages = session.get("messages", [])
    return [{"role": messages[i]["role"], "content": messages[i]["content"]} for i in _shown(session)]


def _memory_html(preview: dict[str, Any] | None, stats: dict[str, Any] | None) -> str:
    if preview is None or stats is None:
        return notice(strings.CHAT_MEMORY_NONE)
    session = (stats.get("sessions") or [{}])[0]
    dialogs = session.get("dialog_count", 0)
    if not dialogs:
        return notice(strings.CHAT_MEMORY_EMPTY)
    body = [
        f'<div class="sage-muted">Backend <b>{esc(stats.get("backend", "?"))}</b> · {dialogs} dialogs stored · '
        f'window of {stats.get("max_dialogs", "?")}</div>',
        usage_bar(session.get("usage_percent", 0), f'window {session.get("usage_percent", 0):.0f}% full'),
    ]
    if session.get("index"):
        info = ", ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in session["index"].items())
        body.append(f'<div class="sage-muted">Index · {info}</div>')
    recalled = preview.get("last_recall") or []
    if recalled:
        items = "".join(
            f'<li><b>#{r["dialog"] + 1}</b> {esc(r["user"][:120])}'
            f'{" — " + esc(r["reason"]) if r.get("reason") else ""}</li>' for r in recalled)
        body.append(f'<div class="sage-muted">Recalled into the last prompt:</div><ul class="sage-list">{items}</ul>')
    return card(strings.CHAT_MEMORY, "".join(body), badge=stats.get("backend", ""))


class ChatController:
    """The Chat tab's event handlers: each takes the values of its inputs and returns its outputs' updates."""

    def __init__(self, client: StudioClient):
        self.client = client

    async def memory_panel(self, session_id: str | None) -> str:
        if not session_id:
            return notice(strings.CHAT_MEMORY_NONE)
        try:
            return _memory_html(await self.client.session_memory(session_id),
                                await self.client.memory_stats(session_id))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable notice
            return error_notice(exc, strings.FEAT_MEMORY)

    async def session_list(self, selected: str | None = None):
        """Radio update for the current sessions, keeping ``selected`` if it still exists."""
        items = await self.client.list_sessions()
        ids = [s["id"] for s in items]
        value = selected if selected in ids else None
        return gr.update(choices=_choices(items), value=value), value

    async def model_choices(self):
        try:
            return gr.update(choices=[m["id"] for m in await self.client.models()] or [DEFAULT_MODEL_ALIAS])
        except Exception:  # noqa: BLE001 - the picker keeps its default; a failed chat says why
            return gr.update()

    async def load(self, selected: str | None):
        model_update = await self.model_choices()
        try:
            radio, value = await self.session_list(selected)
            history = _history(await self.client.get_session(value)) if value else []
            msg = "" if radio["choices"] else notice(strings.CHAT_NO_SESSIONS)
            return radio, history, msg, await self.memory_panel(value), model_update
        except Exception as exc:  # noqa: BLE001
            return (gr.update(), [], error_notice(exc, strings.FEAT_SESSIONS), await self.memory_panel(None),
                    model_update)

    async def select(self, session_id: str | None):
        if not session_id:
            return [], "", await self.memory_panel(None)
        try:
            session = await self.client.get_session(session_id)
            return _history(session), "", await self.memory_panel(session_id)
        except Exception as exc:  # noqa: BLE001
            return [], error_notice(exc, strings.FEAT_SESSIONS), await self.memory_panel(None)

    async def new_session(self):
        try:
            created = await self.client.create_session()
            radio, _ = await self.session_list(created["id"])
            return radio, [], "", await self.memory_panel(created["id"])
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), error_notice(exc, strings.FEAT_SESSIONS), gr.update()

    async def rename(self, session_id: str | None, title: str):
        if not session_id:
            return gr.update(), title, notice(strings.CHAT_SELECT_FIRST, "warn")
        if not title.strip():
            return gr.update(), title, notice(strings.CHAT_EMPTY_TITLE, "warn")
        try:
            renamed = await self.client.rename_session(session_id, title)
            radio, _ = await self.session_list(session_id)
            return radio, "", notice(strings.CHAT_RENAMED.format(title=renamed["title"]), "ok")
        except Exception as exc:  # noqa: BLE001
            return gr.update(), title, error_notice(exc, strings.CHAT_RENAME)

    async def clear(self, session_id: str | None):
        if not session_id:
            return gr.update(), notice(strings.CHAT_SELECT_FIRST, "warn"), gr.update()
        try:
            await self.client.clear_session(session_id)
            return [], notice(strings.CHAT_CLEARED, "ok"), await self.memory_panel(session_id)
        except Exception as exc:  # noqa: BLE001
            return gr.update(), error_notice(exc, strings.CHAT_CLEAR), gr.update()

    async def delete(self, session_id: str | None):
        if not session_id:
            return gr.update(), gr.update(), notice(strings.CHAT_SELECT_FIRST, "warn"), gr.update()
        try:
            await self.client.delete_session(session_id)
            radio, _ = await self.session_list(None)
            return radio, [], notice(strings.CHAT_DELETED, "ok"), await self.memory_panel(None)
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), error_notice(exc, strings.CHAT_DELETE), gr.update()

    async def rate(self, session_id: str | None, comment: str, like: gr.LikeData):
        """A 👍/👎 on a reply: stored on that message of the session, with the comment box's text."""
        if not session_id or not isinstance(like.liked, bool):  # no session, or a thumb taken back
            return gr.update(), gr.update()
        index = like.index if isinstance(like.index, int) else like.index[0]
        try:
            shown = _shown(await self.client.get_session(session_id))
            if index >= len(shown):
                return notice(strings.CHAT_NOT_STORED, "warn"), gr.update()
            await self.client.rate_message(session_id, shown[index], 1 if like.liked else -1,
                                           (comment or "").strip() or None)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.CHAT_RATE), gr.update()
        return notice(strings.CHAT_RATED.format(rating="👍" if like.liked else "👎", index=index), "ok"), ""

    async def send(self, text: str, session_id: str | None, model_name: str, history: list[dict[str, Any]]):
        """Stream the reply into the conversation, then refresh the session list (the first message titles it)."""
        text = (text or "").strip()
        if not text:
            yield gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            return
        history = list(history or []) + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        try:
            if not session_id:
                session_id = (await self.client.create_session())["id"]
            yield history, "", gr.update(), "", gr.update()
            answered_by = None
            async for model in self._stream_reply(text, session_id, model_name, history):
                answered_by = model
                yield history, "", gr.update(), "", gr.update()
            done = notice(strings.CHAT_ANSWERED_BY.format(model=answered_by) if answered_by else strings.CHAT_NO_TEXT)
        except Exception as exc:  # noqa: BLE001 - a failed reply is shown in the conversation itself
            history[-1] = {"role": "assistant", "content": strings.CHAT_REPLY_FAILED.format(
                message=exc.message if isinstance(exc, ApiError) else error_text(exc, strings.TAB_CHAT))}
            done = error_notice(exc, strings.TAB_CHAT)
            yield history, "", gr.update(), done, gr.update()
        try:
            radio, _ = await self.session_list(session_id)
        except Exception:  # noqa: BLE001 - the reply is shown; the list refreshes on the next action
            radio = gr.update()
        yield history, "", radio, done, await self.memory_panel(session_id)

    async def _stream_reply(self, text: str, session_id: str, model_name: str,
                            history: list[dict[str, Any]]) -> AsyncIterator[str]:
        """Grow the last (assistant) turn of ``history`` piece by piece; yields the model that wrote each piece."""
        reply = ""
        async for piece in self.client.stream_chat([{"role": "user", "content": text}],
                                                   model_name or DEFAULT_MODEL_ALIAS, session_id=session_id):
            reply += piece.text
            history[-1] = {"role": "assistant", "content": reply}
            yield piece.model


def create_chat_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, gr.components.Component]:
    """Build the Chat tab inside the current Blocks context; returns its components by name."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=250, elem_classes="sage-sidebar"):
            gr.Markdown(f"### {strings.CHAT_SESSIONS}")
            new_btn = gr.Button(strings.CHAT_NEW, variant="primary", elem_id="chat-new")
            sessions = gr.Radio(choices=[], label=strings.CHAT_SESSIONS, show_label=False, elem_id="chat-sessions",
                                elem_classes="sage-session-list")
            title_box = gr.Textbox(placeholder=strings.CHAT_RENAME_PLACEHOLDER, show_label=False, elem_id="chat-title")
            with gr.Row():
                rename_btn = gr.Button(strings.CHAT_RENAME, size="sm", elem_id="chat-rename")
                clear_btn = gr.Button(strings.CHAT_CLEAR, size="sm", elem_id="chat-clear")
                delete_btn = gr.Button(strings.CHAT_DELETE, size="sm", variant="stop", elem_id="chat-delete")
        with gr.Column(scale=4):
            with gr.Row(equal_height=True):
                model = gr.Dropdown(choices=[DEFAULT_MODEL_ALIAS], value=DEFAULT_MODEL_ALIAS, label=strings.CHAT_MODEL,
                                    allow_custom_value=True, scale=2, elem_id="chat-model")
                status = gr.HTML(elem_id="chat-status", scale=5)
            chatbot = gr.Chatbot(height=480, placeholder=strings.CHAT_PLACEHOLDER, elem_id="chat-bot",
                                 buttons=["copy"], show_label=False)
            with gr.Row(equal_height=True):
                message = gr.Textbox(placeholder=strings.CHAT_INPUT_PLACEHOLDER, show_label=False, scale=8,
                                     autofocus=True, elem_id="chat-input", lines=1, max_lines=6)
                send_btn = gr.Button(strings.CHAT_SEND, variant="primary", scale=1, min_width=90, elem_id="chat-send")
                stop_btn = gr.Button(strings.CHAT_STOP, scale=1, min_width=80, elem_id="chat-stop")
            comment = gr.Textbox(placeholder=strings.CHAT_FEEDBACK_COMMENT, show_label=False, lines=1,
                                 elem_id="chat-feedback-comment")
            with gr.Accordion(strings.CHAT_MEMORY, open=False, elem_id="chat-memory-panel"):
                memory = gr.HTML(notice(strings.CHAT_MEMORY_NONE), elem_id="chat-memory")
            create_compare_panel(demo, client, tab)

    chat = ChatController(client)
    # One bound method per handler: Gradio keys an event's concurrency group by id(fn), so a handler wired to
    # several events must be the same object on each, as the functions these replaced were.
    rename, send = chat.rename, chat.send
    demo.load(chat.load, [sessions], [sessions, chatbot, status, memory, model])
    tab.select(chat.model_choices, None, [model])  # fine-tunes switched to elsewhere become pickable
    sessions.input(chat.select, [sessions], [chatbot, status, memory])
    new_btn.click(chat.new_session, None, [sessions, chatbot, status, memory])
    rename_btn.click(rename, [sessions, title_box], [sessions, title_box, status])
    title_box.submit(rename, [sessions, title_box], [sessions, title_box, status])
    clear_btn.click(chat.clear, [sessions], [chatbot, status, memory])
    delete_btn.click(chat.delete, [sessions], [sessions, chatbot, status, memory])
    outputs = [chatbot, message, sessions, status, memory]
    sent = send_btn.click(send, [message, sessions, model, chatbot], outputs)
    submitted = message.submit(send, [message, sessions, model, chatbot], outputs)
    stop_btn.click(None, None, None, cancels=[sent, submitted])
    chatbot.like(chat.rate, [sessions, comment], [status, comment])
    return {"sessions": sessions, "chatbot": chatbot, "model": model, "status": status, "memory": memory}
