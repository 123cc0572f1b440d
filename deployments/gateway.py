"""The ingress deployment: the studio's one HTTP front door, holding only handles to the engine deployments."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.api import create_api
from deployments.config import StudioConfig


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, config: dict, engines: dict[str, DeploymentHandle]):
        self.config = StudioConfig.model_validate(config)
        self.engines = engines

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built in the replica: the app holds live handles and services, which don't pickle.
        return create_api(self.config, self.engines)
