"""The ingress deployment: the studio's one HTTP front door, holding only handles to the engine deployments."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.api import create_api
from deployments.config import GATEWAY_NAME, StudioConfig
from deployments.model_router import ModelRouter
from deployments.serving_state import ServingState

@serve.deployment(name=GATEWAY_NAME)
@serve.ingress()
class Gateway:
    def __init__(self, config: dict, engines: dict[str, DeploymentHandle],
                 embedders: dict[str, DeploymentHandle] | None = None):
        self.config = StudioConfig.model_validate(config)
        self.model_router = ModelRouter(self.config, engines, embedders or {})

    def reconfigure(self, user_config: dict) -> None:
        """The hot-swap path: Serve applies a new serving state in place, without restarting the replica."""
        self.model_router.apply(ServingState.model_validate(user_config or {}))

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built in the replica: the app holds live handles and services, which don't pickle.
        return create_api(self.config, self.model_router, behind_serve_proxy=True)
