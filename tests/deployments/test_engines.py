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


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_transformers_engine_streams_deltas_then_counts(engine, tokenizer):
    messages = [{"role": "user", "content": "hi"}]
    chunks = run(engine, GenerationRequest(request_id="1", messages=messages, max_tokens=8, temperature=0))
    assert len([c for c in chunks if c.text]) >= 2
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and 0 < last.completion_tokens <= 8
    # The messages went through the model's chat template, token for token.
    assert last.prompt_tokens == len(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                                   tokenize=True, return_dict=False))


def test_transformers_engine_streams_what_the_model_samples_for_the_seed(engine, tokenizer, tiny_model_dir):
    """The deltas add up to what transformers' own generate() samples for the prompt and seed (nothing dropped,
    doubled or reordered on the way), and the seed, not the call, decides the answer."""
    import torch
    from transformers import AutoModelForCausalLM

    def ask(seed: int) -> str:
        request = GenerationRequest(request_id=f"seed-{seed}", prompt="Once", max_tokens=12, temperature=1.0, seed=seed)
        return "".join(c.text for c in run(engine, request))

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer("Once")["input_ids"]])
    torch.manual_seed(3)
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=12, do_sample=True, temperature=1.0, top_p=1.0,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    assert expected.strip() and ask(3) == expected
    assert len({ask(seed) for seed in range(1, 5)}) >= 3


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
