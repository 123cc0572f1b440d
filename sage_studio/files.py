"""File helpers every part shares: whole-file replacement that readers never see half-done, and timestamped logs."""

from __future__ import annotations

import os
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
