"""The fine-tune job manager: a FIFO of tasks, each run as a Ray Job once the cluster can fit it.

Why Ray Jobs: training never runs in the gateway process, a job outlives a restart of the studio, and Ray gives
status (to reconcile with), streamed logs (``tail_job_logs``) and ``stop_job`` for cancel. The manager is the only
writer of task rows; a job writes files in its task folder (status.json, metrics.jsonl, result.json) that the
manager folds into the row on each tick. A task whose Ray job is gone (cluster restarted) is marked failed.

On a cluster with an autoscaler (``ray up``, ``ray start --autoscaling-config``), a task that the running nodes cannot
hold but nodes the autoscaler may launch can, is queued rather than refused; while it waits at the head of the queue
the manager asks the autoscaler for room for it (see ``train/autoscale.py``), and withdraws the request once the
task's workers run (or it ends or is cancelled), so the nodes scale down when idle.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sage_studio.settings import DEFAULT_MODEL_NAME
from train import autoscale
from train.store import ACTIVE_STATES, FINAL_STATES, FinetuneStore, TaskRecord, new_id

logger = logging.getLogger(__name__)
# The job's own environment: offline (no hub), and no usage-stats pings from a laptop.
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false"}
SUBMIT_RETRY_S = 300.0
AUTOSCALER_TTL_S = 120.0  # how long the autoscaler's node types (read from its config file) are trusted


class FinetuneError(Exception):
    """A request the manager refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class FinetuneRequest(BaseModel):
    """What ``POST /api/finetune/create`` takes. Every value is used as given: recommendations are only shown."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL_NAME, description="Base model: a prepared model name or a checkpoint folder.")
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
    seed: int = Field(42, description="Seed for the adapter's initialization and the shuffle.")

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


def cluster_free() -> dict[str, float]:
    import ray

    return dict(ray.available_resources())


def cluster_total() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def node_totals() -> list[dict[str, float]]:
    """Each alive node's total resources."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


