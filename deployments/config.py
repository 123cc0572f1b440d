"""The validated configuration of the whole Serve application (what ``build_app`` takes)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sage_studio.memory.config import DEFAULT_EMBEDDING_MODEL, MemoryConfig
from sage_studio.model_store import hub_model_name
from sage_studio.settings import DEFAULT_MODEL_ALIAS, DEFAULT_MODEL_NAME, get_settings

EngineKind = Literal["auto", "vllm", "transformers", "remote"]

# Engine request limits (ModelConfig.serve_limits). The CPU ones come from SmolLM2-135M on vLLM-CPU on a 2-core host
# (docs/reliability.md#back-pressure): ~0.26 requests/s at 8 streams, and no more at 16 or 32, only slower. 8 queued
# then wait ~30 s, inside the gateway's 60 s first-output timeout. The GPU ones (not measured here) keep the earlier
# 64 ongoing, with a queue of twice that.
CPU_MAX_ONGOING, CPU_MAX_QUEUED, RETRY_AFTER_S = 8, 8, 5.0
GPU_MAX_ONGOING, GPU_MAX_QUEUED = 64, 128


# The chat template's turn markers → the vLLM tool-call parser of that model family.
TOOL_PARSERS_BY_TEMPLATE = (("<|im_start|>", "hermes"), ("<|start_header_id|>", "llama3_json"), ("[INST]", "mistral"))

# Serve deployment names: the builder, the hot swap and `sage studio status` all find deployments by them.
GATEWAY_NAME = "Gateway"


def engine_deployment_name(model_name: str) -> str:
    return "LLM-" + _safe(model_name)


def embedding_deployment_name(model_name: str) -> str:
    return "Embed-" + _safe(Path(model_name).name)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class AutoscalingConfig(BaseModel):
    """Serve autoscaling bounds for one engine deployment."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, description="Replicas kept even when idle.")
    max_replicas: int = Field(1, ge=1, description="Upper bound on replicas.")
    target_ongoing_requests: float = Field(8, gt=0, description="Ongoing requests per replica Serve aims for.")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ModelConfig(BaseModel):
    """One served model: one engine deployment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The name clients ask for in the 'model' field.", min_length=1)
    source: str = Field(description="Checkpoint folder, a model name prepared under SAGE_HOME/models, or a Hugging "
                        "Face hub id (org/name[@revision], org/name:file.gguf) found in the HF cache or downloaded.")
    engine: EngineKind = Field("auto", description="Engine to run: 'auto' picks vLLM where it imports.")
    max_model_len: int = Field(2048, ge=64, description="Longest prompt + completion, in tokens.")
    dtype: str = Field(
        "auto", description="Weights dtype for the engine (vLLM/torch name). auto: vLLM's choice on a GPU, float32 on "
        "a CPU (see deployments/engines/vllm_engine.py's engine_dtype).")
    enable_lora: bool = Field(True, description="Serve LoRA adapters on this base model.")
    max_lora_rank: int = Field(16, ge=1, description="Largest LoRA rank the engine accepts.")
    finetune_serving: Literal["adapter", "merged"] = Field(
        "adapter",
        description="How a fine-tune of this model is served when switched to: 'adapter' (LoRA beside the base "
        "weights) or 'merged' (merged into them; the engine then serves it instead of the base). A switch request's "
        "serve_as overrides it.",
    )
    adapters: dict[str, str] = Field(
        default_factory=dict, description="LoRA adapters to serve, served name → adapter folder."
    )
    num_cpus: float = Field(1, ge=0, description="CPUs Ray reserves for each replica (bookkeeping on CPU hosts).")
    num_gpus: float = Field(0, ge=0, description="GPUs per replica; > 0 runs vLLM on GPU.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per replica, to pin engines to a node type (e.g. {'llm_node': 1}).",
    )
    gpu_memory_utilization: float = Field(
        default_factory=lambda: get_settings().studio_llm_gpu_memory, gt=0, le=1, description="vLLM GPU memory share."
    )
    cpu_kvcache_gib: int = Field(2, ge=1, description="KV cache size on CPU hosts (VLLM_CPU_KVCACHE_SPACE).")
    cpu_threads_bind: str = Field(
        "auto", description="VLLM_CPU_OMP_THREADS_BIND for the engine worker ('auto', 'nobind' or core ids)."
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description=f"Requests one replica runs at once; Serve queues the rest. Unset: {GPU_MAX_ONGOING} with a GPU, "
        f"{CPU_MAX_ONGOING} on CPU: there vLLM's throughput stops growing at about 8 streams (SmolLM2 on 2 cores: "
        "0.26 requests/s at 8, 0.28 at 16 and 32), and more streams only make every request slower "
        "(docs/reliability.md#back-pressure).",
    )
    max_queued_requests: int | None = Field(
        None,
        ge=-1,
        description=f"Requests each caller (gateway replica) queues for this engine once max_ongoing_requests are "
        f"running; past it they are refused at once with 503 + Retry-After instead of waiting. -1: no limit. Unset: "
        f"{GPU_MAX_QUEUED} with a GPU, {CPU_MAX_QUEUED} on CPU: what a CPU engine drains in about 30 s, so a queued "
        "request still gets its first output within the gateway's 60 s first_chunk_timeout_s.",
    )
    retry_after_s: float = Field(
        RETRY_AFTER_S, gt=0, le=3600,
        description="Retry-After (seconds) of a refusal when the queue is full: about the time one slot of the "
        "queue takes to free up (on CPU, 1 / 0.26 requests/s ≈ 4 s).",
    )
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replica bounds.")
    enforce_eager: bool = Field(True, description="Skip graph capture: much faster start-up on CPU.")
    seed: int = Field(0, description="Engine seed.")
    tool_call_parser: str | None = Field(
        "auto",
        description="vLLM's tool-call parser for this model (--tool-call-parser): it turns the model's tool-call text "
        "into tool_calls and enables tool_choice auto, required and named. 'auto': picked from the chat template's "
        "format (ChatML, e.g. SmolLM2, Qwen2.5, Hermes: 'hermes'; Llama 3: 'llama3_json'; Mistral: 'mistral'); "
        "None: no tool calling.",
    )

    @field_validator("max_queued_requests")
    @classmethod
    def _queue(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("max_queued_requests must be -1 (no limit) or at least 1")
        return value

    def resolved_tool_call_parser(self, model_path: str) -> str | None:
        """The tool-call parser for the checkpoint at ``model_path`` (``tool_call_parser`` 'auto' resolved)."""
        if self.tool_call_parser != "auto":
            return self.tool_call_parser
        template = ""
        for name in ("chat_template.jinja", "tokenizer_config.json"):
            path = Path(model_path) / name
            if path.is_file():
                template += path.read_text(encoding="utf-8", errors="replace")
        for marker, parser in TOOL_PARSERS_BY_TEMPLATE:
            if marker in template:
                return parser
        return None

    def serve_limits(self) -> tuple[int, int]:
        """(max_ongoing_requests, max_queued_requests) of the engine deployment, the unset ones by device."""
        gpu = self.num_gpus > 0
        ongoing = self.max_ongoing_requests or (GPU_MAX_ONGOING if gpu else CPU_MAX_ONGOING)
        queued = self.max_queued_requests or (GPU_MAX_QUEUED if gpu else CPU_MAX_QUEUED)
        return ongoing, queued


class RemoteConfig(BaseModel):
    """A remote OpenAI-compatible endpoint used when the local engine is down."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. https://api.openai.com/v1")
    api_key: str | None = Field(None, description="Bearer key of the remote endpoint.")
    model: str = Field(description="Model name at the remote endpoint.")


