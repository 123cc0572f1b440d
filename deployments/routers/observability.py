"""What operators and clients follow: ``/metrics`` (Prometheus), ``/api/usage`` (tokens per session and API key)
and ``/api/operations/{id}`` (the long operations that answered 202)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from deployments.services import Operations, Services, Usage
from sage_studio.operations import Operation
from sage_studio.usage import UsageReport

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(services: Services) -> Response:
    """The studio's ``studio_*`` series, the engines' vLLM series and Ray Serve's, in Prometheus text format."""
    if services.metrics_page is None:
        raise HTTPException(503, detail="Metrics are unavailable: the gateway has not started.")
    return Response(await services.metrics_page.render(), media_type=CONTENT_TYPE_LATEST)


def parse_since(value: str | None) -> float:
    """``since`` as Unix seconds or an ISO 8601 time (UTC when it names no zone); None: from the beginning."""
    if value is None or not value.strip():
        return 0.0
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, detail=f"since must be Unix seconds or an ISO 8601 time such as "
                                        f"2026-12-03T08:00:00Z; got {value!r}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@router.get("/api/usage", response_model=UsageReport)
async def usage(ledger: Usage, since: str | None = Query(
        None, description="Start of the period: Unix seconds or an ISO 8601 time; omitted, since the beginning.")
                ) -> UsageReport:
    """Prompt and completion tokens and requests, per studio session and per API key, since ``since``."""
    return await asyncio.to_thread(ledger.report, parse_since(since))


@router.get("/api/operations/{operation_id}", response_model=Operation)
async def get_operation(operation_id: str, operations: Operations) -> Operation:
    """A long operation that answered 202: queued, running, succeeded (with its result) or failed (with why)."""
    operation = await asyncio.to_thread(operations.store.get, operation_id)
    if operation is None:
        raise HTTPException(404, detail=f"No operation '{operation_id}'.")
    return operation
