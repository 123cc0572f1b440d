"""A plain transformers engine for hosts where vLLM cannot run (e.g. macOS laptops).

It generates one request at a time (a lock), streaming through ``TextIteratorStreamer`` from a worker thread: slow
under load, but correct everywhere torch runs. It speaks the common core of the OpenAI API (chat and completions,
text only, one choice, sampling by temperature/top_p/seed/stop) and answers 400 naming the field for anything else:
nothing a client asks for is silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any, AsyncIterator

from deployments.config import ModelConfig
from deployments.engines.base import (
    EngineInfo,
    EngineUnavailableError,
    LLMEngine,
    OpenAIOutput,
    OpenAIRequest,
    OpenAIResponse,
    error_body,
)

COMMON = {"model", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "stream_options", "user", "n"}
FIELDS = {"chat": COMMON | {"messages", "max_completion_tokens"}, "completions": COMMON | {"prompt"}}


def refusal(api: str, body: dict[str, Any]) -> OpenAIResponse | None:
    """A 400 for the first thing in ``body`` this engine cannot do (None: it can do all of it)."""
    if api not in FIELDS:
        return error_body(400, f"The transformers engine does not serve the {api} API; use a vLLM engine.")
    for name, value in body.items():
        if name not in FIELDS[api] and value is not None:
            return error_body(400, f"'{name}' is not supported by the transformers engine of this model (it "
                                   "supports " + ", ".join(sorted(FIELDS[api])) + "); use a vLLM engine.", name)
    if body.get("n") not in (None, 1):
        return error_body(400, "'n' must be 1 on the transformers engine.", "n")
    if api == "completions" and not isinstance(body.get("prompt"), str):
        return error_body(400, "'prompt' must be one string on the transformers engine.", "prompt")
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_body(400, "'messages' must be a non-empty list.", "messages")
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            parts = content if isinstance(content, list) else []
            if not isinstance(content, (str, list)) or any(p.get("type") != "text" for p in parts):
                return error_body(400, f"messages[{i}]: the transformers engine takes text content only (no "
                                       "images, audio or tool calls).", f"messages.{i}.content")
    return None


def _text(content: str | list) -> str:
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


class TransformersEngine(LLMEngine):
    def __init__(self, config: ModelConfig, model_path: str):
        self.config = config
        self.model_path = model_path
        self._model = None
        self._tokenizer = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        def load():
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            dtype = torch.float32 if self.config.dtype == "auto" else getattr(torch, self.config.dtype)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype).eval()
            return model, tokenizer

        self._model, self._tokenizer = await asyncio.to_thread(load)

    def info(self) -> EngineInfo:
        return EngineInfo(model=self.config.name, engine="transformers", max_model_len=self.config.max_model_len)

    async def check_health(self) -> None:
        if self._model is None:
            raise EngineUnavailableError("the transformers engine has not loaded its model")

    async def openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        if request.adapter:
            yield error_body(400, "The transformers engine serves base models only, not LoRA adapters.", "model")
            return
        body = request.body
        if (refused := refusal(request.api, body)) is not None:
            yield refused
            return
        chat = request.api == "chat"
        if chat:
            messages = [{"role": m["role"], "content": _text(m["content"])} for m in body["messages"]]
            ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=False)
        else:
            ids = self._tokenizer(body["prompt"])["input_ids"]
        if len(ids) >= self.config.max_model_len:
            yield error_body(400, f"The prompt is {len(ids)} tokens long but the model's context is "
                                  f"{self.config.max_model_len} tokens.", "messages" if chat else "prompt")
            return
        budget = min(body.get("max_completion_tokens") or body.get("max_tokens") or 512,
                     self.config.max_model_len - len(ids))
        stop = body.get("stop") or []
        answer = _Answer(chat, self.config.name)
        parts: list[str] = []
        async for text, done in self._generate(ids, budget, body, [stop] if isinstance(stop, str) else stop):
            if done is not None:
                finish, usage = done
                break
            parts.append(text)
            if body.get("stream"):
                yield answer.event(text, first=len(parts) == 1)
        if not body.get("stream"):
            yield OpenAIResponse(200, answer.whole("".join(parts), finish, usage))
            return
        yield answer.event("", finish=finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            yield answer.event(None, usage=usage)
        yield "data: [DONE]\n\n"

    async def _generate(self, ids: list[int], max_new: int, body: dict, stop: list[str]
                        ) -> AsyncIterator[tuple[str, tuple[str, dict] | None]]:
        """Text deltas, then ``("", (finish_reason, usage))``."""
        import torch
        from transformers import TextIteratorStreamer

        await self.check_health()
        temperature = body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0
        async with self._lock:
            streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
            generated: list[int] = []

            def run():
                if body.get("seed") is not None:
                    torch.manual_seed(body["seed"])
                with torch.inference_mode():
                    out = self._model.generate(
                        torch.tensor([ids]), max_new_tokens=max_new, do_sample=temperature > 0,
                        temperature=max(temperature, 1e-5), top_p=body.get("top_p") or 1.0,
                        stop_strings=stop or None, tokenizer=self._tokenizer, streamer=streamer,
                        pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                    )
                generated.extend(out[0][len(ids):].tolist())

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            iterator = iter(streamer)
            while (text := await asyncio.to_thread(next, iterator, None)) is not None:
                if text:
                    yield text, None
            await asyncio.to_thread(thread.join)
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(generated),
                 "total_tokens": len(ids) + len(generated)}
        yield "", ("length" if len(generated) >= max_new else "stop", usage)


class _Answer:
    """OpenAI's answer shapes (chat.completion[.chunk], text_completion) for one request."""

    def __init__(self, chat: bool, model: str):
        self.chat = chat
        self.common = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
                       "model": model}

    def whole(self, text: str, finish: str, usage: dict) -> dict:
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                  if self.chat else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
        kind = "chat.completion" if self.chat else "text_completion"
        return {"object": kind, **self.common, "choices": [choice], "usage": usage}

    def event(self, text: str | None, first: bool = False, finish: str | None = None, usage: dict | None = None) -> str:
        if text is None:  # the usage chunk of stream_options.include_usage
            choices = []
        elif self.chat:
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
        else:
            choices = [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        chunk = {"object": kind, **self.common, "choices": choices} | ({"usage": usage} if usage else {})
        return f"data: {json.dumps(chunk)}\n\n"
