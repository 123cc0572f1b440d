"""``/api/datasets``: upload (multipart) with a validation report computed on Ray Data, list, get, re-validate,
delete (a thin layer over ``train.datasets``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from deployments.operations_http import ACCEPTED_RESPONSE, answer_from_thread
from deployments.services import Datasets, Store, get_services
from sage_studio.model_store import resolve_model_path
from sage_studio.settings import DEFAULT_MODEL_NAME
from train.store import ACTIVE_STATES, DatasetRecord
from train.uploads import copy_capped

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
# Multipart framing and the small form fields ride on top of the file itself.
FORM_OVERHEAD = 64 * 1024
# Files from this size are validated as an operation (202): Ray Data takes about a minute per few hundred MB here.
ASYNC_VALIDATION_BYTES = 16 << 20

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "JSON Lines, a JSON array of rows, "
                         "Parquet, CSV/TSV, Arrow/Feather, or a zip/tar of a datasets save_to_disk folder."},
                "columns": {"type": "string", "description": "Column mapping as a JSON object, field → column "
                            "(e.g. {\"instruction\": \"prompt\", \"output\": \"completion\"}); default: detected."},
                "name": {"type": "string", "description": "Display name (default: the file name)."},
                "model": {"type": "string", "description": "Model for the token statistics.",
                          "default": DEFAULT_MODEL_NAME},
                "max_length": {"type": "integer", "description": "Training max length to compare with.",
                               "default": 1024},
            },
        }}},
    }
}


def _columns(value: Any) -> dict[str, str] | None:
    if not value:
        return None
    try:
        mapping = json.loads(str(value))
    except ValueError:
        mapping = None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise HTTPException(422, detail='columns must be a JSON object of field → column, e.g. '
                                        '{"instruction": "prompt", "output": "completion"}.')
    return mapping


def _max_length(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HTTPException(422, detail="max_length must be a whole number.") from None
    if not 16 <= number <= 32768:
        raise HTTPException(422, detail="max_length must be between 16 and 32768.")
    return number


def _spooled(src, folder: Path, max_bytes: int) -> Path:
    """The upload copied out of the request (the form's file is gone once it ends), for a background validation."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.upload"
    copy_capped(src, path, max_bytes)
    return path


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetRecord, openapi_extra=_UPLOAD_SCHEMA,
             responses=ACCEPTED_RESPONSE)
async def upload(request: Request, service: Datasets):
    """Store an uploaded dataset and validate it on Ray Data; 4xx with the reason when it cannot be used. A large
    file (or ``Prefer: respond-async``) answers 202 with an operation whose result is the dataset."""
    declared = request.headers.get("content-length")
    declared_size = int(declared) if declared and declared.isdigit() else 0
    # Refuse an oversize upload from its header, before reading a byte of it.
    if declared and declared.isdigit() and int(declared) > service.max_bytes + FORM_OVERHEAD:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            detail=f"The file is over the {service.max_bytes / (1 << 20):g} MB upload limit.")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            detail="Send the dataset as multipart/form-data with the file in the 'file' field.")
    form = await request.form(max_files=1, max_fields=10)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(422,
                                detail="No file: put the dataset in the multipart field 'file'.")
        model = str(form.get("model") or DEFAULT_MODEL_NAME)
        max_length = _max_length(form.get("max_length") or 1024)
        columns = _columns(form.get("columns"))
        model_path = await run_in_threadpool(resolve_model_path, model)
        name = str(form.get("name")) if form.get("name") else None
        operations = get_services(request).operations
        if operations is None:
            return await run_in_threadpool(service.create, file.file, file.filename, name, str(model_path), model,
                                           max_length, columns)
        incoming = service.store.datasets_dir.parent / "incoming_uploads"
        spooled = await run_in_threadpool(_spooled, file.file, incoming, service.max_bytes)
    finally:
        await form.close()

    def create() -> DatasetRecord:
        try:
            with open(spooled, "rb") as src:
                return service.create(src, file.filename, name, str(model_path), model, max_length, columns)
        finally:
            spooled.unlink(missing_ok=True)

    return await validation(request, operations, create, declared_size)


async def validation(request: Request, operations, validate: Callable[[], DatasetRecord], size: int):
    """A validation on Ray Data, as an operation: the dataset when it is done within a few seconds, else (a large
    file, a cold Ray Data, or ``Prefer: respond-async``) 202 with the operation, whose result is the dataset."""
    return await answer_from_thread(request, operations, "dataset-validation", validate, "validating on Ray Data",
                                    slow=size >= ASYNC_VALIDATION_BYTES)


@router.get("", response_model=list[DatasetRecord])
async def list_datasets(store: Store) -> list[DatasetRecord]:
    """All datasets, newest first."""
    return await run_in_threadpool(store.list_datasets)


def _dataset(store: Store, dataset_id: str) -> DatasetRecord:
    record = store.get_dataset(dataset_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No dataset '{dataset_id}'.")
    return record


@router.get("/{dataset_id}", response_model=DatasetRecord)
async def get_dataset(dataset_id: str, store: Store) -> DatasetRecord:
    """A dataset with its validation report."""
    return await run_in_threadpool(_dataset, store, dataset_id)


class RevalidateRequest(BaseModel):
    model: str = Field(DEFAULT_MODEL_NAME, description="Model whose tokenizer and chat template to count with.")
    max_length: int = Field(1024, ge=16, le=32768, description="Training max length to compare with.")


@router.post("/{dataset_id}/validate", response_model=DatasetRecord, responses=ACCEPTED_RESPONSE)
async def revalidate(request: Request, dataset_id: str, body: RevalidateRequest, store: Store, service: Datasets):
    """Recompute the report, e.g. token statistics for another model or max length; a large dataset (or
    ``Prefer: respond-async``) answers 202 with an operation whose result is the dataset."""
    record = _dataset(store, dataset_id)
    model_path = await run_in_threadpool(resolve_model_path, body.model)
    operations = get_services(request).operations
    if operations is None:
        return await run_in_threadpool(service.revalidate, dataset_id, str(model_path), body.model, body.max_length)
    return await validation(request, operations,
                            lambda: service.revalidate(dataset_id, str(model_path), body.model, body.max_length),
                            record.size_bytes)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_dataset(dataset_id: str, store: Store) -> None:
    """Delete a dataset that no queued or running fine-tune needs."""
    _dataset(store, dataset_id)
    users = [t.id for t in store.list_tasks(ACTIVE_STATES) if t.config.get("dataset_id") == dataset_id]
    if users:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"Dataset {dataset_id} is used by fine-tune {', '.join(users)}: cancel it first.")
    await run_in_threadpool(store.delete_dataset, dataset_id)
