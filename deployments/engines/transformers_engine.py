"""A plain transformers engine for hosts where vLLM cannot run (e.g. macOS laptops).

It generates one request at a time (a lock), streaming through ``TextIteratorStreamer`` from a worker thread: slow
under load, but correct everywhere torch runs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator

from deployments.config import ModelConfig
from deployments.engines.base import EngineInfo, EngineUnavailableError, GenerationChunk, GenerationRequest, LLMEngine, fit_to_context


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

    def _encode(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            return self._tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        return self._tokenizer(request.prompt or "")["input_ids"]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        if request.adapter:
            raise EngineUnavailableError("the transformers engine serves base models only")
        await self.check_health()
        async with self._lock:
            ids = self._encode(request)
            max_new = fit_to_context(len(ids), request.max_tokens, self.config.max_model_len)
            streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
            generated: list[int] = []

            def run():
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                with torch.inference_mode():
                    out = self._model.generate(
                        torch.tensor([ids]),
                        max_new_tokens=max_new,
                        do_sample=request.temperature > 0,
                        temperature=max(request.temperature, 1e-5),
                        top_p=request.top_p,
                        streamer=streamer,
                        pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                    )
                generated.extend(out[0][len(ids) :].tolist())

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            iterator = iter(streamer)
            while True:
                text = await asyncio.to_thread(next, iterator, None)
                if text is None:
                    break
                if text:
                    yield GenerationChunk(text=text)
            await asyncio.to_thread(thread.join)
            finish = "length" if len(generated) >= max_new else "stop"
            yield GenerationChunk(
                text="", finish_reason=finish, prompt_tokens=len(ids), completion_tokens=len(generated)
            )
