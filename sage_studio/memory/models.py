"""API shapes of ``/memory/config``, ``/memory/stats`` and a session's memory preview."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sage_studio.memory.factory import BackendInfo
from sage_studio.sessions.models import RecalledDialog


class MemoryConfigInfo(BaseModel):
    """Answer of ``GET /memory/config``."""

    backend: str = Field(description="The backend in use.")
    max_dialogs: int = Field(description="Dialogs of the sliding window replayed verbatim.")
    top_k: int = Field(description="Older dialogs a retrieval backend recalls at most.")
    embedding_model: str | None = Field(description="Embedding model of the vdb backend (None for other backends).")
    max_recall_chars: int = Field(description="Character budget of injected memory.")
    total_sessions: int = Field(description="Sessions stored.")
    available_backends: list[BackendInfo] = Field(description="Every backend and whether this install can run it.")


class SessionMemoryStats(BaseModel):
    """Memory use of one session."""

    session_id: str
    title: str
    dialog_count: int = Field(description="Dialogs stored in the session.")
    window_dialogs: int = Field(description="Dialogs the sliding window replays now.")
    usage_percent: float = Field(description="How full the sliding window is (dialogs / max_dialogs, in %).")
    index: dict[str, Any] | None = Field(
        None, description="Retrieval backends: the session's index (type, size, collection); None for short_term."
    )


class MemoryStats(BaseModel):
    """Answer of ``GET /memory/stats``."""

    backend: str
    max_dialogs: int
    total_sessions: int
    sessions: list[SessionMemoryStats]


class MemoryPreview(BaseModel):
    """What memory would put into the prompt for ``query`` (``GET /sessions/{id}/memory``)."""

    session_id: str
    backend: str
    query: str = Field(description="The question recall was computed for.")
    window: list[int] = Field(description="Positions of the dialogs the sliding window replays.")
    recalled: list[RecalledDialog] = Field(description="Older dialogs recalled for the query, best first.")
    last_recall: list[RecalledDialog] | None = Field(
        None, description="What was recalled into the prompt of the session's last stored turn."
    )
    messages: list[dict[str, Any]] = Field(description="The messages the model would receive for the query.")
