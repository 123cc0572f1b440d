"""What a chat request adds to its session: the new messages it brings and the reply, whole or streamed.

The gateway passes OpenAI bodies through untouched; this module only reads them, to store a session's turn with the
fields a later request can send back (``tool_calls`` on the assistant's reply, ``tool_call_id`` on tool results).
"""

from __future__ import annotations

import json
from typing import Any

from sage_studio.memory.chat_memory import message_text
from sage_studio.sessions.models import TurnMessage

# The roles a client adds to a conversation; system prompts are the client's framing and are not stored.
STORED_INPUT_ROLES = ("user", "tool")


def new_messages(messages: list[dict[str, Any]]) -> list[TurnMessage]:
    """The messages after the conversation's last assistant reply: the user question, or the tool results."""
    last_reply = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    return [TurnMessage(role=m["role"], content=message_text(m.get("content")), tool_call_id=m.get("tool_call_id"))
            for m in messages[last_reply + 1:] if m.get("role") in STORED_INPUT_ROLES]


def last_user_text(messages: list[dict[str, Any]]) -> str:
    return next((message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


def reply_from_body(body: dict[str, Any]) -> TurnMessage:
    """The assistant message of a whole (non-streamed) chat completion."""
    message = ((body.get("choices") or [{}])[0].get("message")) or {}
    return TurnMessage(role="assistant", content=message_text(message.get("content")),
                       tool_calls=message.get("tool_calls") or None)


class StreamedReply:
    """Puts a streamed reply back together from its chunks: content pieces, and tool calls whose arguments arrive
    in fragments (the first fragment of a call carries its index, id and function name)."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, event: str) -> None:
        data = event.removeprefix("data: ").strip()
        if not data.startswith("{"):
            return
        delta = ((json.loads(data).get("choices") or [{}])[0].get("delta")) or {}
        self._content.append(delta.get("content") or "")
        for part in delta.get("tool_calls") or []:
            call = self._calls.setdefault(part.get("index", 0), {"id": None, "type": "function",
                                                                  "function": {"name": "", "arguments": ""}})
            call["id"] = part.get("id") or call["id"]
            function = part.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""

    def message(self) -> TurnMessage:
        calls = [self._calls[i] for i in sorted(self._calls)]
        return TurnMessage(role="assistant", content="".join(self._content), tool_calls=calls or None)
