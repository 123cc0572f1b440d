"""``/api/models``: the models available on this machine — prepared, in the Hugging Face cache, fine-tuned — with
their sizes, for the UI's model pickers (a thin layer over ``deployments.model_catalog``)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from deployments.model_catalog import AvailableModel, available_models
from deployments.services import get_services

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("/available", response_model=list[AvailableModel])
def available(request: Request) -> list[AvailableModel]:
    # Plain def: FastAPI runs it in a thread (it walks folders and the HF cache on disk).
    return available_models(get_services(request).finetune_store)