class JobManager:
    """Queue, submit, follow and cancel fine-tunes. ``start()`` runs ``tick()`` every ``interval_s`` in a thread."""

    def __init__(self, store: FinetuneStore, address: str | None = None, interval_s: float = 1.0):
        from ray.job_submission import JobSubmissionClient

        self.store = store
        self.client = JobSubmissionClient(address or dashboard_address())
        self.gcs_address = _gcs_address()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._autoscaler: tuple[float, autoscale.Autoscaler | None] | None = None  # (when read, what)
        self._nodes = autoscale.NodeRequest(f"sage-studio-finetune:{store.home}")  # what we asked the autoscaler
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
        if self._nodes.bundles:  # no studio left to use the nodes it asked for: let them scale down
            try:
                self._nodes.set([])
            except Exception as exc:  # noqa: BLE001 - Ray may be going away too
                logger.warning("could not withdraw the autoscaler request: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick (e.g. dashboard hiccup) must not stop the manager
                logger.exception("fine-tune manager tick failed")

    # ---- requests -------------------------------------------------------------------------------------------
    def create(self, request: FinetuneRequest, dataset, model_path: Path) -> TaskRecord:
        """Record a task and queue it; FinetuneError(400) when the cluster could never run it."""
        total = cluster_total()
        use_gpu = request.use_gpu if request.use_gpu is not None else total.get("GPU", 0) >= 1
        need = self.demand(request.num_workers, request.cpus_per_worker, use_gpu, request.worker_resources)
        bundle = autoscale.worker_bundle(request.cpus_per_worker, use_gpu, request.worker_resources)
        short = [(r, amount) for r, amount in need.items() if amount > total.get(r, 0)]
        if short:  # more than the running nodes have: only an autoscaler that can launch the rest saves it
            scaler = self.autoscaler()
            if scaler is None:
                resource, amount = short[0]
                fix = ("lower num_workers or cpus_per_worker" if resource in ("CPU", "GPU")
                       else "lower num_workers or worker_resources, or add a node that offers it")
                raise FinetuneError(
                    400,
                    f"This fine-tune needs {amount:g} {resource} ({request.num_workers} worker(s)) but the whole "
                    f"cluster has {total.get(resource, 0):g}: {fix}.",
                )
            room = autoscale.capacity(bundle, node_totals(), scaler)
            if room < request.num_workers:
                raise FinetuneError(
                    400,
                    f"This fine-tune needs {request.num_workers} worker(s) of {autoscale.fmt_resources(bundle)} "
                    f"each, but the running nodes and every node the autoscaler may launch hold only {room}: lower "
                    f"num_workers or what each worker asks for. Node types the autoscaler launches "
                    f"({scaler.config_path}): {scaler.describe()}.",
                )
        task_id = new_id("ft")
        task_dir = self.store.task_dir(task_id)
        task_dir.mkdir(parents=True)
        config = {
            **request.model_dump(), "task_id": task_id, "use_gpu": use_gpu, "model_path": str(model_path),
            "dataset_path": str(self.store.dataset_file(dataset.id)), "format": dataset.format,
            "dataset_rows": dataset.rows_valid, "output_dir": str(task_dir), "demand": need,
            "worker_bundle": bundle,
        }
        (task_dir / "task.json").write_text(json.dumps(config, indent=1))
        name = request.name or f"{Path(request.model).name} on {dataset.name}"
        self.store.add_task(task_id, name, config)
        self.store.update_task(task_id, expect=("pending",), state="queued")
        return self.store.get_task(task_id)

    @staticmethod
    def demand(num_workers: int, cpus_per_worker: float, use_gpu: bool,
               worker_resources: dict[str, float] | None = None) -> dict[str, float]:
        need = {"CPU": num_workers * cpus_per_worker}
        if use_gpu:
            need["GPU"] = float(num_workers)
        for resource, amount in (worker_resources or {}).items():
            if amount > 0:
                need[resource] = num_workers * amount
        return need

    def autoscaler(self) -> autoscale.Autoscaler | None:
        """This cluster's autoscaler (its launchable node types), None on a fixed cluster; re-read every few
        minutes. A lookup that fails counts as no autoscaler until the next one."""
        now = time.monotonic()
        if self._autoscaler is None or now - self._autoscaler[0] > AUTOSCALER_TTL_S:
            try:
                found = autoscale.find_autoscaler()
            except Exception as exc:  # noqa: BLE001 - unreadable config, head busy: behave as a fixed cluster
                logger.warning("could not read the autoscaler's node types: %s", exc)
                found = None
            self._autoscaler = (now, found)
        return self._autoscaler[1]

    def cancel(self, task_id: str) -> TaskRecord:
        task = self.store.get_task(task_id)
        if task is None:
            raise FinetuneError(404, f"No fine-tune task '{task_id}'.")
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
        task = self.store.get_task(task_id)
        if task is None:
            raise FinetuneError(404, f"No fine-tune task '{task_id}'.")
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
        preparing = self.store.list_tasks(("preparing",))
        waiting = None
        if queued:
            free = cluster_free()
            # Jobs we submitted that have not started their workers yet hold nothing in Ray's books: count them.
            for task in preparing:
                for resource, amount in task.config.get("demand", {}).items():
                    free[resource] = free.get(resource, 0) - amount
            for task in queued:  # strict FIFO: a big task at the head is never starved by small ones behind it
                need = task.config.get("demand", {})
                if any(free.get(r, 0) + 1e-9 < amount for r, amount in need.items()):
                    waiting = task
                    break
                self._submit(task)
                for r, amount in need.items():
                    free[r] = free.get(r, 0) - amount
            preparing = self.store.list_tasks(("preparing",))
        self._ask_autoscaler(waiting, bool(preparing))

    def _ask_autoscaler(self, waiting: TaskRecord | None, starting: bool) -> None:
        """Ask the autoscaler for room for the submitted tasks whose workers have not started plus the one at the
        head of the queue, when a node it can launch would take that task's workers. The request stands while a submitted task has not started
        its workers (a fresh node must not be scaled down under it) and is withdrawn once nothing waits."""
        wanted = self._nodes.bundles if starting else []
        if waiting is not None:
            scaler = self.autoscaler()
            bundle = _bundle(waiting)
            if scaler is not None and any(autoscale.fits(bundle, t.resources) for t in scaler.node_types):
                # Not the training tasks: Ray Train's controller asks the same coordinator for its own workers once
                # it runs, and the coordinator adds requests up (asking again would launch their nodes twice).
                wanted = [b for task in self.store.list_tasks(("preparing",)) for b in _bundles(task)]
                wanted += _bundles(waiting)
                if waiting.id not in self._told_waiting:
                    self._told_waiting.add(waiting.id)
                    self._log(waiting.id, f"waiting for nodes: asked the autoscaler for room for "
                                          f"{len(_bundles(waiting))} worker(s) of {autoscale.fmt_resources(bundle)}")
        if self._nodes.set(wanted):
            logger.info("asked the autoscaler for room for %s", wanted or "nothing (request withdrawn)")

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
        status = _read_json(task_dir / "status.json")
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
        result = _read_json(task_dir / "result.json")
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
        (self.store.task_dir(task.id) / "job.log").write_text(text)

    def _log(self, task_id: str, line: str) -> None:
        task_dir = self.store.task_dir(task_id)
        if task_dir.is_dir():
            with open(task_dir / "train.log", "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    # ---- reads ----------------------------------------------------------------------------------------------
    def metrics(self, task_id: str) -> list[dict]:
        """Loss per step (the last report of a step wins: steps redone after a resume replace the old ones)."""
        by_step: dict[int, dict] = {}
        path = self.store.task_dir(task_id) / "metrics.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue  # a line being written right now
                by_step[m["step"]] = {k: m.get(k) for k in ("step", "epoch", "loss", "lr", "time", "resumed_from")}
        return [by_step[s] for s in sorted(by_step)]

    def logs(self, task_id: str) -> str:
        """The Ray job's log while Ray has it; the saved job.log or the progress log otherwise."""
        task = self.store.get_task(task_id)
        if task and task.job_id:
            try:
                return self.client.get_job_logs(task.job_id)
            except Exception:  # noqa: BLE001 - fall back to the files
                pass
        for name in ("job.log", "train.log"):
            path = self.store.task_dir(task_id) / name
            if path.is_file():
                return path.read_text(errors="replace")
        return ""


def _bundle(task: TaskRecord) -> dict[str, float]:
    """One worker's resources (tasks recorded before ``worker_bundle`` existed: from the request's fields)."""
    c = task.config
    if "worker_bundle" in c:
        return c["worker_bundle"]
    return autoscale.worker_bundle(c.get("cpus_per_worker", 1), bool(c.get("use_gpu")), c.get("worker_resources"))


def _bundles(task: TaskRecord) -> list[dict[str, float]]:
    return [_bundle(task)] * int(task.config.get("num_workers", 1))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
