"""The gateway's FastAPI app: one router per area over the services its lifespan opens, every error OpenAI-shaped."""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager

from fastapi import FastAPI

from deployments.config import StudioConfig
from deployments.errors import install_error_handlers
from deployments.model_router import ModelRouter
from deployments.request_context import RequestContextMiddleware
from deployments.security import install_security
from deployments.services import StudioServices

# One module per area under deployments/routers; each exposes `router`.
AREAS = ["openai", "sessions", "memory", "datasets", "finetune", "system", "pipelines", "models", "catalog",
         "observability", "feedback"]


def create_api(config: StudioConfig, model_router: ModelRouter | None = None, areas: list[str] = AREAS,
               behind_serve_proxy: bool = False) -> FastAPI:
    """The gateway's app; ``areas`` picks routers (tests serve a few of them without engines or Serve).
    ``behind_serve_proxy``: Serve's proxy sets the answers' x-request-id, so the app does not."""
    # /metrics and /api/operations come with every app: whatever it serves is measured and followed there.
    areas = [*areas, *(["observability"] if "observability" not in areas else [])]
    modules = [importlib.import_module(f"deployments.routers.{area}") for area in areas]

    services = StudioServices(config=config, model_router=model_router)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await services.open(areas)
        yield
        await services.close()

    app = FastAPI(title="SAGE Studio", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    install_security(app, config)
    # Added last, so outermost: every answer, the security middleware's refusals included, carries the id.
    app.add_middleware(RequestContextMiddleware, metrics=services.metrics, set_header=not behind_serve_proxy)
    for module in modules:
        app.include_router(module.router)
    return app
