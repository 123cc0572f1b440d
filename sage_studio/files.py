"""File helpers every part shares: whole-file replacement that readers never see half-done, timestamped logs, and
the small SQLite files several processes share."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never half of it.

    The temporary file comes from ``tempfile.mkstemp``, so it is owner-only (0600) from its first byte and
    ``os.replace`` keeps that mode: key files written this way are never readable by others, even briefly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_log(path: Path, line: str) -> None:
    """Append ``line`` to a human-readable log (e.g. a fine-tune's ``train.log``), prefixed with the local time."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def shared_sqlite(path: Path | str) -> sqlite3.Connection:
    """An autocommit SQLite connection in WAL mode, usable from any thread (callers serialize with a lock of their
    own): several gateway replicas of a node write the same file, and WAL lets readers go on while one writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db
