"""Batch jobs of the studio: each a background thread driving ``run_batch``, its record saved as JSON.

Records live in ``SAGE_HOME/pipelines/batches/<job_id>.json`` next to the job's input and output files, so progress
and results survive a restart of the gateway; a job that was running when the gateway stopped is marked failed.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipelines.batch import BatchSummary, run_batch
from pipelines.models import VisualPipeline
from pipelines.operators.base import OperatorEnv
from sage_studio.files import atomic_write

JobStatus = Literal["queued", "running", "completed", "failed"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BatchJob(BaseModel):
    """What ``GET /api/pipelines/batches/{job_id}`` answers."""

    job_id: str
    pipeline_id: str
    pipeline_name: str
    status: JobStatus = "queued"
    input_name: str = Field(description="Name of the uploaded input file (as the client sent it).")
    total: int | None = Field(default=None, description="Input rows.")
    done: int = Field(default=0, description="Rows processed so far (ok or failed).")
    failed: int = Field(default=0, description="Rows that ended in an error.")
    progress: float = Field(default=0.0, description="done / total, from 0 to 1.")
    errors: list[dict[str, Any]] = Field(default_factory=list, description="First failed rows: row number and reason.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Mean of each evaluator node over ok rows.")
    error: str | None = Field(default=None, description="Why the whole job failed, if it did.")
    created_at: str = Field(default_factory=_now)
    finished_at: str | None = None
    duration_s: float = 0.0


class BatchJobManager:
    """Starts, tracks and persists batch jobs for one gateway replica."""

    def __init__(self, root: Path, concurrency: int = 2, num_cpus: float = 0.5):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.num_cpus = num_cpus
        self._lock = threading.Lock()
        self._jobs: dict[str, BatchJob] = {}
        for path in self.root.glob("bj_*.json"):
            try:
                job = BatchJob.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if job.status in ("queued", "running"):
                job.status, job.error, job.finished_at = "failed", "interrupted by a restart of the studio", _now()
                self._save(job)
            self._jobs[job.job_id] = job

    def input_path(self, job_id: str, suffix: str) -> Path:
        return self.root / f"{job_id}.input{suffix}"

    def output_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.output.jsonl"

    def _save(self, job: BatchJob) -> None:
        atomic_write(self.root / f"{job.job_id}.json", job.model_dump_json(indent=2))

    def new_job_id(self) -> str:
        return f"bj_{uuid.uuid4().hex[:12]}"

    def submit(self, job_id: str, pipeline: VisualPipeline, input_file: Path, input_name: str,
               env: OperatorEnv) -> BatchJob:
        """Start a job on an input file already saved at ``input_file`` (named by ``input_path``)."""
        job = BatchJob(job_id=job_id, pipeline_id=pipeline.id, pipeline_name=pipeline.name, input_name=input_name)
        with self._lock:
            self._jobs[job_id] = job
            self._save(job)
        thread = threading.Thread(target=self._run, args=(job, pipeline, input_file, env), daemon=True,
                                  name=f"batch-{job_id}")
        thread.start()
        return job

    def _update(self, job: BatchJob, summary: BatchSummary) -> None:
        with self._lock:
            job.total, job.done, job.failed = summary.total, summary.done, summary.failed
            job.progress = round(summary.done / summary.total, 4) if summary.total else 0.0
            job.errors, job.metrics = list(summary.errors), dict(summary.metrics)
            job.duration_s = round(summary.duration_s, 3)
            self._save(job)

    def _run(self, job: BatchJob, pipeline: VisualPipeline, input_file: Path, env: OperatorEnv) -> None:
        with self._lock:
            job.status = "running"
            self._save(job)
        try:
            summary = run_batch(pipeline, input_file, self.output_path(job.job_id), env,
                                concurrency=self.concurrency, num_cpus=self.num_cpus,
                                on_progress=lambda s: self._update(job, s))
            self._update(job, summary)
            status, error = "completed", None
        except Exception as exc:  # noqa: BLE001 - the job record must say why, the gateway must go on
            status, error = "failed", f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        with self._lock:
            job.status, job.error, job.finished_at = status, error, _now()
            self._save(job)

    def get(self, job_id: str) -> BatchJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def list(self, pipeline_id: str | None = None) -> list[BatchJob]:
        with self._lock:
            jobs = [j.model_copy(deep=True) for j in self._jobs.values()
                    if pipeline_id is None or j.pipeline_id == pipeline_id]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def save_upload(self, job_id: str, suffix: str, stream, max_bytes: int) -> Path:
        """Copy an uploaded file object to the job's input path (server-chosen name), refusing oversize files."""
        path = self.input_path(job_id, suffix)
        written = 0
        with path.open("wb") as out:
            while chunk := stream.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    out.close()
                    path.unlink(missing_ok=True)
                    raise ValueError(f"the input file is larger than {max_bytes // (1024 * 1024)} MiB")
                out.write(chunk)
        return path
