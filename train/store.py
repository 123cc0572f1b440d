"""Persistence of datasets and fine-tune tasks: one SQLite file (``SAGE_HOME/finetune.db``) plus their folders.

Datasets live in ``SAGE_HOME/datasets/<id>/data.jsonl`` and tasks in ``SAGE_HOME/studio_finetune/<id>/``; ids
and file names are always chosen here, never taken from the client, so an upload cannot write anywhere else.
Only the gateway's job manager writes task rows; training jobs write files in their task folder.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field

# How a stored dataset's data file (or folder) is named, by file format: train.uploads writes one per dataset.
DATA_FILES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "csv": "data.csv", "tsv": "data.tsv",
              "arrow": "data.arrow", "hf-datasets": "data.hf"}

ACTIVE_STATES = ("pending", "queued", "preparing", "training")
FINAL_STATES = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, filename TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    format TEXT, rows_valid INTEGER NOT NULL, report TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, config TEXT NOT NULL, job_id TEXT,
    error TEXT, progress TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    started_at REAL, finished_at REAL);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, created_at);
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class DatasetRecord(BaseModel):
    """A stored, validated dataset."""

    id: str
    name: str = Field(description="Display name (from the upload or the request).")
    filename: str = Field(description="The client's file name, for display only; never used as a path.")
    size_bytes: int
    format: str | None
    rows_valid: int
    report: dict[str, Any] = Field(description="The validation report (see train.validation.ValidationReport).")
    created_at: float


class TaskRecord(BaseModel):
    """One fine-tune task as the API shows it."""

    id: str
    name: str
    state: str = Field(description="pending, queued, preparing, training, completed, failed or cancelled.")
    config: dict[str, Any] = Field(description="The validated request (see train.jobs.FinetuneRequest).")
    job_id: str | None = Field(None, description="The Ray job running it, once submitted.")
    error: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict, description="step, total_steps, epoch, loss, eta_s...")
    evaluation: dict[str, Any] | None = Field(
        None, description="Once completed with held-out rows: {'base': {'loss', 'perplexity'}, 'fine_tuned': "
                          "{'loss', 'perplexity'}, 'rows': N}, computed once after training.")
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None


class FinetuneStore:
    """SQLite rows for datasets and tasks; safe to share between threads of one process and between processes."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.datasets_dir = self.home / "datasets"
        self.tasks_dir = self.home / "studio_finetune"
        self.datasets_dir.mkdir(parents=True, exist_ok=True)
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "finetune.db"
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: simple, thread-safe, and WAL lets readers run beside the writer.
        db = sqlite3.connect(self.db_path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    # ---- datasets -------------------------------------------------------------------------------------------
    def dataset_dir(self, dataset_id: str) -> Path:
        return self.datasets_dir / dataset_id

    def dataset_file(self, dataset_id: str) -> Path:
        """The dataset's stored data: ``data.jsonl``, ``data.parquet``, ``data.csv``, ``data.tsv``, ``data.arrow``
        or the ``data.hf`` folder (train.readers.DATA_FILES), whichever its upload became."""
        folder = self.dataset_dir(dataset_id)
        for name in DATA_FILES.values():
            if (folder / name).exists():
                return folder / name
        return folder / DATA_FILES["jsonl"]

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        with self._connect() as db:
            db.execute(
                "INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?)",
                (record.id, record.name, record.filename, record.size_bytes, record.format, record.rows_valid,
                 json.dumps(record.report), record.created_at),
            )
        return record

    def update_dataset_report(self, dataset_id: str, report: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE datasets SET report=?, format=?, rows_valid=? WHERE id=?",
                (json.dumps(report), report.get("format"), report.get("rows_valid", 0), dataset_id),
            )

    @staticmethod
    def _dataset(row: sqlite3.Row) -> DatasetRecord:
        data = dict(row)
        data["report"] = json.loads(data["report"])
        return DatasetRecord(**data)

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM datasets WHERE id=?", (dataset_id,)).fetchone()
        return self._dataset(row) if row else None

    def list_datasets(self) -> list[DatasetRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM datasets ORDER BY created_at DESC").fetchall()
        return [self._dataset(r) for r in rows]

    def delete_dataset(self, dataset_id: str) -> bool:
        with self._connect() as db:
            deleted = db.execute("DELETE FROM datasets WHERE id=?", (dataset_id,)).rowcount
        shutil.rmtree(self.dataset_dir(dataset_id), ignore_errors=True)
        return bool(deleted)

    # ---- tasks ----------------------------------------------------------------------------------------------
    def task_dir(self, task_id: str) -> Path:
        return self.tasks_dir / task_id

    def add_task(self, task_id: str, name: str, config: dict[str, Any]) -> TaskRecord:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO tasks (id, name, state, config, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                (task_id, name, "pending", json.dumps(config), now, now),
            )
        return self.get_task(task_id)

    @staticmethod
    def _task(row: sqlite3.Row) -> TaskRecord:
        data = dict(row)
        data["config"] = json.loads(data["config"])
        data["progress"] = json.loads(data["progress"] or "{}")
        data["evaluation"] = data["progress"].get("evaluation")  # folded in from the job's result.json
        return TaskRecord(**data)

    def get_task(self, task_id: str) -> TaskRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
        return self._task(row) if row else None

    def list_tasks(self, states: tuple[str, ...] | None = None) -> list[TaskRecord]:
        """Tasks, newest first (or oldest first when filtering by state: the queue order)."""
        with self._connect() as db:
            if states:
                marks = ",".join("?" * len(states))
                rows = db.execute(
                    f"SELECT * FROM tasks WHERE state IN ({marks}) ORDER BY created_at", states
                ).fetchall()
            else:
                rows = db.execute("SELECT * FROM tasks ORDER BY created_at DESC").fetchall()
        return [self._task(r) for r in rows]

    def update_task(self, task_id: str, *, expect: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Set fields of a task; with ``expect``, only if it is still in one of those states (compare-and-set,
        so a cancel racing with the scheduler never gets overwritten)."""
        fields["updated_at"] = time.time()
        for key in ("config", "progress"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k}=?" for k in fields)
        sql, args = f"UPDATE tasks SET {sets} WHERE id=?", [*fields.values(), task_id]
        if expect:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args += list(expect)
        with self._lock, self._connect() as db:
            return db.execute(sql, args).rowcount == 1

    def delete_task(self, task_id: str) -> bool:
        with self._connect() as db:
            deleted = db.execute("DELETE FROM tasks WHERE id=?", (task_id,)).rowcount
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)
        return bool(deleted)
