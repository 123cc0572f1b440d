"""The Serve deployment that hosts one engine: a shim between the engine and the gateway.

It takes the model config (and so the engine kind) as an argument, passes plain dataclasses across handle calls,
and turns engine health into Serve health so a dead engine gets its replica restarted. The weights it serves (the
base model, or a fine-tune merged into it) are a ``WeightSet``: a switch loads the new ones beside the old ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from ray import serve

from deployments.config import ModelConfig, RemoteConfig
from deployments.engine_weights import WeightSet, WeightsNotLoadedError
from deployments.engines import create_engine
from deployments.engines.base import EngineInfo, EngineUnavailableError, OpenAIOutput, OpenAIRequest
from deployments.serving_state import load_state

logger = logging.getLogger("ray.serve")


@serve.deployment(health_check_period_s=10, health_check_timeout_s=30, graceful_shutdown_timeout_s=20)
class LLMDeployment:
    async def __init__(self, model: dict, remote: dict | None = None, weights: dict | None = None):
        """``weights``: the merged fine-tune to start with (the persisted choice), else the base model."""
        self.config = ModelConfig.model_validate(model)
        remote_config = RemoteConfig.model_validate(remote) if remote else None
        self.weights = WeightSet(self.config, lambda config: create_engine(config, remote_config))
        await self.weights.start(self._first_weights(weights))
        logger.info("engine ready for model %s (%s)", self.config.name, self.weights.status())

    def _first_weights(self, built_with: dict | None) -> dict | None:
        """The weights to load before reporting ready: the persisted choice, which switches change without
        rebuilding the app (a replica restarted after one would otherwise load the build-time weights, then the
        current ones beside them: twice the load, twice the memory). Merged weights whose folder is gone mean the
        base model, rather than a replica that fails every restart."""
        home = os.environ.get("SAGE_HOME")
        try:
            state = load_state(home) if home else None
        except ValueError:  # an unreadable serving.json: the gateway reports it; serve what the app was built with
            state = None
        if state is None:
            return built_with
        name = state.merged_on(self.config.name)
        if name is None:
            return None
        if not state.merged[name].on_disk:
            logger.warning("merged weights %s are gone; starting model %s on its base weights",
                           state.merged[name].path, self.config.name)
            return None
        return state.merged[name].weights(name)

    async def openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        """An OpenAI API call on the weights it names: one ``OpenAIResponse``, or the SSE events of a stream."""
        async with self.weights.use(request.weights, request.weights_version) as engine:
            async for item in engine.openai(request):
                yield item

    async def info(self) -> EngineInfo:
        engine = self.weights.any_engine()
        if engine is None:
            raise EngineUnavailableError(f"no weights are loaded for model {self.config.name}")
        return engine.info()

    async def add_adapter(self, name: str, path: str) -> EngineInfo:
        engine = self.weights.base_engine()
        if engine is None:
            raise WeightsNotLoadedError(f"the base model '{self.config.name}' is not loaded: a merged fine-tune "
                                        "holds its engine, so adapters cannot be served on it now")
        await engine.add_adapter(name, path)
        return engine.info()

    async def wait_weights(self, spec: dict | None, timeout_s: float = 600) -> str:
        """Wait until these weights are loaded on this replica: 'ready', 'loading', 'failed: …' or 'not loaded'."""
        return await self.weights.wait(spec, timeout_s)

    async def weights_status(self) -> dict[str, str]:
        return self.weights.status()

    async def reconfigure(self, user_config: dict) -> None:
        """Applied in place by Serve when only the user_config changed. It must return at once (Serve routes nothing
        to a replica while it reconfigures): new weights load in the background, old ones retire once idle."""
        user_config = user_config or {}
        self.weights.want(user_config.get("weights", [None]), user_config.get("adapters", {}))

    async def check_health(self) -> None:
        await self.weights.check_health()

    async def __del__(self):
        await self.weights.shutdown()
