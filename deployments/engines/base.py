"""The one small interface every LLM engine implements, and the plain data that crosses Serve handle calls."""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator


class EngineUnavailableError(RuntimeError):
    """The engine cannot answer now (not started, crashed, or its remote endpoint is unreachable)."""


class AdapterNotFoundError(LookupError):
    """A request named a LoRA adapter this engine does not know."""


@dataclass
class GenerationRequest:
    """One generation, already resolved to a model. Either ``messages`` (chat) or ``prompt`` (completion) is set."""

    request_id: str
    messages: list[dict] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # A LoRA adapter served on this engine's base model, by its served name (None: the base model itself), and its
    # folder: every request carries it, so any replica can serve any adapter without a prior broadcast.
    adapter: str | None = None
    adapter_path: str | None = None
    # A fine-tune merged into the base weights, served by the same engine deployment instead of the base: its served
    # name and version (None: the base weights).
    weights: str | None = None
    weights_version: str | None = None

    @classmethod
    def probe(cls, **target) -> GenerationRequest:
        """One greedy token: enough to prove that new weights or an adapter load and run."""
        return cls(request_id=f"probe-{uuid.uuid4().hex}", prompt="Hello", max_tokens=1, temperature=0, **target)


@dataclass
class GenerationChunk:
    """A piece of output. Engines yield text deltas; the last chunk carries ``finish_reason`` and token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class EngineInfo:
    """What an engine serves: its model name, the adapters it can apply and where they come from."""

    model: str
    engine: str
    max_model_len: int
    adapters: dict[str, str] = field(default_factory=dict)


def fit_to_context(prompt_tokens: int, max_tokens: int, max_model_len: int) -> int:
    """The completion budget left once the prompt is in the context; a prompt that fills it is a client error."""
    if prompt_tokens >= max_model_len:
        raise ValueError(
            f"The prompt is {prompt_tokens} tokens long but the model's context is {max_model_len} tokens: "
            "shorten the prompt or the conversation."
        )
    return min(max_tokens, max_model_len - prompt_tokens)


class LLMEngine(abc.ABC):
    """An LLM engine living inside one Serve replica.

    Lifecycle: ``__init__`` (cheap, no model loading) → ``await start()`` (loads the model) → any number of
    concurrent ``generate`` calls → ``await shutdown()``.

    ``generate`` is an async generator that yields ``GenerationChunk`` text deltas as soon as the engine produces
    them (never one block at the end); the final chunk has ``finish_reason`` ("stop" or "length") and the prompt and
    completion token counts. It raises ``EngineUnavailableError`` when it cannot serve and ``AdapterNotFoundError``
    for an unknown adapter.
    """

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (Serve then restarts the replica)."""

    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    async def add_adapter(self, name: str, path: str) -> None:
        """Make a LoRA adapter servable under ``name`` (engines without LoRA support refuse)."""
        raise AdapterNotFoundError(f"The {type(self).__name__} cannot serve LoRA adapters.")

    async def shutdown(self) -> None:
        return None
