"""The Serve deployment that hosts one engine: a shim between the engine and the gateway.

It takes the model config (and so the engine kind) as an argument, passes plain dataclasses across handle calls,
and turns engine health into Serve health so a dead engine gets its replica restarted.
"""

from __future__ import annotations

import logging
from typing import AsyncIterator

from ray import serve

from deployments.config import ModelConfig, RemoteConfig
from deployments.engines import create_engine
from deployments.engines.base import EngineInfo, GenerationChunk, GenerationRequest

logger = logging.getLogger("ray.serve")


@serve.deployment(health_check_period_s=10, health_check_timeout_s=30, graceful_shutdown_timeout_s=20)
class LLMDeployment:
    async def __init__(self, model: dict, remote: dict | None = None):
        self.config = ModelConfig.model_validate(model)
        remote_config = RemoteConfig.model_validate(remote) if remote else None
        self.engine = create_engine(self.config, remote_config)
        await self.engine.start()
        logger.info("engine %s ready for model %s", type(self.engine).__name__, self.config.name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.engine.generate(request):
            yield chunk

    async def info(self) -> EngineInfo:
        return self.engine.info()

    async def add_adapter(self, name: str, path: str) -> EngineInfo:
        await self.engine.add_adapter(name, path)
        return self.engine.info()

    async def reconfigure(self, user_config: dict) -> None:
        """Applied in place by Serve when only the user_config changed: preload the adapters now being served."""
        for name, path in (user_config or {}).get("adapters", {}).items():
            await self.engine.add_adapter(name, path)

    async def check_health(self) -> None:
        await self.engine.check_health()

    async def __del__(self):
        await self.engine.shutdown()
