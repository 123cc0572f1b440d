"""The small interface every memory backend implements, and the per-session index cache they share.

SQLite (the session store) is the source of truth; a backend's index of a session is a cache derived from the
session's dialogs. Each call passes the session's current dialogs: the cache is extended when only new dialogs were
appended, and rebuilt when anything else changed (clear, delete, another replica's writes). So several gateway
replicas never diverge, and a restarted process rebuilds what it needs on first use.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from sage_studio.memory.config import MemoryConfig
from sage_studio.sessions.models import Dialog, RecalledDialog

IndexT = TypeVar("IndexT")


@dataclass
class Recall:
    """What memory puts into the prompt of a new question."""

    window: list[Dialog] = field(default_factory=list)
    """The last ``max_dialogs`` dialogs, replayed verbatim (oldest first)."""
    recalled: list[RecalledDialog] = field(default_factory=list)
    """Older dialogs (outside the window) the backend found relevant, best first."""


class MemoryBackend(ABC):
    """Recall earlier dialogs of a session for a new question.

    Subclasses set ``name`` and implement ``search``; ``recall`` splits the session into the
    sliding window and the older dialogs a retrieval backend searches. Methods are blocking (models, indexes):
    async callers run them in a worker thread.
    """

    name: ClassVar[str]

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config

    def recall(self, session_id: str, dialogs: list[Dialog], query: str) -> Recall:
        """The window and the recalled older dialogs for ``query``. Blocking: call it from a worker thread."""
        n = self.config.max_dialogs
        window = dialogs[-n:] if n else []
        older = dialogs[: len(dialogs) - len(window)]
        recalled = self.search(session_id, dialogs, older, query) if older and query.strip() else []
        return Recall(window=window, recalled=recalled[: self.config.top_k])

    @abstractmethod
    def search(
        self, session_id: str, dialogs: list[Dialog], candidates: list[Dialog], query: str
    ) -> list[RecalledDialog]:
        """Up to ``top_k`` of ``candidates`` (older dialogs of the session) relevant to ``query``, best first."""

    def index(self, session_id: str, dialogs: list[Dialog]) -> None:
        """Bring the session's index up to date with its dialogs (no-op for index-free backends)."""

    def forget(self, session_id: str) -> None:
        """Drop everything kept for the session (its index and any persisted vectors)."""

    def index_info(self, session_id: str) -> dict[str, Any] | None:
        """Describe the session's index for ``/memory/stats``; ``None`` when the backend keeps none."""
        return None

    def warm_up(self) -> None:
        """Load models ahead of the first request (no-op by default)."""

    def close(self) -> None:
        """Release resources (no-op by default)."""


class IndexedBackend(MemoryBackend, Generic[IndexT]):
    """A backend with one index per session, kept in an LRU cache and synced to the session's dialogs."""

    def __init__(self, config: MemoryConfig) -> None:
        super().__init__(config)
        self._cache: OrderedDict[str, tuple[tuple[int, ...], IndexT]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._session_locks: dict[str, threading.Lock] = {}

    @abstractmethod
    def retrieve(self, index: IndexT, candidates: list[Dialog], query: str) -> list[RecalledDialog]:
        """Up to ``top_k`` of ``candidates`` relevant to ``query`` according to ``index``, best first."""

    @abstractmethod
    def build(self, session_id: str, dialogs: list[Dialog]) -> IndexT:
        """A fresh index of ``dialogs``."""

    def extend(self, session_id: str, index: IndexT, all_dialogs: list[Dialog], new: list[Dialog]) -> IndexT:
        """Add ``new`` dialogs (appended after the indexed ones); rebuilds by default."""
        return self.build(session_id, all_dialogs)

    @abstractmethod
    def describe(self, index: IndexT) -> dict[str, Any]:
        """Index facts for ``/memory/stats`` (type, size, ...)."""

    def _lock_for(self, session_id: str) -> threading.Lock:
        with self._cache_lock:
            return self._session_locks.setdefault(session_id, threading.Lock())

    def search(
        self, session_id: str, dialogs: list[Dialog], candidates: list[Dialog], query: str
    ) -> list[RecalledDialog]:
        # The session lock covers sync + query: an index is never read while another thread extends it.
        with self._lock_for(session_id):
            return self.retrieve(self._sync(session_id, dialogs), candidates, query)

    def index(self, session_id: str, dialogs: list[Dialog]) -> None:
        with self._lock_for(session_id):
            self._sync(session_id, dialogs)

    def _sync(self, session_id: str, dialogs: list[Dialog]) -> IndexT:
        """The session's index, extended or rebuilt to match ``dialogs`` (caller holds the session lock)."""
        keys = tuple(d.key for d in dialogs)
        with self._cache_lock:
            cached = self._cache.get(session_id)
        if cached is not None and cached[0][: len(keys)] == keys:
            # Same dialogs, or a caller holding an older snapshot: the index covers it (retrieval only
            # ever returns the caller's candidates), so keep the newer index as it is.
            return cached[1]
        if cached is not None and keys[: len(cached[0])] == cached[0]:
            index = self.extend(session_id, cached[1], dialogs, dialogs[len(cached[0]) :])
        else:
            index = self.build(session_id, dialogs)
        with self._cache_lock:
            self._cache[session_id] = (keys, index)
            self._cache.move_to_end(session_id)
            while len(self._cache) > self.config.max_cached_sessions:
                self._cache.popitem(last=False)
        return index

    def cached_index(self, session_id: str) -> IndexT | None:
        with self._cache_lock:
            cached = self._cache.get(session_id)
        return None if cached is None else cached[1]

    def forget(self, session_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(session_id, None)
            self._session_locks.pop(session_id, None)

    def index_info(self, session_id: str) -> dict[str, Any] | None:
        index = self.cached_index(session_id)
        if index is None:
            return {"loaded": False}
        return {"loaded": True, **self.describe(index)}

    def cached_sessions(self) -> list[str]:
        with self._cache_lock:
            return list(self._cache)
