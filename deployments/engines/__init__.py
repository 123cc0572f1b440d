"""Engines behind one interface (``LLMEngine``); ``create_engine`` picks one from a ``ModelConfig``."""

from __future__ import annotations

import importlib.util

from deployments.config import ModelConfig, RemoteConfig
from deployments.engines.base import LLMEngine


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def create_engine(config: ModelConfig, remote: RemoteConfig | None = None) -> LLMEngine:
    """The engine a model config names; ``auto`` picks vLLM where it is installed, else transformers."""
    kind = config.engine
    if kind == "remote":
        from deployments.engines.remote_engine import RemoteEngine

        if remote is None:
            raise ValueError(f"model '{config.name}' uses the remote engine but no remote endpoint is configured")
        return RemoteEngine(remote, served_name=config.name)

    from sage_studio.model_store import resolve_model_path

    # An engine may download a hub id it does not find cached: it starts on the node that will hold the weights.
    path = str(resolve_model_path(config.source, download=True))
    if kind == "auto":
        kind = "vllm" if vllm_available() else "transformers"
    if kind == "vllm":
        from deployments.engines.vllm_engine import VLLMEngine

        return VLLMEngine(config, path)
    from deployments.engines.transformers_engine import TransformersEngine

    return TransformersEngine(config, path)
