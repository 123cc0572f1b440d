"""How a route answers a long operation: ``202 Accepted`` at once, with the operation's id and where to poll it
(``Location``: ``GET /api/operations/{id}``), the work running in the background (``sage_studio.operations``).

A client may ask for that answer on any route that supports it with ``Prefer: respond-async`` (RFC 7240); routes
also choose it themselves when the work will take long (a merge, a model load, a large file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from deployments.request_context import request_id_of
from sage_studio.errors import StudioError
from sage_studio.operations import OperationRunner, Progress

# How long a route that may be quick waits for its operation before answering 202 instead of the result.
ANSWER_WITHIN_S = 5.0

ACCEPTED_RESPONSE = {202: {"description": "Accepted: the work runs as an operation; poll GET "
                           "/api/operations/{operation_id} for its state, progress and result."}}


def wants_async(request: Request) -> bool:
    """Whether the client sent ``Prefer: respond-async``."""
    prefer = ",".join(request.headers.getlist("prefer")).lower()
    return "respond-async" in {part.split("=")[0].strip() for part in prefer.replace(";", ",").split(",")}


def accepted(request: Request, operations: OperationRunner, kind: str,
             work: Callable[[Progress], Awaitable[Any]]) -> JSONResponse:
    """Start ``work`` as an operation and answer 202 with its id."""
    operation = operations.start(kind, work, request_id_of(request))
    return _accepted_answer(operation.id, kind, operation.state)


def _accepted_answer(operation_id: str, kind: str, state: str) -> JSONResponse:
    location = f"/api/operations/{operation_id}"
    body = {"operation_id": operation_id, "kind": kind, "state": state, "status_url": location}
    return JSONResponse(body, status_code=202, headers={"Location": location})


async def answer_within(request: Request, operations: OperationRunner, kind: str,
                        work: Callable[[Progress], Awaitable[Any]], budget_s: float = ANSWER_WITHIN_S) -> Any:
    """The result, as the synchronous call gives it, when the work ends within ``budget_s``; else (or with
    ``Prefer: respond-async``) 202 with the operation, which goes on in the background."""
    if wants_async(request):
        return accepted(request, operations, kind, work)
    operation = operations.start(kind, work, request_id_of(request))
    done = await operations.wait(operation.id, budget_s)
    if done is None:
        return _accepted_answer(operation.id, kind, "running")
    if done.state == "failed":
        raise StudioError(done.error_status or 500, done.error or "The operation failed.")
    return done.result


async def answer_from_thread(request: Request, operations: OperationRunner, kind: str, fn: Callable[[], Any],
                             message: str, slow: bool = False) -> Any:
    """``answer_within`` for blocking work (run in a worker thread) whose result is a pydantic model; ``slow``
    answers 202 at once, without waiting the few seconds first."""
    async def work(progress: Progress) -> Any:
        await asyncio.to_thread(progress, 0.1, message)
        return (await asyncio.to_thread(fn)).model_dump(mode="json")

    return await answer_within(request, operations, kind, work, 0 if slow else ANSWER_WITHIN_S)
