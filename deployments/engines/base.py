"""The one small interface every LLM engine implements, and the plain data that crosses Serve handle calls."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Union


class EngineUnavailableError(RuntimeError):
    """The engine cannot answer now (not started, crashed, or its remote endpoint is unreachable)."""


class AdapterNotFoundError(LookupError):
    """A request named a LoRA adapter this engine does not know."""


OpenAIApi = Literal["chat", "completions", "responses"]


@dataclass
class OpenAIRequest:
    """One OpenAI API call for an engine, already resolved to a model: the request body as the client sent it
    (less the studio's own fields), with ``model`` set to the name this engine serves it under.

    ``api`` picks the route: ``chat`` (/v1/chat/completions), ``completions`` (/v1/completions) or ``responses``
    (/v1/responses). The body is never re-modelled on the way: the engine reads it with its own protocol (vLLM's,
    for the vLLM engine), so every field vLLM's own server accepts is accepted here.
    """

    api: OpenAIApi
    body: dict[str, Any]
    # A LoRA adapter served on this engine's base model, by its served name (None: the base model itself), and its
    # folder: every request carries it, so any replica can serve any adapter without a prior broadcast.
    adapter: str | None = None
    adapter_path: str | None = None
    # A fine-tune merged into the base weights, served by the same engine deployment instead of the base: its served
    # name and version (None: the base weights).
    weights: str | None = None
    weights_version: str | None = None
    # The gateway's x-request-id: the engine names the request by it (vLLM's request id, its log lines).
    request_id: str | None = None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @classmethod
    def probe(cls, model: str, **target: Any) -> "OpenAIRequest":
        """One greedy token: enough to prove that new weights or an adapter load and run."""
        body = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        return cls(api="completions", body=body, **target)


@dataclass
class OpenAIResponse:
    """A whole answer (a non-streamed response, or an error before any output): its HTTP status and JSON body.

    A streamed answer is a sequence of server-sent-event strings (``"data: {...}\\n\\n"``) instead, passed through as
    the engine wrote them; an error after the first event is reported in-band, as OpenAI does.
    """

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


OpenAIOutput = Union[OpenAIResponse, str]


def error_body(status: int, message: str, param: str | None = None, type_: str | None = None) -> OpenAIResponse:
    """An OpenAI-shaped error answer (what vLLM's server and the OpenAI API return)."""
    kind = type_ or {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}.get(status, "Error")
    return OpenAIResponse(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})


@dataclass
class EngineInfo:
    """What an engine serves: its model name, the adapters it can apply and where they come from."""

    model: str
    engine: str
    max_model_len: int
    adapters: dict[str, str] = field(default_factory=dict)


class LLMEngine(abc.ABC):
    """An LLM engine living inside one Serve replica.

    Lifecycle: ``__init__`` (cheap, no model loading) → ``await start()`` (loads the model) → any number of
    concurrent ``openai`` calls → ``await shutdown()``.

    ``openai`` is an async generator. For a non-streamed request (and for any request it refuses before output) it
    yields one ``OpenAIResponse``; for a streamed one it yields the server-sent events as soon as the engine produces
    them, ending with ``"data: [DONE]"``. A request the engine cannot carry out is an OpenAI error answer (4xx naming
    the field), never silently changed. It raises ``EngineUnavailableError`` when it cannot serve at all and
    ``AdapterNotFoundError`` for an unknown adapter.
    """

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    def openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]: ...

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
