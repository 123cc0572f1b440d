"""The gateway's FastAPI app: one router per area, services set up at start, every error as OpenAI-style JSON."""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.config import StudioConfig
from deployments.engines.base import EngineUnavailableError
from deployments.model_router import EngineBusyError, EngineDownError, ModelNotFoundError, ModelRouter
from deployments.security import install_security

logger = logging.getLogger("ray.serve")

# One module per area under deployments/routers; each exposes `router` and optionally `startup`/`shutdown`.
AREAS = ["openai", "sessions", "memory", "datasets", "finetune", "system", "pipelines", "models"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


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

    @app.exception_handler(ModelNotFoundError)
    async def _model(_: Request, exc: ModelNotFoundError):
        return error_response(404, str(exc))

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

    @app.exception_handler(ValueError)
    async def _value(_: Request, exc: ValueError):
        # Engines raise ValueError for requests they cannot take (e.g. a prompt longer than the context).
        return error_response(400, str(getattr(exc, "cause", None) or exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        logger.exception("unhandled error")
        return error_response(500, f"Internal error ({type(exc).__name__}); see the gateway log.")


def create_api(config: StudioConfig, model_router: ModelRouter | None = None, areas: list[str] = AREAS) -> FastAPI:
    """The gateway's app; ``areas`` picks routers (tests serve a few of them without engines or Serve)."""
    modules = [importlib.import_module(f"deployments.routers.{area}") for area in areas]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.config = config
        app.state.model_router = model_router
        for module in modules:
            if hasattr(module, "startup"):
                await module.startup(app.state, config)
        yield
        for module in reversed(modules):
            if hasattr(module, "shutdown"):
                await module.shutdown(app.state)

    app = FastAPI(title="SAGE Studio", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    install_security(app, config)
    for module in modules:
        app.include_router(module.router)
    return app
