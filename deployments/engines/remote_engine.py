"""A remote OpenAI-compatible endpoint behind the engine interface (cloud fallback, or a model served elsewhere).

Requests are forwarded as they came, only ``model`` set to the remote's model name: whatever the remote accepts
(tools, structured output, logprobs, ...) works, and what it refuses comes back with its own status and message.
"""

from __future__ import annotations

import json
from typing import AsyncIterator

import httpx

from deployments.config import RemoteConfig
from deployments.engines.base import (
    EngineInfo,
    EngineUnavailableError,
    LLMEngine,
    OpenAIOutput,
    OpenAIRequest,
    OpenAIResponse,
    error_body,
)

PATHS = {"chat": "/chat/completions", "completions": "/completions", "responses": "/responses"}


class RemoteEngine(LLMEngine):
    def __init__(self, remote: RemoteConfig, served_name: str | None = None):
        self.remote = remote
        self.served_name = served_name or remote.model
        headers = {"Authorization": f"Bearer {remote.api_key}"} if remote.api_key else {}
        # A long generation is fine; an unreachable host is not. httpx's transport retries a failed connect once.
        self._client = httpx.AsyncClient(base_url=remote.base_url.rstrip("/"), headers=headers,
                                         timeout=httpx.Timeout(300, connect=10),
                                         transport=httpx.AsyncHTTPTransport(retries=1))

    async def start(self) -> None:
        return None

    def info(self) -> EngineInfo:
        return EngineInfo(model=self.served_name, engine="remote", max_model_len=0)

    async def check_health(self) -> None:
        try:
            (await self._client.get("/models")).raise_for_status()
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(f"remote endpoint {self.remote.base_url} is unreachable: {exc}") from exc

    async def openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        body = request.body | {"model": self.remote.model}
        try:
            headers = {"X-Request-Id": request.request_id} if request.request_id else None
            async with self._client.stream("POST", PATHS[request.api], json=body, headers=headers) as response:
                if not response.is_success or not request.stream:
                    yield _whole(response.status_code, await response.aread())
                    return
                async for event in _events(response):
                    yield event
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(f"remote endpoint {self.remote.base_url} failed: {exc}") from exc


def _whole(status: int, content: bytes) -> OpenAIResponse:
    try:
        body = json.loads(content)
    except ValueError:
        return error_body(status if status >= 400 else 502, f"The remote endpoint answered {status} without JSON: "
                          f"{content[:200].decode('utf-8', 'replace')}")
    return OpenAIResponse(status, body if isinstance(body, dict) else {"data": body})


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    """The server-sent events of a streamed answer, one whole event (its lines and the blank line) at a time."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
        elif lines:
            yield "\n".join(lines) + "\n\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n\n"
