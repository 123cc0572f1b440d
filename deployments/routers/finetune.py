"""``/api/finetune``: create, list, follow, cancel and delete fine-tunes, and the docs sample dataset
(a thin layer over ``train.jobs`` and ``train.datasets``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from deployments.operations_http import ACCEPTED_RESPONSE, answer_from_thread
from deployments.services import Datasets, Jobs, Store, get_services
from sage_studio.model_store import resolve_model_path
from sage_studio.settings import DEFAULT_MODEL_NAME
from train.datasets import write_docs_sample
from train.jobs import FinetuneRequest, JobManager
from train.store import FINAL_STATES, DatasetRecord, FinetuneStore, TaskRecord

router = APIRouter(prefix="/api/finetune", tags=["finetune"])


def _task(store: FinetuneStore, task_id: str) -> TaskRecord:
    task = store.get_task(task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No fine-tune task '{task_id}'.")
    return task


@router.post("/create", status_code=status.HTTP_201_CREATED, response_model=TaskRecord)
async def create(body: FinetuneRequest, manager: Jobs, store: Store) -> TaskRecord:
    """Queue a LoRA fine-tune; it starts as soon as the cluster has the CPUs/GPUs it asks for."""
    dataset = store.get_dataset(body.dataset_id)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No dataset '{body.dataset_id}': upload it first.")
    if dataset.rows_valid < body.num_workers:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail=f"Dataset {dataset.id} has {dataset.rows_valid} valid rows, fewer than the "
                                   f"{body.num_workers} workers.")
    model_path = await run_in_threadpool(resolve_model_path, body.model)
    return await run_in_threadpool(manager.create, body, dataset, model_path)


@router.get("/tasks", response_model=list[TaskRecord])
async def list_tasks(store: Store) -> list[TaskRecord]:
    """All tasks, newest first."""
    return await run_in_threadpool(store.list_tasks)


@router.get("/tasks/{task_id}", response_model=TaskRecord)
async def get_task(task_id: str, store: Store) -> TaskRecord:
    """One task: state, progress (step, total_steps, epoch, loss, eta_s), error, config."""
    return await run_in_threadpool(_task, store, task_id)


@router.get("/tasks/{task_id}/metrics")
async def metrics(task_id: str, store: Store, manager: Jobs) -> dict[str, Any]:
    """Loss per step, for the plot."""
    _task(store, task_id)
    points = await run_in_threadpool(manager.metrics, task_id)
    return {"task_id": task_id, "points": points}


@router.get("/tasks/{task_id}/logs")
async def logs(task_id: str, store: Store, manager: Jobs,
               follow: bool = Query(False, description="Stream until the job ends.")):
    """The task's log as text; with ``follow=true`` a stream that ends when the task does."""
    _task(store, task_id)
    if not follow:
        return PlainTextResponse(await run_in_threadpool(manager.logs, task_id))
    return StreamingResponse(_follow_logs(store, manager, task_id), media_type="text/plain; charset=utf-8")


async def _follow_logs(store: FinetuneStore, manager: JobManager, task_id: str) -> AsyncIterator[str]:
    announced = None
    while True:  # wait for the job to exist: a queued task has no log yet
        task = await run_in_threadpool(store.get_task, task_id)
        if task is None:
            return
        if task.job_id:
            break
        if task.state in FINAL_STATES:
            yield f"[sage] task {task.state} before it started{': ' + task.error if task.error else ''}\n"
            return
        if task.state != announced:
            announced = task.state
            yield f"[sage] task is {task.state}: waiting for free resources...\n"
        await asyncio.sleep(1)
    try:
        async for chunk in manager.client.tail_job_logs(task.job_id):
            yield chunk
    except Exception:  # noqa: BLE001 - Ray forgot the job (cluster restart): serve the saved log instead
        yield await run_in_threadpool(manager.logs, task_id)


@router.post("/tasks/{task_id}/cancel", response_model=TaskRecord)
async def cancel(task_id: str, manager: Jobs) -> TaskRecord:
    """Cancel a task in any state before it ends (queued ones leave the queue, running ones stop their job)."""
    return await run_in_threadpool(manager.cancel, task_id)


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(task_id: str, manager: Jobs) -> None:
    """Delete a finished task and its outputs (adapter, logs, metrics)."""
    await run_in_threadpool(manager.delete, task_id)


class DocsDatasetRequest(BaseModel):
    format: Literal["qa", "alpaca"] = Field("qa", description="Row format of the generated dataset.")
    model: str = Field(DEFAULT_MODEL_NAME, description="Model whose tokenizer the token statistics use.")
    max_length: int = Field(512, ge=16, le=32768, description="Max length the token statistics compare with.")


@router.post("/prepare-docs-dataset", status_code=status.HTTP_201_CREATED, response_model=DatasetRecord,
             responses=ACCEPTED_RESPONSE)
async def prepare_docs_dataset(request: Request, store: Store, service: Datasets,
                               body: DocsDatasetRequest | None = None):
    """A sample dataset made from the studio's bundled documentation, stored and validated like an upload."""
    body = body or DocsDatasetRequest()
    model_path = await run_in_threadpool(resolve_model_path, body.model)

    def build() -> DatasetRecord:
        import tempfile

        with tempfile.NamedTemporaryFile("w+b", suffix=".jsonl", dir=store.datasets_dir) as tmp:
            write_docs_sample(Path(tmp.name), body.format)
            tmp.seek(0)
            return service.create(tmp, "sage-docs.jsonl", f"SAGE Studio docs ({body.format})", str(model_path),
                                  body.model, body.max_length)

    operations = get_services(request).operations
    if operations is None:
        return await run_in_threadpool(build)
    return await answer_from_thread(request, operations, "dataset-validation", build, "validating on Ray Data")
