"""Saved pipelines: one JSON file per pipeline under ``SAGE_HOME/pipelines/``, written atomically.

File names come from server-chosen ids (``pl_<hex>``), never from user input, so nothing a client sends can name
a path. A crash mid-write leaves the previous version: files are written to a temporary file and renamed.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pipelines.models import VisualPipeline
from sage_studio.files import atomic_write

_ID = re.compile(r"^pl_[0-9a-f]{12}$")


class PipelineNotFound(KeyError):
    """No saved pipeline has that id."""

    def __init__(self, pipeline_id: str):
        super().__init__(pipeline_id)
        self.pipeline_id = pipeline_id

    def __str__(self) -> str:
        return f"No pipeline with id '{self.pipeline_id}'."


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")




class PipelineStore:
    """CRUD over the pipeline folder. Safe for the threads of one process (the gateway replica)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, pipeline_id: str) -> Path:
        if not _ID.match(pipeline_id):
            raise PipelineNotFound(pipeline_id)
        return self.root / f"{pipeline_id}.json"

    def create(self, pipeline: VisualPipeline) -> VisualPipeline:
        """Save a new pipeline under a fresh id (any id it carries is replaced)."""
        now = _now()
        saved = pipeline.model_copy(update={"id": f"pl_{uuid.uuid4().hex[:12]}", "created_at": now, "updated_at": now})
        with self._lock:
            atomic_write(self._path(saved.id), saved.model_dump_json(indent=2))
        return saved

    def get(self, pipeline_id: str) -> VisualPipeline:
        path = self._path(pipeline_id)
        try:
            return VisualPipeline.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineNotFound(pipeline_id) from None

    def update(self, pipeline_id: str, pipeline: VisualPipeline) -> VisualPipeline:
        """Replace a saved pipeline's content; its id and creation time are kept."""
        with self._lock:
            current = self.get(pipeline_id)
            saved = pipeline.model_copy(
                update={"id": pipeline_id, "created_at": current.created_at, "updated_at": _now()}
            )
            atomic_write(self._path(pipeline_id), saved.model_dump_json(indent=2))
        return saved

    def delete(self, pipeline_id: str) -> None:
        with self._lock:
            try:
                self._path(pipeline_id).unlink()
            except FileNotFoundError:
                raise PipelineNotFound(pipeline_id) from None

    def list(self) -> list[VisualPipeline]:
        """Every saved pipeline, most recently changed first; unreadable files are skipped, not fatal."""
        pipelines = []
        for path in self.root.glob("pl_*.json"):
            try:
                pipelines.append(VisualPipeline.model_validate(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
        return sorted(pipelines, key=lambda p: p.updated_at, reverse=True)
