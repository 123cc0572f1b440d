"""The chat route's view of sessions and memory: build the prompt of a session's new turn, record finished turns.

``ChatMemory`` is what the gateway puts on ``app.state.chat_memory``. Its blocking work (SQLite, embeddings,
indexes) runs in worker threads, so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sage_studio.memory.base import IndexedBackend, MemoryBackend, Recall
from sage_studio.memory.config import MemoryConfig
from sage_studio.memory.factory import available_backends, create_backend
from sage_studio.memory.models import MemoryConfigInfo, MemoryPreview, MemoryStats, SessionMemoryStats
from sage_studio.sessions.models import RecalledDialog, SessionSummary, TurnMessage
from sage_studio.sessions.store import SessionNotFound, SessionStore

logger = logging.getLogger(__name__)

RECALL_HEADER = "Relevant earlier conversation from this session (recalled from memory):"


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string, or a list of parts of which the text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else getattr(p, "text", "") or "" for p in content]
        return "\n".join(p for p in parts if p)
    return str(content)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def inject(messages: list[dict[str, Any]], recall: Recall, max_chars: int) -> list[dict[str, Any]]:
    """``messages`` with the recalled dialogs added to the system prompt and the window replayed before them.

    The window is replayed only when the client sent no history of its own (no assistant turn): a client that
    resends the whole conversation already has it. Recalled dialogs take the budget first; the window gets the
    rest, newest dialogs first.
    """
    budget = max_chars
    per_dialog = max(50, max_chars // 2)
    recall_lines: list[str] = []
    for i, item in enumerate(recall.recalled, 1):
        user, assistant = _clip(item.user, per_dialog // 2), _clip(item.assistant, per_dialog // 2)
        line = f"[{i}] User: {user}\n    Assistant: {assistant}"
        if len(line) > budget:
            break
        recall_lines.append(line)
        budget -= len(line)
    has_history = any(m.get("role") == "assistant" for m in messages)
    replay: list[dict[str, Any]] = []
    if not has_history:
        for dialog in reversed(recall.window):
            user, assistant = _clip(dialog.user, per_dialog // 2), _clip(dialog.assistant, per_dialog // 2)
            if len(user) + len(assistant) > budget:
                break
            replay[:0] = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            budget -= len(user) + len(assistant)

    out = [dict(m) for m in messages]
    first_turn = next((i for i, m in enumerate(out) if m.get("role") != "system"), len(out))
    out[first_turn:first_turn] = replay
    if recall_lines:
        text = RECALL_HEADER + "\n" + "\n".join(recall_lines)
        if first_turn > 0 and isinstance(out[0].get("content"), str):
            # Merge into the client's system prompt: several chat templates reject a second system message.
            out[0]["content"] = out[0]["content"].rstrip() + "\n\n" + text
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


class ChatMemory:
    """Sessions (SQLite) + the configured memory backend, behind the two calls the chat route makes."""

    def __init__(self, store: SessionStore, backend: MemoryBackend, config: MemoryConfig) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        # Recall computed by build_messages, kept until record_turn stores it with the user turn.
        self._pending: OrderedDict[tuple[str, str], list[RecalledDialog]] = OrderedDict()

    async def _recall(self, session_id: str, query: str) -> Recall:
        dialogs = await asyncio.to_thread(self.store.dialogs, session_id)
        return await asyncio.to_thread(self.backend.recall, session_id, dialogs, query)

    async def build_messages(self, session_id: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages to send to the model for a session's new turn. ``KeyError`` for an unknown session."""
        query = next((message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        recall = await self._recall(session_id, query)
        self._pending[(session_id, query)] = recall.recalled
        while len(self._pending) > 1024:  # turns whose reply failed never reach record_turn
            self._pending.popitem(last=False)
        return inject(messages, recall, self.config.max_recall_chars)

    async def record_turn(
        self, session_id: str, inputs: str | list[TurnMessage], reply: str | TurnMessage, query: str | None = None
    ) -> None:
        """Store what a chat request added and its reply (one transaction), then bring the session's index up to date.

        ``inputs`` is the request's new user text, or its new messages (a user question, or the results of the
        tools the last reply called); ``query`` is the user text memory recalled for (default: the user input).
        A session deleted while its reply was being generated is not recreated: the turn is dropped with a warning.
        """
        if isinstance(inputs, str):
            inputs = [TurnMessage(role="user", content=inputs)]
        if isinstance(reply, str):
            reply = TurnMessage(role="assistant", content=reply)
        if query is None:
            query = next((m.content for m in reversed(inputs) if m.role == "user"), "")
        recalled = self._pending.pop((session_id, query), None)
        if not any(m.role == "user" for m in inputs):
            recalled = None  # a tool round: the recall was already stored with the question it answers
        try:
            await asyncio.to_thread(self.store.append_turn, session_id, [*inputs, reply], recalled)
        except SessionNotFound:
            logger.warning("session %s was deleted during its request; the turn is not stored", session_id)
            return
        if isinstance(self.backend, IndexedBackend):
            dialogs = await asyncio.to_thread(self.store.dialogs, session_id)
            await asyncio.to_thread(self.backend.index, session_id, dialogs)

    async def preview(self, session_id: str, query: str | None) -> MemoryPreview:
        """What memory would inject for ``query`` (default: the session's last user turn)."""
        session = await asyncio.to_thread(self.store.get, session_id)
        last_user = next((m for m in reversed(session.messages) if m.role == "user"), None)
        if query is None:
            query = last_user.content if last_user else ""
        recall = await self._recall(session_id, query)
        return MemoryPreview(
            session_id=session_id,
            backend=self.config.backend,
            query=query,
            window=[d.index for d in recall.window],
            recalled=recall.recalled,
            last_recall=last_user.recall if last_user else None,
            messages=inject([{"role": "user", "content": query}], recall, self.config.max_recall_chars),
        )

    async def clear(self, session_id: str) -> SessionSummary:
        summary = await asyncio.to_thread(self.store.clear, session_id)
        await asyncio.to_thread(self.backend.forget, session_id)
        return summary

    async def delete(self, session_id: str) -> None:
        await asyncio.to_thread(self.store.delete, session_id)
        await asyncio.to_thread(self.backend.forget, session_id)

    async def cleanup(self, max_idle_s: float) -> list[str]:
        """Delete idle sessions and free their memory indexes."""
        removed = await asyncio.to_thread(self.store.cleanup, max_idle_s)
        for session_id in removed:
            await asyncio.to_thread(self.backend.forget, session_id)
        return removed

    def _session_stats(self, summary: SessionSummary) -> SessionMemoryStats:
        dialogs = summary.message_count // 2  # turns are always stored in pairs
        window = min(dialogs, self.config.max_dialogs)
        return SessionMemoryStats(
            session_id=summary.id,
            title=summary.title,
            dialog_count=dialogs,
            window_dialogs=window,
            usage_percent=round(100.0 * window / self.config.max_dialogs, 1) if self.config.max_dialogs else 0.0,
            index=self.backend.index_info(summary.id),
        )

    async def stats(self, session_id: str | None = None) -> MemoryStats:
        """Per-session memory use; one session only when ``session_id`` is given (``KeyError`` if unknown)."""

        def collect() -> MemoryStats:
            summaries = self.store.list_sessions()
            total = len(summaries)
            if session_id is not None:
                summaries = [s for s in summaries if s.id == session_id]
                if not summaries:
                    raise SessionNotFound(session_id)
            return MemoryStats(
                backend=self.config.backend,
                max_dialogs=self.config.max_dialogs,
                total_sessions=total,
                sessions=[self._session_stats(s) for s in summaries],
            )

        return await asyncio.to_thread(collect)

    async def config_info(self) -> MemoryConfigInfo:
        total = len(await asyncio.to_thread(self.store.session_ids))
        return MemoryConfigInfo(
            backend=self.config.backend,
            max_dialogs=self.config.max_dialogs,
            top_k=self.config.top_k,
            embedding_model=self.config.embedding_model if self.config.backend == "vdb" else None,
            max_recall_chars=self.config.max_recall_chars,
            total_sessions=total,
            available_backends=available_backends(),
        )

    def close(self) -> None:
        self.backend.close()
        self.store.close()


def open_chat_memory(sage_home: Path, config: MemoryConfig | None = None, warm_up: bool = True) -> ChatMemory:
    """Sessions in ``sage_home/sessions.db``, backend data under ``sage_home/memory``. Blocking (loads models)."""
    config = config or MemoryConfig()
    store = SessionStore(Path(sage_home) / "sessions.db")
    backend = create_backend(config, Path(sage_home) / "memory")
    if warm_up:
        backend.warm_up()
    return ChatMemory(store, backend, config)
