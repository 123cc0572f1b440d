"""A remote OpenAI-compatible endpoint behind the engine interface (cloud fallback, or a model served elsewhere)."""

from __future__ import annotations

from typing import AsyncIterator

import openai

from deployments.config import RemoteConfig
from deployments.engines.base import EngineInfo, EngineUnavailableError, GenerationChunk, GenerationRequest, LLMEngine


class RemoteEngine(LLMEngine):
    def __init__(self, remote: RemoteConfig, served_name: str | None = None):
        self.remote = remote
        self.served_name = served_name or remote.model
        # The official client brings retries with backoff and timeouts; no need to write our own.
        self._client = openai.AsyncOpenAI(
            base_url=remote.base_url, api_key=remote.api_key or "not-needed", max_retries=1,
            timeout=openai.Timeout(300, connect=10),  # a long generation is fine; an unreachable host is not
        )

    async def start(self) -> None:
        return None

    def info(self) -> EngineInfo:
        return EngineInfo(model=self.served_name, engine="remote", max_model_len=0)

    async def check_health(self) -> None:
        try:
            await self._client.models.list()
        except openai.OpenAIError as exc:
            raise EngineUnavailableError(f"remote endpoint {self.remote.base_url} is unreachable: {exc}") from exc

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        common = dict(
            model=self.remote.model,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            if request.messages is not None:
                stream = await self._client.chat.completions.create(messages=request.messages, **common)
            else:
                stream = await self._client.completions.create(prompt=request.prompt or "", **common)
            finish, usage = None, None
            async for event in stream:
                if event.usage is not None:
                    usage = event.usage
                for choice in event.choices:
                    text = choice.delta.content if request.messages is not None else choice.text
                    if text:
                        yield GenerationChunk(text=text)
                    finish = choice.finish_reason or finish
            yield GenerationChunk(
                text="",
                finish_reason=finish or "stop",
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            )
        except openai.OpenAIError as exc:
            raise EngineUnavailableError(f"remote endpoint {self.remote.base_url} failed: {exc}") from exc
