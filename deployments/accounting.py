"""The tokens of each answer, as the engine counted them: into ``studio_tokens_total`` and the usage ledger
(``GET /api/usage``), per session and per API key.

A whole answer carries ``usage``. A stream carries it only when asked (``stream_options.include_usage``, which vLLM
answers with a last chunk of no choices and the usage), so the gateway asks for it on every chat and completions
stream; when the client had not asked, that chunk is read here and not passed on, so the client sees the stream it
asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request

from deployments.request_context import request_id_of
from deployments.security import route_path
from deployments.services import StudioServices
from sage_studio.usage import UsageRecord, key_id

logger = logging.getLogger("ray.serve")
STREAM_USAGE_APIS = ("chat", "completions")


def usage_of_event(event: str) -> dict[str, Any] | None:
    """The usage a stream event carries (vLLM's last chunk with ``include_usage``), else None. Cheap on the other
    events: only one that names a usage object is parsed."""
    if '"usage":{' not in event and '"usage": {' not in event:
        return None
    data = event.removeprefix("data: ").strip()
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    usage = chunk.get("usage") if isinstance(chunk, dict) else None
    if not isinstance(usage, dict) or chunk.get("choices"):
        return None  # continuous usage stats ride on chunks with choices: the last chunk holds the total
    return usage


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of a chat/completions usage or a Responses API one (input/output tokens)."""
    prompt = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
    completion = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    return int(prompt), int(completion)


class Accounting:
    """The accounting of one model request."""

    def __init__(self, services: StudioServices, model: str, request: Request, session_id: str | None):
        self.metrics = services.metrics
        self.ledger = services.usage
        self.record_of = lambda prompt, completion: UsageRecord(
            model=model, prompt_tokens=prompt, completion_tokens=completion, route=route_path(request.scope),
            key_id=key_id(request.headers.get("authorization")), session_id=session_id,
            request_id=request_id_of(request))
        self.model = model
        self.done = False

    @staticmethod
    def ask_stream_usage(api: str, body: dict[str, Any]) -> bool:
        """Ask the engine for a stream's usage; True when the client had not asked (the chunk is then dropped)."""
        if not body.get("stream") or api not in STREAM_USAGE_APIS:
            return False
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            return False  # the engine's protocol refuses it with a 400: leave the body as it came
        if (options or {}).get("include_usage"):
            return False
        body["stream_options"] = {**(options or {}), "include_usage": True}
        return True

    def _write(self, usage: dict[str, Any]) -> None:
        if self.done:
            return
        self.done = True
        prompt, completion = _tokens(usage)
        self.metrics.tokens.labels(self.model, "prompt").inc(prompt)
        self.metrics.tokens.labels(self.model, "completion").inc(completion)
        if self.ledger is not None:
            try:
                self.ledger.record(self.record_of(prompt, completion))
            except Exception:  # noqa: BLE001 - accounting must never fail an answer that was given
                logger.exception("usage not recorded")

    async def record(self, usage: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write, usage)

    def task(self, usage: Any) -> BackgroundTask | None:
        """Accounting of a whole answer, run after it is sent."""
        return BackgroundTask(self._write, usage) if isinstance(usage, dict) else None
