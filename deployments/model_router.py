"""Name → engine resolution for the gateway, with the remote fallback when the local engine is down."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import AsyncIterator

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.config import StudioConfig
from deployments.engines.base import AdapterNotFoundError, EngineUnavailableError, OpenAIOutput, OpenAIRequest
from deployments.engines.remote_engine import RemoteEngine
from deployments.serving_state import ServingState
from sage_studio.settings import DEFAULT_MODEL_ALIAS

logger = logging.getLogger("ray.serve")


class ModelNotFoundError(LookupError):
    """The requested model name is not served here."""


class EngineDownError(RuntimeError):
    """No engine can answer: the local one is down and no remote endpoint is configured."""


class EngineBusyError(RuntimeError):
    """The engine's queue is full: Serve refused the request at the gateway's handle (``BackPressureError``).

    Serve installs its own plain-text handler for ``BackPressureError`` on every ingress app, over ours, so the
    gateway answers this error instead: the engine deployment's ``backpressure_config`` status and Retry-After,
    in OpenAI's error shape."""

    def __init__(self, model: str, refusal: BackPressureError):
        self.status_code = refusal.status_code
        self.retry_after_s = None if refusal.retry_after_s is None else math.ceil(refusal.retry_after_s)
        wait = f"Retry in {self.retry_after_s} s." if self.retry_after_s is not None else "Retry shortly."
        super().__init__(f"The model '{model}' is at capacity and its queue is full. {refusal.message} {wait}")


@dataclass(frozen=True)
class Target:
    """Where a request goes: a local engine deployment (optionally with an adapter) or the remote endpoint."""

    model: str
    handle: DeploymentHandle | None
    adapter: str | None = None
    adapter_path: str | None = None
    weights: str | None = None  # a merged fine-tune held by the engine (None: its base weights)
    weights_version: str | None = None


class ModelRouter:
    def __init__(self, config: StudioConfig, handles: dict[str, DeploymentHandle],
                 embedders: dict[str, DeploymentHandle] | None = None):
        self.config = config
        self.handles = handles
        self.embedders = embedders or {}  # /v1/embeddings: model name → embedding deployment
        self.remote = RemoteEngine(config.remote) if config.remote else None
        self.first_chunk_timeout_s = config.gateway.first_chunk_timeout_s
        self.serving = ServingState()

    def apply(self, state: ServingState) -> None:
        """Take a new serving state (from Serve's reconfigure): swapped in one assignment, so a request sees
        either the old or the new state, never a mix."""
        self.serving = state

    @property
    def merged(self) -> dict[str, str]:
        """Served merged fine-tune name → base model name (whose engine holds it instead of the base)."""
        return {name: m.base for name, m in self.serving.merged.items()
                if m.base in self.handles and self.serving.merged_on(m.base) == name}

    @property
    def bases(self) -> list[str]:
        """Base models whose engines serve their own weights now."""
        replaced = set(self.merged.values())
        return [name for name in self.handles if name not in replaced]

    @property
    def adapters(self) -> dict[str, str]:
        """Served adapter name → base model name (adapters apply to base weights, not to a merged fine-tune)."""
        bases = set(self.bases)
        return {name: a.base for name, a in self.serving.adapters.items() if a.base in bases}

    @property
    def default_model(self) -> str | None:
        chosen = self.serving.default_model
        if chosen is not None and (chosen in self.bases or chosen in self.adapters or chosen in self.merged):
            return chosen
        return self.config.default_model or (self.config.remote.model if self.config.remote else None)

    def resolve(self, name: str) -> Target:
        if name == DEFAULT_MODEL_ALIAS:
            if self.default_model is None:
                raise EngineDownError(self._down_message())
            name = self.default_model
        if name in self.merged:
            entry = self.serving.merged[name]
            return Target(name, self.handles[entry.base], weights=name, weights_version=entry.version)
        if name in self.handles and name not in self.bases:
            holder = self.serving.merged_on(name)
            raise ModelNotFoundError(
                f"The model '{name}' is not loaded now: its engine serves the fine-tune '{holder}', merged into its "
                f"weights. POST /api/finetune/switch-model {{\"model\": \"{name}\"}} serves it again."
            )
        if name in self.handles:
            return Target(name, self.handles[name])
        base, _, adapter = name.rpartition(":") if ":" in name else ("", "", name)
        if adapter in self.adapters and base in ("", self.adapters[adapter]):
            entry = self.serving.adapters[adapter]
            return Target(name, self.handles[entry.base], adapter=adapter, adapter_path=entry.path)
        if self.remote is not None and name in (self.remote.remote.model, self.default_model):
            return Target(name, None)
        raise ModelNotFoundError(f"The model '{name}' does not exist. GET /v1/models lists the served models.")

    def served_names(self) -> list[tuple[str, str | None]]:
        """(name, parent) pairs for /v1/models."""
        names: list[tuple[str, str | None]] = [(n, None) for n in self.bases]
        names += [(a, base) for a, base in self.adapters.items()]
        names += [(m, base) for m, base in self.merged.items()]
        if self.remote is not None and self.remote.remote.model not in self.handles:
            names.append((self.remote.remote.model, None))
        return names

    def _down_message(self) -> str:
        return (
            "No LLM engine is available: the local engine is not running and no remote endpoint is configured. "
            "Start the studio with a local model (`sage studio start`, without --no-llm) or set SAGE_CHAT_BASE_URL, "
            "SAGE_CHAT_API_KEY and SAGE_CHAT_MODEL to fall back to an OpenAI-compatible service."
        )

    async def openai(self, target: Target, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        """The target engine's answer; falls back to the remote endpoint if the local one fails before output."""
        if target.handle is None:
            async for item in self._remote_openai(request):
                yield item
            return
        request.adapter, request.adapter_path = target.adapter, target.adapter_path
        request.weights, request.weights_version = target.weights, target.weights_version
        stream = target.handle.options(stream=True).openai.remote(request)
        iterator = stream.__aiter__()
        try:
            first = await asyncio.wait_for(iterator.__anext__(), timeout=self.first_chunk_timeout_s)
        except StopAsyncIteration:
            return
        except AdapterNotFoundError as exc:
            raise ModelNotFoundError(str(exc)) from exc
        except (EngineUnavailableError, RayActorError, BackPressureError, asyncio.TimeoutError) as exc:
            if not isinstance(exc, BackPressureError):  # a refused request was never assigned: nothing to cancel,
                stream.cancel()  # and cancel() would raise the refusal again
            if self.remote is None and isinstance(exc, BackPressureError):
                raise EngineBusyError(target.model, exc) from None
            if self.remote is None and isinstance(exc, asyncio.TimeoutError):
                # The engine is up but saturated: say so, rather than claim it is not running.
                raise EngineDownError(
                    f"The model '{target.model}' gave no output within {self.first_chunk_timeout_s:.0f} s: its engine "
                    "is overloaded. Retry shortly, or set SAGE_CHAT_BASE_URL, SAGE_CHAT_API_KEY and SAGE_CHAT_MODEL "
                    "to fall back to an OpenAI-compatible service."
                ) from None
            logger.warning("local engine for %s unavailable (%s): falling back", target.model, type(exc).__name__)
            async for item in self._remote_openai(request):
                yield item
            return
        yield first
        async for item in iterator:
            yield item

    async def _remote_openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        if self.remote is None:
            raise EngineDownError(self._down_message())
        request.adapter = request.adapter_path = request.weights = request.weights_version = None
        async for item in self.remote.openai(request):
            yield item
