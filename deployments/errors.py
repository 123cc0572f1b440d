"""Every error the gateway answers, in OpenAI's shape: ``{"error": {"message", "type", "code"}}``.

One place maps the studio's exceptions to statuses, so routers raise what went wrong (a missing model, a busy
engine, a failed switch) and never build error bodies themselves; the security middleware answers through
``error_response`` too.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.engines.base import EngineUnavailableError
from deployments.model_router import EngineBusyError, EngineDownError, ModelNotFoundError
from sage_studio import model_store
from sage_studio.errors import StudioError

logger = logging.getLogger("ray.serve")

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}
# Seconds a client should wait before retrying after an engine replica died: Serve restarts it in about that.
ENGINE_RESTART_RETRY_S = 15


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error shape; ``detail`` is kept too so FastAPI-style clients read the same message."""
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "code": status},
            "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "Invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return error_response(422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(StudioError)
    async def _studio(_: Request, exc: StudioError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(ModelNotFoundError)
    async def _model(_: Request, exc: ModelNotFoundError):
        return error_response(404, str(exc))

    @app.exception_handler(model_store.ModelNotFoundError)
    async def _unknown_model(_: Request, exc: model_store.ModelNotFoundError):
        # A model named in a request body (a fine-tune's base, a dataset's tokenizer) that the store does not have.
        return error_response(400, str(exc))

    @app.exception_handler(EngineUnavailableError)
    async def _unavailable(_: Request, exc: EngineUnavailableError):
        # The remote fallback itself failed (or an engine refused mid-start): unavailable, not a bug of ours.
        return error_response(503, str(getattr(exc, "cause", None) or exc), {"Retry-After": "10"})

    @app.exception_handler(EngineDownError)
    async def _down(_: Request, exc: EngineDownError):
        return error_response(503, str(exc), {"Retry-After": "10"})

    @app.exception_handler(EngineBusyError)
    async def _busy(_: Request, exc: EngineBusyError):
        # Back-pressure: the status (503 or 429) and Retry-After of the engine deployment's backpressure_config.
        retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return error_response(exc.status_code, str(exc), retry)

    @app.exception_handler(RayActorError)
    async def _engine_died(_: Request, exc: RayActorError):
        logger.warning("engine replica died under a request: %s", type(exc).__name__)
        return error_response(
            503,
            "The model replica answering this request stopped; it is being restarted. Retry in a few seconds.",
            {"Retry-After": str(ENGINE_RESTART_RETRY_S)},
        )

    @app.exception_handler(ValueError)
    async def _value(_: Request, exc: ValueError):
        # Engines raise ValueError for requests they cannot take (e.g. a prompt longer than the context).
        return error_response(400, str(getattr(exc, "cause", None) or exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        logger.exception("unhandled error")
        return error_response(500, f"Internal error ({type(exc).__name__}); see the gateway log.")
