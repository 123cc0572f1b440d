"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models, and /health."""

from __future__ import annotations

import json
from typing import AsyncIterator

from fastapi import APIRouter, HTTPException
from sse_starlette import EventSourceResponse

from deployments.engines.base import GenerationChunk, GenerationRequest
from deployments.model_router import Target
from deployments.openai_protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    ResponseMessage,
    make_usage,
    new_id,
    now,
)
from deployments.services import Models, Services
from sage_studio.settings import DEFAULT_MODEL_ALIAS

router = APIRouter()

# Without a max_tokens, stop here: a model that never emits EOS must not hold a replica for its whole context.
DEFAULT_MAX_TOKENS = 512


def _sampling(body, request_id: str, max_tokens: int | None) -> dict:
    return dict(
        request_id=request_id,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
    )


async def _start(chunks: AsyncIterator[GenerationChunk]) -> tuple[GenerationChunk | None, AsyncIterator]:
    """Wait for the first chunk before answering, so a missing model or a down engine is a proper HTTP error."""
    try:
        return await chunks.__anext__(), chunks
    except StopAsyncIteration:
        return None, chunks


async def _all(first: GenerationChunk | None, rest: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def _error_event(exc: Exception) -> dict:
    # Headers are gone once a stream has started: report a mid-stream failure in-band, as OpenAI does.
    return {"data": json.dumps({"error": {"message": f"generation failed: {exc}", "type": "server_error", "code": 500}})}


@router.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"])
async def chat_completions(body: ChatCompletionRequest, models: Models, services: Services):
    target = models.resolve(body.model)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    memory = services.memory
    if body.session_id is not None:
        if memory is None:
            raise HTTPException(501, detail="Sessions are not enabled on this gateway.")
        try:
            messages = await memory.build_messages(body.session_id, messages)
        except KeyError:
            raise HTTPException(404, detail=f"Session '{body.session_id}' does not exist.") from None
    user_text = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    request_id = new_id("chatcmpl")
    gen = GenerationRequest(messages=messages, **_sampling(body, request_id, body.max_completion_tokens or body.max_tokens))
    first, rest = await _start(models.generate(target, gen))

    async def remember(reply: str) -> None:
        if body.session_id is not None:
            await memory.record_turn(body.session_id, user_text, reply)

    if not body.stream:
        parts, last = [], first
        async for chunk in _all(first, rest):
            parts.append(chunk.text)
            last = chunk
        reply = "".join(parts)
        await remember(reply)
        return ChatCompletion(
            id=request_id,
            created=now(),
            model=target.model,
            choices=[ChatChoice(message=ResponseMessage(content=reply), finish_reason=last.finish_reason if last else "stop")],
            usage=make_usage(last.prompt_tokens if last else 0, last.completion_tokens if last else 0),
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventSourceResponse(_chat_events(target, request_id, first, rest, include_usage, remember), sep="\n")


async def _chat_events(target: Target, request_id: str, first, rest, include_usage: bool, remember):
    created = now()

    def event(delta: Delta, finish: str | None = None, usage=None) -> dict:
        chunk = ChatCompletionChunk(
            id=request_id,
            created=created,
            model=target.model,
            choices=[] if usage is not None else [ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        )
        return {"data": chunk.model_dump_json(exclude_none=usage is None)}

    yield event(Delta(role="assistant", content=""))
    parts: list[str] = []
    try:
        async for chunk in _all(first, rest):
            parts.append(chunk.text)
            if chunk.text or chunk.finish_reason:
                yield event(Delta(content=chunk.text or None), chunk.finish_reason)
            if chunk.finish_reason and include_usage:
                yield event(Delta(), usage=make_usage(chunk.prompt_tokens, chunk.completion_tokens))
    except Exception as exc:  # noqa: BLE001 - anything from the engine ends the stream with an in-band error
        yield _error_event(exc)
        return
    # Stored once, after the stream ended completely; a client that disconnects mid-stream stores nothing.
    await remember("".join(parts))
    yield {"data": "[DONE]"}


@router.post("/v1/completions", response_model=Completion, tags=["openai"])
async def completions(body: CompletionRequest, models: Models):
    target = models.resolve(body.model)
    request_id = new_id("cmpl")
    gen = GenerationRequest(prompt=body.prompt, **_sampling(body, request_id, body.max_tokens))
    first, rest = await _start(models.generate(target, gen))
    if not body.stream:
        parts, last = [], first
        async for chunk in _all(first, rest):
            parts.append(chunk.text)
            last = chunk
        return Completion(
            id=request_id,
            created=now(),
            model=target.model,
            choices=[CompletionChoice(text="".join(parts), finish_reason=last.finish_reason if last else "stop")],
            usage=make_usage(last.prompt_tokens if last else 0, last.completion_tokens if last else 0),
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events():
        created = now()
        try:
            async for chunk in _all(first, rest):
                if chunk.text or chunk.finish_reason:
                    out = Completion(
                        id=request_id,
                        created=created,
                        model=target.model,
                        choices=[CompletionChoice(text=chunk.text, finish_reason=chunk.finish_reason)],
                    )
                    yield {"data": out.model_dump_json(exclude_none=True)}
                if chunk.finish_reason and include_usage:
                    usage = make_usage(chunk.prompt_tokens, chunk.completion_tokens)
                    out = Completion(id=request_id, created=created, model=target.model, choices=[], usage=usage)
                    yield {"data": out.model_dump_json()}
        except Exception as exc:  # noqa: BLE001
            yield _error_event(exc)
            return
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n")


@router.get("/v1/models", response_model=ModelList, tags=["openai"])
async def list_models(models: Models) -> ModelList:
    cards = [ModelCard(id=name, root=name if parent is None else f"{parent}:{name}", parent=parent) for name, parent in models.served_names()]
    if models.default_model is not None:
        cards.insert(0, ModelCard(id=DEFAULT_MODEL_ALIAS, root=models.default_model))
    return ModelList(data=cards)


@router.get("/health", tags=["system"])
async def health(models: Models) -> dict:
    return {"status": "ok", "default_model": models.default_model, "models": [n for n, _ in models.served_names()]}