def _remote_from_env() -> RemoteConfig | None:
    settings = get_settings()
    if not settings.chat_base_url:
        return None
    return RemoteConfig(
        base_url=settings.chat_base_url, api_key=settings.chat_api_key, model=settings.chat_model or DEFAULT_MODEL_NAME
    )


class GatewayConfig(BaseModel):
    """The ingress deployment."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(1, ge=1, description="Gateway replicas.")
    max_ongoing_requests: int = Field(256, ge=1, description="Requests one gateway replica accepts at once.")
    first_chunk_timeout_s: float = Field(
        60, gt=0, description="How long to wait for an engine's first output before treating it as down."
    )
    api_key: SecretStr | None = Field(
        None,
        description="Key that /v1, /api, /sessions and /memory require (Authorization: Bearer). Unset: the replica's "
        "SAGE_STUDIO_API_KEY, which keeps the key out of config files; neither: the gateway is open.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API cross-site; none by default."
    )
    max_body_bytes: int = Field(
        8 << 20, ge=1024, description="Largest request body outside uploads (413 above it)."
    )
    max_upload_bytes: int = Field(
        1 << 30, ge=1024, description="Largest multipart upload body; each upload route also applies its own cap."
    )

    @field_validator("api_key")
    @classmethod
    def _real_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A config dumped as JSON shows SecretStr as stars: loading that back must not make the stars the key.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("gateway.api_key must not be empty: leave it unset for an open gateway")
        if value is not None and set(value.get_secret_value()) <= {"*"}:
            raise ValueError("gateway.api_key is a masked value ('****'); pass the real key or leave it unset")
        return value


class StudioConfig(BaseModel):
    """Everything ``build_app`` needs to build the studio's Serve application."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelConfig] = Field(
        default_factory=lambda: [ModelConfig(name=hub_model_name(get_settings().studio_llm_model) or DEFAULT_MODEL_NAME,
                                             source=get_settings().studio_llm_model)],
        description="Models served by local engines (empty with --no-llm).",
    )
    default_model: str | None = Field(
        None, description=f"The model '{DEFAULT_MODEL_ALIAS}' means; defaults to the first model."
    )
    remote: RemoteConfig | None = Field(
        default_factory=_remote_from_env, description="Fallback endpoint (env SAGE_CHAT_BASE_URL/API_KEY/MODEL)."
    )
    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="Ingress settings.")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="Chat memory backend.")
    embedding_models: list[str] = Field(
        default_factory=lambda: [DEFAULT_EMBEDDING_MODEL],
        description="Sentence-embedding models served at /v1/embeddings, one small deployment each: a packaged name "
        f"('{DEFAULT_EMBEDDING_MODEL}', the embedder of the vdb memory) or a sentence-transformers folder. Empty: none.",
    )
    sage_home: str = Field(
        default_factory=lambda: str(get_settings().sage_home), description="Data folder every replica uses."
    )

    @model_validator(mode="after")
    def _check_models(self) -> "StudioConfig":
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError(f"model names must be unique, got {names}")
        if DEFAULT_MODEL_ALIAS in names:
            raise ValueError(f"'{DEFAULT_MODEL_ALIAS}' is reserved: it always means the current chat model")
        if self.default_model is None and names:
            self.default_model = names[0]
        if self.default_model is not None and self.default_model not in names and self.remote is None:
            raise ValueError(f"default_model '{self.default_model}' is not one of the served models {names}")
        return self
