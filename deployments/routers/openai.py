"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings, /v1/models, /health.

The gateway does not model the OpenAI protocol. It reads the JSON body, resolves ``model`` (``sage-default``,
``<base>:<adapter>``, fine-tune names), applies the studio's one extra field (``session_id``: the session's memory
goes into the messages and the turn is stored) and hands the rest, unchanged, to the engine, which answers with
vLLM's own serving layer (``deployments/engines/vllm_engine.py``). The answer comes back as the engine wrote it:
a JSON body with its status, or server-sent events passed through one by one.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from deployments.engines.base import OpenAIApi, OpenAIOutput, OpenAIRequest, OpenAIResponse
from deployments.accounting import Accounting, usage_of_event
from deployments.request_context import request_id_of, set_model_label, started_at
from deployments.services import Models, Services, StudioServices
from deployments.session_turns import StreamedReply, last_user_text, new_messages, reply_from_body
from sage_studio.sessions.models import TurnMessage
from sage_studio.settings import DEFAULT_MODEL_ALIAS

router = APIRouter()
OnReply = Callable[[TurnMessage], Awaitable[None]]


def _body_schema(required: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """The request body in the OpenAPI schema: the fields the gateway itself reads; every other field of the OpenAI
    API (tools, response_format, logprobs, n, ...) passes through to vLLM, whose protocol validates it."""
    properties = {"model": {"type": "string", "minLength": 1, "description": "A served model, 'sage-default', or "
                            "'<base>:<adapter>' (GET /v1/models)."},
                  "stream": {"type": "boolean"}} | extra
    schema = {"type": "object", "required": required, "properties": properties, "additionalProperties": True}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


MESSAGES = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"],
                                                      "properties": {"role": {"type": "string"}}}}
CHAT_BODY = _body_schema(["model", "messages"], {
    "messages": MESSAGES,
    "session_id": {"type": "string", "description": "A studio session: its memory is injected and the turn stored."},
})
COMPLETION_BODY = _body_schema(["model", "prompt"], {"prompt": {"anyOf": [{"type": "string"}, {"type": "array"}]}})
RESPONSES_BODY = _body_schema(["model", "input"], {"input": {"anyOf": [{"type": "string"}, {"type": "array"}]}})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, detail="The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise HTTPException(400, detail="The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise HTTPException(400, detail="'model' is required: a served model name (GET /v1/models) or "
                                        f"'{DEFAULT_MODEL_ALIAS}'.")
    return body


async def _answer(request: Request, services: StudioServices, api: OpenAIApi, body: dict[str, Any],
                  on_reply: OnReply | None = None, session_id: str | None = None):
    """The engine's answer as an HTTP response; waits for its first output, so a missing model or a down engine
    is a proper HTTP error rather than a broken stream. Counts its tokens (metrics, usage ledger) on the way."""
    models = services.model_router
    target = models.resolve(body["model"])
    set_model_label(request, target.model)
    request_id = request_id_of(request)
    account = Accounting(services, target.model, request, session_id)
    strip_usage = account.ask_stream_usage(api, body)
    outputs = models.openai(target, OpenAIRequest(api=api, body=body, request_id=request_id))
    services.metrics.overhead.labels(target.model).observe(time.perf_counter() - started_at(request))
    first = await anext(outputs, None)
    if first is None:
        raise HTTPException(502, detail=f"The engine of '{target.model}' ended without an answer.")
    if isinstance(first, OpenAIResponse):
        if first.ok:
            if on_reply is not None:
                await on_reply(reply_from_body(first.body).model_copy(update={"request_id": request_id}))
            return JSONResponse(first.body, status_code=first.status,
                                background=account.task(first.body.get("usage")))
        return JSONResponse(first.body, status_code=first.status)
    services.metrics.ttft.labels(target.model).observe(time.perf_counter() - started_at(request))
    return StreamingResponse(_events(first, outputs, on_reply, account, strip_usage, request_id),
                             media_type="text/event-stream")


