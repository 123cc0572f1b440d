"""Studio API for pipelines: operator palette, CRUD, templates, online and batch runs, import/export, Python export.

A thin layer over the ``pipelines`` package. Online runs execute inside this gateway replica (in a worker thread,
so a generator can call this same gateway's /v1 without blocking its event loop); batch runs are driven from here
on Ray Data. Every validation problem becomes a 422 whose message names the node or connection at fault.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, ValidationError

from deployments.operations_http import ACCEPTED_RESPONSE, accepted, answer_within
from deployments.services import get_pipelines, get_services
from pipelines.batch_jobs import BatchJob
from pipelines.builder import PipelineBuilder, PipelineValidationError
from pipelines.export import export_python, script_filename
from pipelines.models import VisualPipeline, export_json, import_json
from pipelines.operators.base import DataType, OperatorEnv
from pipelines.runner import RunResult
from pipelines.store import PipelineNotFound
from pipelines.templates import list_templates, load_template
from sage_studio.errors import StudioError
from sage_studio.files import atomic_write

router = APIRouter(tags=["pipelines"])

MAX_BATCH_UPLOAD = 50 * 1024 * 1024
MAX_IMPORT_BYTES = 5 * 1024 * 1024
BATCH_SUFFIXES = {".jsonl", ".json", ".csv"}
FILE_SUFFIXES = {".md", ".txt", ".json", ".jsonl", ".csv"}
MAX_SOURCE_FILE = 5 * 1024 * 1024


class RunRequest(BaseModel):
    """Body of ``POST /api/pipelines/{id}/run``."""

    input: Any = Field(default=None, description="The run input: a text, or a JSON object (e.g. with 'question').")


class AdHocRunRequest(RunRequest):
    """Body of ``POST /api/pipelines/run``: run a pipeline that is not saved (the editor's current graph)."""

    pipeline: VisualPipeline


class PipelineSummary(BaseModel):
    id: str
    name: str
    description: str
    nodes: int
    connections: int
    updated_at: str


def _env(request: Request) -> OperatorEnv:
    # Generators call this very gateway: at SAGE_STUDIO_URL when set, else at the address the client used, with the
    # caller's own API key (so a key-protected studio answers its own pipelines without a second secret).
    url = os.environ.get("SAGE_STUDIO_URL") or str(request.base_url)
    env = OperatorEnv.from_environment(studio_url=url, sage_home=get_pipelines(request).settings.sage_home)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        env.api_key = token
    return env


def _get(request: Request, pipeline_id: str) -> VisualPipeline:
    try:
        return get_pipelines(request).store.get(pipeline_id)
    except PipelineNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None


def _validate(request: Request, pipeline: VisualPipeline) -> None:
    issues = PipelineBuilder(get_pipelines(request).registry).validate(pipeline)
    if issues:
        raise HTTPException(422, detail=str(PipelineValidationError(issues)))


async def _run(request: Request, pipeline: VisualPipeline, run_input: Any):
    """The run's result when it ends within a few seconds; else (or with ``Prefer: respond-async``) 202 with an
    operation that goes on running it (a generator over a slow model, a large index to build)."""
    service = get_pipelines(request)
    try:
        runner = await run_in_threadpool(service.runners.get, pipeline, _env(request), service.registry)
    except PipelineValidationError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    operations = get_services(request).operations
    if operations is None:
        return await run_in_threadpool(runner.run, run_input)

    async def run(progress) -> dict:
        return (await asyncio.to_thread(runner.run, run_input)).model_dump(mode="json")

    return await answer_within(request, operations, "pipeline-run", run)


@router.get("/api/operators")
async def operators(request: Request) -> dict[str, Any]:
    """The palette: every operator with its ports and the JSON schema of its config form."""
    return {"operators": get_pipelines(request).registry.palette(), "data_types": [t.value for t in DataType]}


@router.get("/api/pipelines")
async def list_pipelines(request: Request) -> list[PipelineSummary]:
    """Saved pipelines, most recently changed first."""
    return [
        PipelineSummary(id=p.id, name=p.name, description=p.description, nodes=len(p.nodes),
                        connections=len(p.connections), updated_at=p.updated_at)
        for p in get_pipelines(request).store.list()
    ]


@router.post("/api/pipelines", status_code=201)
async def create_pipeline(request: Request, pipeline: VisualPipeline) -> VisualPipeline:
    """Save a new pipeline (the server picks its id); it must validate."""
    _validate(request, pipeline)
    return get_pipelines(request).store.create(pipeline)


@router.post("/api/pipelines/validate")
async def validate_pipeline(request: Request, pipeline: VisualPipeline) -> dict[str, Any]:
    """Every issue of a pipeline, each naming its node or connection (200 even when invalid)."""
    issues = PipelineBuilder(get_pipelines(request).registry).validate(pipeline)
    return {"valid": not issues, "issues": [i.to_dict() for i in issues]}


@router.post("/api/pipelines/run", response_model=RunResult, responses=ACCEPTED_RESPONSE)
async def run_unsaved(request: Request, body: AdHocRunRequest):
    """Run a pipeline given in the body, without saving it."""
    return await _run(request, body.pipeline, body.input)


@router.get("/api/pipelines/templates")
async def templates() -> list[dict[str, str]]:
    """The shipped templates: RAG Q&A over the docs, chat with memory, summarize a file."""
    return list_templates()


@router.post("/api/pipelines/templates/{name}", status_code=201)
async def create_from_template(request: Request, name: str) -> VisualPipeline:
    """Save a new pipeline copied from a template."""
    try:
        pipeline = load_template(name)
    except KeyError:
        names = ", ".join(t["name"] for t in list_templates())
        raise HTTPException(404, detail=f"No template named '{name}'. Templates: {names}.") from None
    return get_pipelines(request).store.create(pipeline)


@router.post("/api/pipelines/import", status_code=201)
async def import_pipeline(request: Request) -> VisualPipeline:
    """Save a pipeline from an exported file: multipart field 'file', or the file's JSON as the body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, detail="Send the exported pipeline file in the form field 'file'.")
        raw = await upload.read(MAX_IMPORT_BYTES + 1)
    else:
        raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(413, detail=f"A pipeline file may be at most {MAX_IMPORT_BYTES // (1024 * 1024)} MiB.")
    try:
        pipeline = import_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HTTPException(422, detail=f"The pipeline file is not valid: {where}: {first['msg']}.") from None
    except ValueError as exc:
        raise HTTPException(400, detail=f"Cannot import: {exc}.") from None
    _validate(request, pipeline)
    return get_pipelines(request).store.create(pipeline)


@router.get("/api/pipelines/files")
async def list_files(request: Request) -> list[dict[str, Any]]:
    """Files in the pipeline files folder (what a file, JSON or CSV source with folder 'files' can read)."""
    root = get_pipelines(request).settings.files_dir
    if not root.is_dir():  # nothing uploaded yet in this SAGE_HOME
        return []
    return [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(root.iterdir()) if p.is_file()]


@router.post("/api/pipelines/files", status_code=201)
async def upload_file(request: Request, file: UploadFile) -> dict[str, Any]:
    """Store a text, markdown, JSON(L) or CSV file for sources to read (folder 'files'); the server picks the name."""
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise HTTPException(400, detail=f"Pipeline files must be one of: {', '.join(sorted(FILE_SUFFIXES))}.")
    data = await file.read(MAX_SOURCE_FILE + 1)
    if len(data) > MAX_SOURCE_FILE:
        raise HTTPException(413, detail=f"A pipeline file may be at most {MAX_SOURCE_FILE // (1024 * 1024)} MiB.")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, detail="Pipeline files must be UTF-8 text.") from None
    root = get_pipelines(request).settings.files_dir
    # Only letters, digits, '-' and '_' survive from the client's name; a counter avoids overwriting.
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(file.filename or "file").stem).strip("_")[:60] or "file"
    name, n = f"{stem}{suffix}", 1
    while (root / name).exists():
        n += 1
        name = f"{stem}-{n}{suffix}"
    atomic_write(root / name, data.decode("utf-8"))
    return {"name": name, "folder": "files", "bytes": len(data)}


@router.get("/api/pipelines/batches/{job_id}")
async def batch_status(request: Request, job_id: str) -> BatchJob:
    """Progress of a batch job: rows done and failed, first errors, mean metrics."""
    job = get_pipelines(request).batches.get(job_id)
    if job is None:
        raise HTTPException(404, detail=f"No batch job with id '{job_id}'.")
    return job


@router.get("/api/pipelines/batches/{job_id}/output")
async def batch_output(request: Request, job_id: str) -> FileResponse:
    """The job's output file (JSONL, one row per input row); partial while the job runs."""
    manager = get_pipelines(request).batches
    if manager.get(job_id) is None:
        raise HTTPException(404, detail=f"No batch job with id '{job_id}'.")
    path = manager.output_path(job_id)
    if not path.exists():
        raise HTTPException(404, detail=f"Batch job '{job_id}' has no output yet.")
    return FileResponse(path, media_type="application/x-ndjson", filename=f"{job_id}.output.jsonl")


@router.get("/api/pipelines/{pipeline_id}")
async def get_pipeline(request: Request, pipeline_id: str) -> VisualPipeline:
    return _get(request, pipeline_id)


@router.put("/api/pipelines/{pipeline_id}")
async def update_pipeline(request: Request, pipeline_id: str, pipeline: VisualPipeline) -> VisualPipeline:
    """Replace a saved pipeline's content; it must validate."""
    _get(request, pipeline_id)
    _validate(request, pipeline)
    return get_pipelines(request).store.update(pipeline_id, pipeline)


@router.delete("/api/pipelines/{pipeline_id}", status_code=204)
async def delete_pipeline(request: Request, pipeline_id: str) -> Response:
    try:
        get_pipelines(request).store.delete(pipeline_id)
    except PipelineNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
    return Response(status_code=204)


@router.post("/api/pipelines/{pipeline_id}/run", response_model=RunResult, responses=ACCEPTED_RESPONSE)
async def run_pipeline(request: Request, pipeline_id: str, body: RunRequest | None = None):
    """Run a saved pipeline on one input: each node's status, output, timing and log, and the terminal outputs."""
    return await _run(request, _get(request, pipeline_id), body.input if body else None)


@router.post("/api/pipelines/{pipeline_id}/batch", status_code=202)
async def start_batch(request: Request, pipeline_id: str, file: UploadFile) -> BatchJob:
    """Run every row of an uploaded JSONL or CSV file on Ray Data; poll the returned job for progress."""
    pipeline = _get(request, pipeline_id)
    _validate(request, pipeline)
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in BATCH_SUFFIXES:
        raise HTTPException(400, detail="Batch input must be a .jsonl or .csv file (one input per line or row).")
    manager = get_pipelines(request).batches
    job_id = manager.new_job_id()
    try:
        path = await run_in_threadpool(manager.save_upload, job_id, ".csv" if suffix == ".csv" else ".jsonl",
                                       file.file, MAX_BATCH_UPLOAD)
    except ValueError as exc:
        raise HTTPException(413, detail=f"{exc}.") from None
    job = manager.submit(job_id, pipeline, path, file.filename or path.name, _env(request))
    operations = get_services(request).operations
    if operations is None:
        return job

    async def follow(progress) -> dict:
        # The batch job runs on its own thread; the operation mirrors it, so one poll route covers every long call.
        while (now := manager.get(job_id)) is not None and now.status in ("queued", "running"):
            await asyncio.to_thread(progress, now.progress, f"{now.done} of {now.total or '?'} rows")
            await asyncio.sleep(1)
        if now is None or now.status == "failed":
            raise StudioError(422, now.error if now is not None else "the batch job is gone")
        return now.model_dump(mode="json")

    answer = accepted(request, operations, "pipeline-batch", follow)
    body = job.model_dump(mode="json") | json.loads(answer.body)
    return JSONResponse(body, status_code=202, headers={"Location": answer.headers["location"]})


@router.get("/api/pipelines/{pipeline_id}/batches")
async def list_batches(request: Request, pipeline_id: str) -> list[BatchJob]:
    _get(request, pipeline_id)
    return get_pipelines(request).batches.list(pipeline_id)


@router.get("/api/pipelines/{pipeline_id}/export")
async def export_pipeline(request: Request, pipeline_id: str) -> Response:
    """The pipeline as a versioned JSON file (import it again with POST /api/pipelines/import)."""
    pipeline = _get(request, pipeline_id)
    return Response(export_json(pipeline), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{pipeline_id}.json"'})


@router.get("/api/pipelines/{pipeline_id}/python")
async def python_export(request: Request, pipeline_id: str) -> PlainTextResponse:
    """A Python script that rebuilds and runs the pipeline (``python script.py --input ...``)."""
    pipeline = _get(request, pipeline_id)
    return PlainTextResponse(export_python(pipeline), media_type="text/x-python",
                             headers={"Content-Disposition": f'attachment; filename="{script_filename(pipeline)}"'})
