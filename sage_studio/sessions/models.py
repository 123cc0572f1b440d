"""API shapes of chat sessions (what ``/sessions`` returns and accepts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["user", "assistant", "system", "tool"]

# Titles longer than this are cut (auto-titles) or refused (renames): the UI shows them in a narrow list.
MAX_TITLE_CHARS = 120
DEFAULT_TITLE = "New chat"


class RecalledDialog(BaseModel):
    """An earlier dialog that memory put into the prompt of a later turn."""

    dialog: int = Field(description="Position of the recalled dialog in the session (0 = first).")
    user: str = Field(description="The user turn of the recalled dialog.")
    assistant: str = Field(description="The assistant reply of the recalled dialog.")
    score: float | None = Field(None, description="Backend relevance score (cosine, BM25 or shared entities).")
    reason: str | None = Field(None, description="Why it was recalled, e.g. the matching keywords or entities.")


class TurnMessage(BaseModel):
    """A message as a chat turn brings it: the OpenAI message fields a session keeps."""

    role: Role = Field(description="Who spoke.")
    content: str = Field("", description="What was said (empty for an assistant turn that only calls tools).")
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="Assistant turns: the tool calls the model made, in OpenAI's shape (id, type, function).")
    tool_call_id: str | None = Field(None, description="Tool turns: the id of the call this message answers.")
    request_id: str | None = Field(None, description="The x-request-id of the chat request that stored this turn, "
                                   "as in the gateway's and the engine's log lines.")

    def openai(self) -> dict[str, Any]:
        """The message as the OpenAI API takes it back (fields that are not set are left out)."""
        return self.model_dump(include={"role", "content", "tool_calls", "tool_call_id"}, exclude_none=True)


class Message(TurnMessage):
    """One stored turn of a session."""

    timestamp: datetime = Field(description="When the turn was stored (UTC).")
    recall: list[RecalledDialog] | None = Field(
        None, description="User turns only: older dialogs the memory backend injected into this turn's prompt."
    )
    rating: Literal[1, -1] | None = Field(None, description="Assistant turns: the user's thumbs up (1) or down (-1).")
    comment: str | None = Field(None, description="Assistant turns: the user's comment with the rating.")


class SessionSummary(BaseModel):
    """A session in the session list (without its messages)."""

    id: str = Field(description="Session id, used as 'session_id' on /v1/chat/completions.")
    title: str = Field(description="Title: set by the user, or taken from the first user message.")
    created_at: datetime = Field(description="Creation time (UTC).")
    last_active: datetime = Field(description="Time of the last change: new turn, rename or clear (UTC).")
    message_count: int = Field(description="Number of stored messages.")


class Session(SessionSummary):
    """A session with its messages, oldest first."""

    messages: list[Message] = Field(default_factory=list, description="Stored turns, oldest first.")


class Dialog(BaseModel):
    """One user question and the assistant's reply: the unit memory backends index and recall."""

    index: int = Field(description="Position in the session (0 = first dialog).")
    key: int = Field(description="Database id of the user message: stable while the dialog exists.")
    user: str
    assistant: str


def _clean_title(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("the title must contain at least one visible character")
    if len(value) > MAX_TITLE_CHARS:
        raise ValueError(f"the title is {len(value)} characters long; at most {MAX_TITLE_CHARS} are allowed")
    return value


class CreateSessionRequest(BaseModel):
    """Body of ``POST /sessions`` (optional: an empty body creates an untitled session)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, description="Title; omitted, the first user message names the session.")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return None if value is None else _clean_title(value)


class RenameSessionRequest(BaseModel):
    """Body of ``PATCH /sessions/{id}/title``."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description=f"New title, 1 to {MAX_TITLE_CHARS} characters.")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _clean_title(value)


class CleanupResult(BaseModel):
    """Answer of ``POST /sessions/cleanup``."""

    removed: list[str] = Field(description="Ids of the idle sessions that were deleted.")
    count: int = Field(description="How many sessions were deleted.")
    max_age_minutes: float = Field(description="Idle time beyond which a session was removed.")


def auto_title(first_user_message: str) -> str:
    """Title taken from a session's first user message: one line, cut on a word boundary."""
    text = " ".join(first_user_message.split())
    if not text:
        return DEFAULT_TITLE
    limit = 60
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,.;:") + "…"
