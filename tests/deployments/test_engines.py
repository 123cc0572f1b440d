"""Engines outside Serve: the transformers engine honours the same contract as vLLM's (deltas, counts, context)."""

from __future__ import annotations

import asyncio

import pytest

from deployments.config import ModelConfig
from deployments.engines import create_engine
from deployments.engines.base import GenerationRequest
from deployments.engines.transformers_engine import TransformersEngine
from deployments.engines.vllm_engine import VLLMEngine, adapter_version


def run(engine, request):
    async def collect():
        return [chunk async for chunk in engine.generate(request)]

    return asyncio.run(collect())


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    engine = create_engine(ModelConfig(name="tiny", source=str(tiny_model_dir), engine="transformers", max_model_len=64))
    assert isinstance(engine, TransformersEngine)
    asyncio.run(engine.start())
    return engine


def test_transformers_engine_streams_deltas_then_counts(engine):
    chunks = run(engine, GenerationRequest(request_id="1", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                           temperature=0))
    assert len([c for c in chunks if c.text]) >= 2
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and last.completion_tokens <= 8 and last.prompt_tokens > 2


def test_transformers_engine_is_deterministic_when_greedy(engine):
    ask = GenerationRequest(request_id="2", prompt="Once", max_tokens=6, temperature=0)
    assert "".join(c.text for c in run(engine, ask)) == "".join(c.text for c in run(engine, ask))


def test_prompt_over_the_context_is_a_value_error(engine):
    with pytest.raises(ValueError, match="context"):
        run(engine, GenerationRequest(request_id="3", prompt="word " * 200, max_tokens=4))


def test_auto_picks_vllm_where_it_imports(tiny_model_dir):
    assert isinstance(create_engine(ModelConfig(name="t", source=str(tiny_model_dir))), VLLMEngine)


def test_adapter_version_changes_when_weights_change(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"a")
    first = adapter_version(str(tmp_path))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"bb")
    assert adapter_version(str(tmp_path)) != first
