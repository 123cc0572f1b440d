"""``/memory``: which memory backend is in use and how much each session holds (a thin layer over
``sage_studio.memory``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from deployments.config import StudioConfig
from deployments.routers.sessions import ensure_chat_memory
from sage_studio.memory import ChatMemory
from sage_studio.memory.models import MemoryConfigInfo, MemoryStats
from sage_studio.sessions import SessionNotFound

router = APIRouter(prefix="/memory", tags=["memory"])


async def startup(state: Any, config: StudioConfig) -> None:
    # Shares the sessions router's services: whichever startup runs first opens them.
    await ensure_chat_memory(state, config)


def _memory(request: Request) -> ChatMemory:
    memory = getattr(request.app.state, "chat_memory", None)
    if memory is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The memory service is not started yet.")
    return memory


@router.get("/config", response_model=MemoryConfigInfo, summary="The memory backend in use and the ones available")
async def memory_config(request: Request) -> MemoryConfigInfo:
    return await _memory(request).config_info()


@router.get("/stats", response_model=MemoryStats, summary="Per-session memory use")
async def memory_stats(
    request: Request,
    session_id: str | None = Query(None, description="Only this session (404 if it does not exist)."),
) -> MemoryStats:
    try:
        return await _memory(request).stats(session_id)
    except SessionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
