"""``/sessions``: create, list, read, rename, clear, delete and clean up chat sessions (a thin layer over
``sage_studio.sessions`` and ``sage_studio.memory``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from deployments.services import Memory
from sage_studio.memory.models import MemoryPreview
from sage_studio.sessions import CreateSessionRequest, RenameSessionRequest, Session, SessionNotFound, SessionSummary
from sage_studio.sessions.models import CleanupResult

router = APIRouter(prefix="/sessions", tags=["sessions"])


def _not_found(exc: SessionNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))


class DeletedSession(BaseModel):
    """Answer of ``DELETE /sessions/{id}``."""

    id: str = Field(description="Id of the deleted session.")
    deleted: bool = Field(True, description="Always true: a missing session answers 404.")


@router.get("", response_model=list[SessionSummary], summary="List sessions, most recently active first")
async def list_sessions(memory: Memory) -> list[SessionSummary]:
    return await asyncio.to_thread(memory.store.list_sessions)


@router.post("", response_model=Session, status_code=status.HTTP_201_CREATED, summary="Create a session")
async def create_session(memory: Memory, body: CreateSessionRequest | None = None) -> Session:
    title = body.title if body is not None else None
    return await asyncio.to_thread(memory.store.create, title)


@router.post("/cleanup", response_model=CleanupResult, summary="Delete sessions idle for longer than N minutes")
async def cleanup_sessions(
    memory: Memory,
    max_age_minutes: float = Query(30, ge=0, le=10 * 365 * 24 * 60, description="Idle minutes beyond which to delete."),
) -> CleanupResult:
    removed = await memory.cleanup(max_age_minutes * 60)
    return CleanupResult(removed=removed, count=len(removed), max_age_minutes=max_age_minutes)


@router.get("/{session_id}", response_model=Session, summary="A session with its messages")
async def get_session(session_id: str, memory: Memory) -> Session:
    try:
        return await asyncio.to_thread(memory.store.get, session_id)
    except SessionNotFound as exc:
        raise _not_found(exc) from None


@router.patch("/{session_id}/title", response_model=SessionSummary, summary="Rename a session")
async def rename_session(session_id: str, body: RenameSessionRequest, memory: Memory) -> SessionSummary:
    try:
        return await asyncio.to_thread(memory.store.rename, session_id, body.title)
    except SessionNotFound as exc:
        raise _not_found(exc) from None


@router.post("/{session_id}/clear", response_model=SessionSummary, summary="Delete a session's messages")
async def clear_session(session_id: str, memory: Memory) -> SessionSummary:
    try:
        return await memory.clear(session_id)
    except SessionNotFound as exc:
        raise _not_found(exc) from None


@router.delete("/{session_id}", response_model=DeletedSession, summary="Delete a session")
async def delete_session(session_id: str, memory: Memory) -> DeletedSession:
    try:
        await memory.delete(session_id)
    except SessionNotFound as exc:
        raise _not_found(exc) from None
    return DeletedSession(id=session_id)


@router.get("/{session_id}/memory", response_model=MemoryPreview, summary="What memory recalls for a question")
async def session_memory(
    session_id: str,
    memory: Memory,
    query: str | None = Query(
        None, max_length=4000, description="The question to recall for; omitted, the session's last user turn."
    ),
) -> MemoryPreview:
    try:
        return await memory.preview(session_id, query)
    except SessionNotFound as exc:
        raise _not_found(exc) from None
