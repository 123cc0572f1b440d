"""``short_term``: the sliding window of the last N dialogs, nothing older."""

from __future__ import annotations

from sage_studio.memory.base import MemoryBackend
from sage_studio.sessions.models import Dialog, RecalledDialog


class ShortTermMemory(MemoryBackend):
    """Replays the last ``max_dialogs`` dialogs; anything older is forgotten (as in the original studio)."""

    name = "short_term"

    def search(
        self, session_id: str, dialogs: list[Dialog], candidates: list[Dialog], query: str
    ) -> list[RecalledDialog]:
        return []