async def _events(first: str, rest: AsyncIterator[OpenAIOutput], on_reply: OnReply | None, account: Accounting,
                  strip_usage: bool, request_id: str | None) -> AsyncIterator[str]:
    reply = StreamedReply()
    event = first
    try:
        while event is not None:
            usage = usage_of_event(event)
            if usage is not None:
                # Accounted before [DONE], like the session turn: a client may hang up as soon as it sees [DONE].
                await account.record(usage)
                if strip_usage:  # the client did not ask for the usage chunk: the gateway did, for itself
                    event = await anext(rest, None)
                    continue
            if on_reply is not None:
                if event.startswith("data: [DONE]"):
                    # Stored before the client sees the end: a client closes the connection on [DONE], which can
                    # cancel this generator before the stream's own end is reached.
                    await on_reply(reply.message().model_copy(update={"request_id": request_id}))
                    on_reply = None
                else:
                    reply.add(event)
            yield event
            event = await anext(rest, None)
    except Exception as exc:  # noqa: BLE001 - headers are gone once a stream has started: report it in-band
        error = {"error": {"message": f"generation failed: {exc}", "type": "server_error", "code": 500}}
        yield f"data: {json.dumps(error)}\n\n"
        return
    # A stream without [DONE] is stored once it ended completely; a client that disconnects mid-stream stores nothing.
    if on_reply is not None:
        await on_reply(reply.message().model_copy(update={"request_id": request_id}))


@router.post("/v1/chat/completions", tags=["openai"], openapi_extra=CHAT_BODY)
async def chat_completions(request: Request, models: Models, services: Services):
    body = await _json_object(request)
    session_id = body.pop("session_id", None)
    if session_id is None:
        return await _answer(request, services, "chat", body)
    memory = services.memory
    if memory is None:
        raise HTTPException(501, detail="Sessions are not enabled on this gateway.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise HTTPException(400, detail="'messages' must be a list of message objects.")
    try:
        body["messages"] = await memory.build_messages(str(session_id), messages)
    except KeyError:
        raise HTTPException(404, detail=f"Session '{session_id}' does not exist.") from None
    request_id = request_id_of(request)
    inputs = [m.model_copy(update={"request_id": request_id}) for m in new_messages(messages)]
    query = last_user_text(messages)

    async def remember(reply: TurnMessage) -> None:
        await memory.record_turn(str(session_id), inputs, reply, query=query)

    return await _answer(request, services, "chat", body, remember, str(session_id))


@router.post("/v1/completions", tags=["openai"], openapi_extra=COMPLETION_BODY)
async def completions(request: Request, models: Models, services: Services):
    return await _answer(request, services, "completions", await _json_object(request))


@router.post("/v1/responses", tags=["openai"], openapi_extra=RESPONSES_BODY)
async def responses(request: Request, models: Models, services: Services):
    return await _answer(request, services, "responses", await _json_object(request))


EMBEDDINGS_BODY = _body_schema(["model", "input"], {"input": {"anyOf": [{"type": "string"}, {"type": "array"}]}})


@router.post("/v1/embeddings", tags=["openai"], openapi_extra=EMBEDDINGS_BODY)
async def embeddings(request: Request, models: Models):
    body = await _json_object(request)
    handle = models.embedders.get(body["model"])
    if handle is None:
        served = ", ".join(models.embedders) or "none (embedding_models is empty)"
        raise HTTPException(404, detail=f"The embedding model '{body['model']}' is not served here; served: {served}.")
    answer: OpenAIResponse = await handle.embed.remote(body)
    return JSONResponse(answer.body, status_code=answer.status)


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "sage-studio"
    kind: Literal["chat", "embedding"] = Field("chat", description="What the model serves: chat and completions "
                                               "(and /v1/responses), or /v1/embeddings.")
    root: str | None = Field(None, description="What the name resolves to (for aliases and adapters).")
    parent: str | None = Field(None, description="Base model of an adapter.")


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


@router.get("/v1/models", response_model=ModelList, tags=["openai"])
async def list_models(models: Models) -> ModelList:
    cards = [ModelCard(id=name, root=name if parent is None else f"{parent}:{name}", parent=parent)
             for name, parent in models.served_names()]
    if models.default_model is not None:
        cards.insert(0, ModelCard(id=DEFAULT_MODEL_ALIAS, root=models.default_model))
    cards += [ModelCard(id=name, root=name, kind="embedding") for name in models.embedders]
    return ModelList(data=cards)


@router.get("/health", tags=["system"])
async def health(models: Models) -> dict:
    return {"status": "ok", "default_model": models.default_model, "models": [n for n, _ in models.served_names()]}
