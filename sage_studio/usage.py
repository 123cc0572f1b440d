"""Token accounting: one row per answered model request (prompt and completion tokens, as the engine counted them),
summed per session and per API key for ``GET /api/usage``.

A small SQLite ledger (``SAGE_HOME/studio/usage.db``) shared by the gateway replicas of a node. API keys are never
stored: a key is known by a short fingerprint of it (``key_id``), the same one for every request that sent it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from sage_studio.files import shared_sqlite

ANONYMOUS = "anonymous"


def key_id(authorization: str | None) -> str:
    """The fingerprint of the bearer token of an ``Authorization`` header; ``anonymous`` without one."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return ANONYMOUS
    return "key-" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]


@dataclass(frozen=True)
class UsageRecord:
    """The usage of one answer."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    route: str
    key_id: str = ANONYMOUS
    session_id: str | None = None
    request_id: str | None = None


class UsageTotals(BaseModel):
    requests: int = Field(description="Answered model requests.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SessionUsage(UsageTotals):
    session_id: str


class KeyUsage(UsageTotals):
    key_id: str = Field(description="Fingerprint of the API key ('anonymous': requests without a key).")


class UsageReport(BaseModel):
    """What ``GET /api/usage`` answers."""

    since: float = Field(description="Start of the period (Unix seconds); 0: since the ledger began.")
    until: float = Field(description="When the report was made (Unix seconds).")
    total: UsageTotals
    sessions: list[SessionUsage] = Field(description="Per studio session (requests with a session_id), by tokens.")
    api_keys: list[KeyUsage] = Field(description="Per API key, by tokens.")


_SUMS = "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"


def _totals(row: tuple) -> dict:
    requests, prompt, completion = row
    return {"requests": requests, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class UsageLedger:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = shared_sqlite(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS usage (at REAL NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, "
            "key_id TEXT NOT NULL, session_id TEXT, request_id TEXT, prompt_tokens INTEGER NOT NULL, "
            "completion_tokens INTEGER NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_at ON usage (at)")

    def close(self) -> None:
        self._db.close()

    def record(self, usage: UsageRecord, at: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time() if at is None else at, usage.route, usage.model, usage.key_id, usage.session_id,
                 usage.request_id, usage.prompt_tokens, usage.completion_tokens),
            )

    def report(self, since: float = 0.0) -> UsageReport:
        """Sums over the answers recorded at or after ``since`` (Unix seconds)."""
        until = time.time()
        with self._lock:
            total = self._db.execute(f"SELECT {_SUMS} FROM usage WHERE at >= ?", (since,)).fetchone()
            sessions = self._db.execute(
                f"SELECT session_id, {_SUMS} FROM usage WHERE at >= ? AND session_id IS NOT NULL "
                "GROUP BY session_id ORDER BY SUM(prompt_tokens + completion_tokens) DESC", (since,)).fetchall()
            keys = self._db.execute(
                f"SELECT key_id, {_SUMS} FROM usage WHERE at >= ? GROUP BY key_id "
                "ORDER BY SUM(prompt_tokens + completion_tokens) DESC", (since,)).fetchall()
        return UsageReport(
            since=since, until=until, total=UsageTotals(**_totals(total)),
            sessions=[SessionUsage(session_id=row[0], **_totals(row[1:])) for row in sessions],
            api_keys=[KeyUsage(key_id=row[0], **_totals(row[1:])) for row in keys],
        )
