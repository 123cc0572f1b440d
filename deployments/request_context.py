"""Following one request: its ``x-request-id``, and the ``studio_requests_total`` count of every answer.

The id is the client's ``x-request-id`` when it sent one, else a new one (uuid4 hex). Behind Ray Serve, Serve's
proxy has already done that (``RequestIdMiddleware``): it puts the id in the request's headers, sets it on the
answer, and Serve's log lines in the gateway's and the engine's replicas carry it (Serve passes it along handle
calls). So the middleware here reads the same id and only sets the answer's header itself when no Serve proxy is in
front (a second header would be a duplicate). It also keeps the id in a context variable that ``RequestIdFilter``
puts on log records, and in ``request.state.request_id`` for the routes: the OpenAI routes give it to vLLM as the
request's id (its "Added request chatcmpl-<id>" line) and store it with the session turn.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.metrics import StudioMetrics

HEADER = "x-request-id"
# An id a client sends is kept if it is a plain token; anything else (too long, spaces, control bytes) is replaced,
# since it ends up in log lines and in vLLM's request ids.
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("studio_request_id", default=None)


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def started_at(request: Request) -> float:
    """When the gateway received the request (``time.perf_counter()``)."""
    return getattr(request.state, "started_at", None) or time.perf_counter()


def set_model_label(request: Request, model: str) -> None:
    """The served model a request went to, for the ``model`` label of ``studio_requests_total``."""
    request.state.model = model


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on log records that do not have one (Serve's own filter sets it in replicas)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            request_id = current_request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class RequestContextMiddleware:
    """Pure ASGI, so streamed answers pass through untouched; outermost, so every answer (401s, 413s, errors,
    streams) carries the id and is counted."""

    def __init__(self, app: ASGIApp, metrics: StudioMetrics, set_header: bool = True):
        self.app = app
        self.metrics = metrics
        self.set_header = set_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"), "")
        # Behind Serve the proxy has accepted (or made) the id and answers with it: keep it as it is.
        request_id = given if given and (not self.set_header or _VALID_ID.fullmatch(given)) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["started_at"] = request_id, time.perf_counter()
        token = current_request_id.set(request_id)
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if self.set_header:
                    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                    message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            current_request_id.reset(token)
            route = scope.get("route")
            # The route's template, never the raw path: a label per random URL would grow without bound.
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, state.get("model", ""), str(status[0])).inc()
