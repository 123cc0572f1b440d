"""Long operations as jobs: a request that would hold for minutes answers 202 with an operation id at once, the work
runs in the background, and ``GET /api/operations/{id}`` tells its state, progress and result.

Records live in SQLite (``SAGE_HOME/studio/operations.db``), shared by every gateway replica of the node (a poll
may land on another replica than the one running the work) and kept across restarts. An operation whose process is
gone (the studio restarted under it) reads as failed, with that reason, instead of running forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sage_studio.errors import StudioError
from sage_studio.files import shared_sqlite

logger = logging.getLogger("ray.serve")

OperationState = Literal["queued", "running", "succeeded", "failed"]
Progress = Callable[[float | None, str | None], None]
INTERRUPTED = "interrupted: the studio process running it stopped before it ended"


class Operation(BaseModel):
    """What ``GET /api/operations/{id}`` answers."""

    id: str = Field(description="Operation id, as the 202 answer gave it.")
    kind: str = Field(description="What it does, e.g. 'use-as-backend', 'dataset-validation', 'pipeline-run'.")
    state: OperationState
    progress: float | None = Field(None, description="From 0 to 1 where the work can tell; None where it cannot.")
    message: str | None = Field(None, description="The step it is at, in words.")
    result: Any = Field(None, description="What the synchronous call would have answered, once it succeeded.")
    error: str | None = Field(None, description="Why it failed.")
    error_status: int | None = Field(None, description="The HTTP status the synchronous call would have failed with.")
    request_id: str | None = Field(None, description="The x-request-id of the request that started it.")
    created_at: datetime
    updated_at: datetime


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another node's process: it cannot be checked from here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


_COLUMNS = ("id", "kind", "state", "progress", "message", "result", "error", "error_status", "request_id",
            "owner", "created_at", "updated_at")


class OperationStore:
    """The operations table; every method is a short transaction (call them from a worker thread or an
    ``asyncio.to_thread`` on an event loop)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = shared_sqlite(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, "
            "progress REAL, message TEXT, result TEXT, error TEXT, error_status INTEGER, request_id TEXT, "
            "owner TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def create(self, kind: str, request_id: str | None = None) -> Operation:
        now = time.time()
        op_id = f"op_{uuid.uuid4().hex[:16]}"
        with self._lock:
            self._db.execute(f"INSERT INTO operations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 12)})",
                             (op_id, kind, "queued", 0.0, None, None, None, None, request_id, _owner(), now, now))
        return self.get(op_id)

    def update(self, op_id: str, **fields: Any) -> None:
        """Set ``state``, ``progress``, ``message``, ``result`` (JSON-able), ``error``, ``error_status``."""
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE operations SET {sets} WHERE id = ?", (*fields.values(), op_id))

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM operations WHERE id = ?", (op_id,)).fetchone()
        if row is None:
            return None
        record = dict(zip(_COLUMNS, row))
        owner = record.pop("owner")
        if record["state"] in ("queued", "running") and _owner_gone(owner):
            record.update(state="failed", error=INTERRUPTED)
        record["result"] = None if record["result"] is None else json.loads(record["result"])
        record["created_at"], record["updated_at"] = _utc(record["created_at"]), _utc(record["updated_at"])
        return Operation(**record)


class OperationRunner:
    """Runs operations on the event loop of the process that accepted them, recording each step in the store."""

    def __init__(self, store: OperationStore):
        self.store = store
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def start(self, kind: str, work: Callable[[Progress], Awaitable[Any]], request_id: str | None = None) -> Operation:
        """Record a queued operation and run ``work(progress)`` in the background; its return value (JSON-able)
        is the result. ``progress(fraction, message)`` may be called from any thread. A ``StudioError`` keeps
        its status and message; any other exception is recorded by type and message."""
        operation = self.store.create(kind, request_id)

        def progress(fraction: float | None, message: str | None = None) -> None:
            self.store.update(operation.id, progress=fraction, message=message)

        async def run() -> None:
            await asyncio.to_thread(self.store.update, operation.id, state="running")
            try:
                result = await work(progress)
            except StudioError as exc:
                fields = dict(state="failed", error=exc.message, error_status=exc.status)
            except Exception as exc:  # noqa: BLE001 - the record must say why; the studio goes on
                logger.exception("operation %s (%s) failed", operation.id, kind)
                fields = dict(state="failed", error=f"{type(exc).__name__}: {exc}", error_status=500)
            else:
                fields = dict(state="succeeded", progress=1.0, result=result)
            await asyncio.to_thread(self.store.update, operation.id, **fields)

        task = asyncio.get_running_loop().create_task(run(), name=f"operation-{operation.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return operation

    async def wait(self, op_id: str, timeout_s: float | None = None) -> Operation | None:
        """Wait up to ``timeout_s`` for an operation started here to end; its record (None: not ended yet)."""
        for task in list(self._running):
            if task.get_name() == f"operation-{op_id}":
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout_s)
                except asyncio.TimeoutError:
                    return None
        operation = await asyncio.to_thread(self.store.get, op_id)
        return operation if operation is not None and operation.state in DONE_STATES else None


DONE_STATES = ("succeeded", "failed")


def operation_id_of(body: Any) -> str | None:
    """The operation id of a 202 answer's body (``{"operation_id": ...}``), for clients that follow it."""
    return body.get("operation_id") if isinstance(body, dict) and isinstance(body.get("operation_id"), str) else None
