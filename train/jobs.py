"""The fine-tune job manager: a FIFO of tasks, each run as a Ray Job once the cluster can fit it.

Why Ray Jobs: training never runs in the gateway process, a job outlives a restart of the studio, and Ray gives
status (to reconcile with), streamed logs (``tail_job_logs``) and ``stop_job`` for cancel. The manager is the only
writer of task rows; a job writes files in its task folder (``train/task_folder.py``: status.json, metrics.jsonl,
result.json) that the manager folds into the row on each tick. A task whose Ray job is gone (cluster restarted) is
marked failed.

On a cluster with an autoscaler (``ray up``, ``ray start --autoscaling-config``), a task that the running nodes cannot
hold but nodes the autoscaler may launch can, is queued rather than refused; while it waits at the head of the queue
the manager asks the autoscaler for room for it (``train/capacity.py``), and withdraws the request once the task's
workers run (or it ends or is cancelled), so the nodes scale down when idle.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sage_studio.errors import StudioError
from sage_studio.files import atomic_write
from sage_studio.settings import DEFAULT_MODEL_NAME
from train import autoscale, task_folder
from train.capacity import ClusterCapacity, cluster_total, demand, fits_in, free_for_queue, task_bundle, task_bundles
from train.evaluation import MAX_VAL_SIZE, resolve_val_size
from train.store import ACTIVE_STATES, FINAL_STATES, FinetuneStore, TaskRecord, new_id

logger = logging.getLogger(__name__)
# The job's own environment: offline (no hub), and no usage-stats pings from a laptop.
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false"}
SUBMIT_RETRY_S = 300.0


class FinetuneError(StudioError):
    """A request the manager refuses, with the HTTP status to answer."""


class FinetuneRequest(BaseModel):
    """What ``POST /api/finetune/create`` takes. Every value is used as given: recommendations are only shown."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL_NAME, description="Base model: a prepared model name, a checkpoint folder or "
                       "a Hugging Face hub id (org/name[@revision]) in the HF cache.")
    dataset_id: str = Field(description="Id of an uploaded dataset (POST /api/datasets).")
    name: str | None = Field(None, max_length=120, description="Display name; defaults to '<model> on <dataset>'.")
    epochs: int = Field(1, ge=1, le=100, description="Passes over the dataset.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(4, ge=1, le=1024, description="Rows per step on each worker.")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate (AdamW, warm-up then decay).")
    max_length: int = Field(512, ge=16, le=32768, description="Tokens per row; longer rows are truncated.")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank (the serving engine's max_lora_rank must allow it).")
    lora_alpha: int = Field(16, ge=1, le=1024, description="LoRA scaling numerator.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(None, description="Modules to adapt; default q/k/v/o projections.")
    num_workers: int = Field(1, ge=1, le=256, description="Ray Train workers (data-parallel).")
    cpus_per_worker: float = Field(1, gt=0, le=256, description="CPUs each worker reserves (torch threads).")
    use_gpu: bool | None = Field(None, description="One GPU per worker; default: yes when the cluster has GPUs.")
    worker_resources: dict[str, float] | None = Field(
        None,
        description="More Ray resources each worker reserves, on top of its CPUs/GPU: a custom resource to pin the "
                    "workers to a node type (e.g. {'train_gpu': 1}), or 'memory' in bytes.",
    )
    checkpoint_every: int | None = Field(None, ge=1, description="Steps between checkpoints; default a quarter run.")
    max_failures: int = Field(3, ge=0, le=100, description="Worker failures to recover from (from the checkpoint).")
    seed: int = Field(42, description="Seed for the adapter's initialization, the shuffle and the held-out split.")
    val_size: float | None = Field(None, ge=0, le=MAX_VAL_SIZE, description="Fraction of the rows held out for "
                                   "evaluation (never trained on); default 0.1 with >= 50 valid rows, else 0.")
    eval_steps: int | None = Field(None, ge=1, description="Steps between held-out evaluations (and the last "
                                   "step); default: as many as fit in 10% of the training time (up to 4).")

    @field_validator("worker_resources")
    @classmethod
    def _check_worker_resources(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, amount in (value or {}).items():
            if not name.strip():
                raise ValueError("a resource name must not be empty")
            if name in ("CPU", "GPU"):
                raise ValueError(f"ask for {name}s with {'cpus_per_worker' if name == 'CPU' else 'use_gpu'}, "
                                 "not in worker_resources")
            if not amount >= 0 or amount == float("inf"):
                raise ValueError(f"resource '{name}' must be a finite amount >= 0, not {amount}")
        return value or None


def _job_status_value(status: Any) -> str:
    return getattr(status, "value", str(status))


def dashboard_address() -> str:
    """The Ray dashboard (Jobs API) of the cluster this process is connected to, or ``SAGE_RAY_DASHBOARD_URL``."""
    url = os.environ.get("SAGE_RAY_DASHBOARD_URL")
    if not url:
        import ray
        from ray._private.services import get_webui_url_from_internal_kv

        if not ray.is_initialized():
            raise RuntimeError("not connected to Ray and SAGE_RAY_DASHBOARD_URL is not set")
        url = get_webui_url_from_internal_kv()
        if not url:
            raise RuntimeError("this Ray cluster runs without its dashboard, which the Jobs API needs")
    return url if url.startswith("http") else f"http://{url}"


def _gcs_address() -> str | None:
    import ray

    return ray.get_runtime_context().gcs_address if ray.is_initialized() else None


class JobManager:
    """Queue, submit, follow and cancel fine-tunes. ``start()`` runs ``tick()`` every ``interval_s`` in a thread."""

    def __init__(self, store: FinetuneStore, address: str | None = None, interval_s: float = 1.0):
        from ray.job_submission import JobSubmissionClient

        self.store = store
        self.client = JobSubmissionClient(address or dashboard_address())
        self.gcs_address = _gcs_address()
        self.interval_s = interval_s
        self.capacity = ClusterCapacity(f"sage-studio-finetune:{store.home}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._told_waiting: set[str] = set()

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "JobManager":
        self.tick()  # reconcile at once: after a restart the list is right before the first request
        self._thread = threading.Thread(target=self._run, name="finetune-manager", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.capacity.withdraw()  # no studio left to use the nodes it asked for: let them scale down

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick (e.g. dashboard hiccup) must not stop the manager
                logger.exception("fine-tune manager tick failed")

    # ---- requests -------------------------------------------------------------------------------------------
    def create(self, request: FinetuneRequest, dataset, model_path: Path) -> TaskRecord:
        """Record a task and queue it; FinetuneError(400) when the cluster could never run it, StudioError(422)
        when its val_size leaves too few training rows."""
        val_size = resolve_val_size(request.val_size, dataset.rows_valid, request.num_workers)
        total = cluster_total()
        use_gpu = request.use_gpu if request.use_gpu is not None else total.get("GPU", 0) >= 1
        need = demand(request.num_workers, request.cpus_per_worker, use_gpu, request.worker_resources)
        bundle = autoscale.worker_bundle(request.cpus_per_worker, use_gpu, request.worker_resources)
        refusal = self.capacity.refusal(request.num_workers, bundle, need, total)
        if refusal:
            raise FinetuneError(400, refusal)
        task_id = new_id("ft")
        task_dir = self.store.task_dir(task_id)
        task_dir.mkdir(parents=True)
        config = {
            **request.model_dump(), "val_size": val_size, "task_id": task_id, "use_gpu": use_gpu,
            "model_path": str(model_path),
            "dataset_path": str(self.store.dataset_file(dataset.id)), "format": dataset.format,
            "column_mapping": dataset.report.get("column_mapping") or {},
            "dataset_rows": dataset.rows_valid, "output_dir": str(task_dir), "demand": need,
            "worker_bundle": bundle,
        }
        task_folder.write_json(task_dir / task_folder.TASK, config)
        name = request.name or f"{Path(request.model).name} on {dataset.name}"
        self.store.add_task(task_id, name, config)
        self.store.update_task(task_id, expect=("pending",), state="queued")
        return self.store.get_task(task_id)

    def _existing(self, task_id: str) -> TaskRecord:
        task = self.store.get_task(task_id)
        if task is None:
            raise FinetuneError(404, f"No fine-tune task '{task_id}'.")
        return task

    def cancel(self, task_id: str) -> TaskRecord:
        task = self._existing(task_id)
        if task.state in FINAL_STATES:
            raise FinetuneError(409, f"Task {task_id} is already {task.state}.")
        now = time.time()
        reason = "cancelled by the user"
        if self.store.update_task(task_id, expect=("pending", "queued"), state="cancelled", error=reason,
                                  finished_at=now):
            return self.store.get_task(task_id)
        with self._tick_lock:  # not while the scheduler is submitting this very task
            task = self.store.get_task(task_id)
            if task.job_id:
                try:
                    self.client.stop_job(task.job_id)
                except RuntimeError as exc:
                    logger.warning("stop_job %s: %s", task.job_id, exc)
            self.store.update_task(task_id, expect=ACTIVE_STATES, state="cancelled", error=reason, finished_at=now)
            if task.job_id:
                self._save_job_log(task)
        self._log(task_id, "cancelled by the user")
        return self.store.get_task(task_id)

    def delete(self, task_id: str) -> None:
        task = self._existing(task_id)
        if task.state in ACTIVE_STATES:
            raise FinetuneError(409, f"Task {task_id} is {task.state}: cancel it before deleting it.")
        if task.job_id:
            try:
                self.client.delete_job(task.job_id)
            except Exception:  # noqa: BLE001 - Ray may have forgotten it already (cluster restart)
                pass
        self.store.delete_task(task_id)

    # ---- the loop -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Fold job files and Ray job status into task rows, then submit queued tasks that fit (FIFO)."""
        with self._tick_lock:
            for task in self.store.list_tasks(("preparing", "training")):
                self._follow(task)
            self._schedule()

    def _schedule(self) -> None:
        queued = self.store.list_tasks(("queued",))
        waiting = None
        if queued:
            free = free_for_queue(self.store.list_tasks(("preparing",)))
            for task in queued:  # strict FIFO: a big task at the head is never starved by small ones behind it
                need = task.config.get("demand", {})
                if not fits_in(need, free):
                    waiting = task
                    break
                self._submit(task)
                for r, amount in need.items():
                    free[r] = free.get(r, 0) - amount
        covered = self.capacity.request_room(waiting, self.store.list_tasks(("preparing",)))
        if covered and waiting.id not in self._told_waiting:
            self._told_waiting.add(waiting.id)
            self._log(waiting.id, f"waiting for nodes: asked the autoscaler for room for "
                                  f"{len(task_bundles(waiting))} worker(s) of "
                                  f"{autoscale.fmt_resources(task_bundle(waiting))}")

    def _submit(self, task: TaskRecord) -> None:
        job_id = f"sage-ft-{task.id}"
        if not self.store.update_task(task.id, expect=("queued",), state="preparing", job_id=job_id,
                                      started_at=time.time()):
            return  # cancelled meanwhile
        task_dir = self.store.task_dir(task.id)
        env = {**JOB_ENV, "SAGE_HOME": str(self.store.home)}
        # Name this cluster explicitly: the job supervisor resolves "auto" through /tmp/ray, which points at the
        # newest cluster on the machine, not necessarily the one that runs the job.
        address = f" --ray-address {self.gcs_address}" if self.gcs_address else ""
        try:
            self.client.submit_job(
                entrypoint=f"{sys.executable} -m train.run --task-dir {task_dir}{address}",
                submission_id=job_id,
                runtime_env={"env_vars": env},
                entrypoint_num_cpus=0,
                metadata={"sage_task_id": task.id},
            )
            self._log(task.id, f"submitted as Ray job {job_id}")
            if "submit_error" in task.progress:
                self.store.update_task(task.id, progress={})
        except Exception as exc:  # noqa: BLE001
            if "already exists" in str(exc):
                return  # an earlier attempt got through although its answer was lost
            # Usually transient (the dashboard agent of a fresh node is not up yet): back to the queue's head.
            first = task.progress.get("submit_failing_since", time.time())
            if time.time() - first > SUBMIT_RETRY_S:
                self.store.update_task(task.id, state="failed", finished_at=time.time(),
                                       error=f"Could not submit the Ray job for {SUBMIT_RETRY_S:.0f} s: {exc}")
            else:
                self.store.update_task(task.id, expect=("preparing",), state="queued", job_id=None, started_at=None,
                                       progress={**task.progress, "submit_failing_since": first,
                                                 "submit_error": str(exc)[:300]})

    def _follow(self, task: TaskRecord) -> None:
        task_dir = self.store.task_dir(task.id)
        status = task_folder.read_json(task_dir / task_folder.STATUS)
        progress = {k: v for k, v in status.items() if k not in ("state",)} if status else task.progress
        try:
            job_status = _job_status_value(self.client.get_job_status(task.job_id))
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                self._finish(task, "failed", "The Ray job running this task is gone (was the Ray cluster "
                                             "restarted?). Start the fine-tune again.", progress)
                return
            raise
        if job_status in ("PENDING", "RUNNING"):
            state = "training" if status.get("state") == "training" else "preparing"
            self.store.update_task(task.id, expect=("preparing", "training"), state=state, progress=progress)
            return
        result = task_folder.read_json(task_dir / task_folder.RESULT)
        if job_status == "SUCCEEDED" and result.get("state") == "completed":
            progress.update(result)
            self._finish(task, "completed", None, progress)
        elif job_status == "STOPPED":
            self._finish(task, "failed", "The Ray job was stopped outside the studio.", progress)
        else:
            error = result.get("error")
            if not error:
                info = self.client.get_job_info(task.job_id)
                error = f"The Ray job ended with {job_status}: {(info.message or '')[:500]}"
            self._finish(task, "failed", error, progress)

    def _finish(self, task: TaskRecord, state: str, error: str | None, progress: dict) -> None:
        if self.store.update_task(task.id, expect=("preparing", "training"), state=state, error=error,
                                  progress=progress, finished_at=time.time()):
            self._save_job_log(task)

    def _save_job_log(self, task: TaskRecord) -> None:
        try:
            text = self.client.get_job_logs(task.job_id)
        except Exception:  # noqa: BLE001 - the job may be gone; train.log still has the progress
            return
        atomic_write(self.store.task_dir(task.id) / task_folder.JOB_LOG, text)

    def _log(self, task_id: str, line: str) -> None:
        task_dir = self.store.task_dir(task_id)
        if task_dir.is_dir():  # not for a task deleted meanwhile
            task_folder.log(task_dir, line)

    # ---- reads ----------------------------------------------------------------------------------------------
    def metrics(self, task_id: str) -> list[dict]:
        """Loss per step, as ``train.task_folder.read_metrics`` reads it."""
        return task_folder.read_metrics(self.store.task_dir(task_id))

    def logs(self, task_id: str) -> str:
        """The Ray job's log while Ray has it; the saved job.log or the progress log otherwise."""
        task = self.store.get_task(task_id)
        if task and task.job_id:
            try:
                return self.client.get_job_logs(task.job_id)
            except Exception:  # noqa: BLE001 - fall back to the files
                pass
        return task_folder.read_saved_log(self.store.task_dir(task_id))
