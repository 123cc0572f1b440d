"""``/memory``: which memory backend is in use and how much each session holds (a thin layer over
``sage_studio.memory``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, status

from deployments.services import Memory
from sage_studio.memory.models import MemoryConfigInfo, MemoryStats
from sage_studio.sessions import SessionNotFound

router = APIRouter(prefix="/memory", tags=["memory"])


@router.get("/config", response_model=MemoryConfigInfo, summary="The memory backend in use and the ones available")
async def memory_config(memory: Memory) -> MemoryConfigInfo:
    return await memory.config_info()


@router.get("/stats", response_model=MemoryStats, summary="Per-session memory use")
async def memory_stats(
    memory: Memory,
    session_id: str | None = Query(None, description="Only this session (404 if it does not exist)."),
) -> MemoryStats:
    try:
        return await memory.stats(session_id)
    except SessionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
