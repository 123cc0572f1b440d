"""Feedback on assistant replies, and the chat-format training rows it turns into.

A rating (thumbs up 1, down -1, with an optional comment) is stored on the assistant message itself, so it lives
and dies with its session. ``feedback_rows`` turns rated replies into chat rows: each one is the reply with the
conversation that led to it, back to the previous assistant answer, so a row never teaches an earlier reply nobody
rated (every assistant turn of a chat row is learned).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sage_studio.sessions.models import Session

MAX_COMMENT_CHARS = 2000


class FeedbackRequest(BaseModel):
    """Body of ``POST /sessions/{id}/feedback``."""

    model_config = ConfigDict(extra="forbid")

    message_index: int = Field(ge=0, description="Position of the assistant message in the session (0 = first).")
    rating: Literal[1, -1] = Field(description="1 (thumbs up) or -1 (thumbs down).")
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS, description="Why, in the user's words.")


class FeedbackDatasetRequest(BaseModel):
    """Body of ``POST /api/datasets/from-feedback``."""

    model_config = ConfigDict(extra="forbid")

    min_rating: Literal[1, -1] = Field(1, description="1: thumbs-up replies only; -1: every rated reply.")
    session_ids: list[str] | None = Field(None, description="Sessions to take rated replies from; default all.")
    name: str | None = Field(None, max_length=120, description="Display name of the dataset.")
    model: str | None = Field(None, description="Model for the token statistics (default: the studio's default).")
    max_length: int = Field(1024, ge=16, le=32768, description="Training max length to compare with.")


def feedback_rows(sessions: list[Session], min_rating: int) -> list[dict]:
    """One chat row per assistant reply rated ``>= min_rating``: ``{"messages": [...]}`` with the user (and
    system) turns since the previous answer, then the reply; replies that only call tools are left out."""
    rows = []
    for session in sessions:
        context: list[dict] = []
        for message in session.messages:
            if message.role == "assistant" and not message.tool_calls:
                if message.rating is not None and message.rating >= min_rating and context:
                    rows.append({"messages": [*context, {"role": "assistant", "content": message.content}]})
                context = []
            elif message.role in ("user", "system") and message.content.strip():
                context.append({"role": message.role, "content": message.content})
    return rows
