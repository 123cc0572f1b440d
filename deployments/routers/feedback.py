"""Feedback: ``POST /sessions/{id}/feedback`` rates an assistant reply, ``POST /api/datasets/from-feedback`` turns
the rated replies into a chat-format dataset in the dataset store (a thin layer over ``sage_studio.sessions`` and
``train.datasets``)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, status

from deployments.services import Datasets, Memory, Store
from sage_studio.model_store import resolve_model_path
from sage_studio.sessions import Message, SessionNotFound
from sage_studio.sessions.feedback import FeedbackDatasetRequest, FeedbackRequest, feedback_rows
from sage_studio.settings import DEFAULT_MODEL_NAME
from train.store import DatasetRecord

router = APIRouter(tags=["feedback"])


@router.post("/sessions/{session_id}/feedback", response_model=Message,
             summary="Rate an assistant reply (thumbs up 1 / down -1, optional comment)")
async def rate(session_id: str, body: FeedbackRequest, memory: Memory) -> Message:
    try:
        return await asyncio.to_thread(memory.store.rate, session_id, body.message_index, body.rating, body.comment)
    except SessionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


@router.post("/api/datasets/from-feedback", status_code=status.HTTP_201_CREATED, response_model=DatasetRecord,
             summary="A chat-format dataset of the rated replies, stored and validated like an upload")
async def dataset_from_feedback(body: FeedbackDatasetRequest, memory: Memory, store: Store,
                                service: Datasets) -> DatasetRecord:
    model = body.model or DEFAULT_MODEL_NAME
    model_path = await asyncio.to_thread(resolve_model_path, model)

    def build() -> DatasetRecord:
        ids = body.session_ids if body.session_ids is not None else memory.store.session_ids()
        try:
            sessions = [memory.store.get(i) for i in ids]
        except SessionNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        rows = feedback_rows(sessions, body.min_rating)
        if not rows:
            wanted = "thumbs-up" if body.min_rating == 1 else "rated"
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                                detail=f"No {wanted} assistant reply in {len(sessions)} session(s): rate some "
                                       "replies in the Chat tab first.")
        with tempfile.NamedTemporaryFile("w+b", suffix=".jsonl", dir=store.datasets_dir) as tmp:
            Path(tmp.name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            tmp.seek(0)
            name = body.name or f"Chat feedback ({len(rows)} rated replies)"
            return service.create(tmp, "feedback.jsonl", name, str(model_path), model, body.max_length)

    return await asyncio.to_thread(build)
