"""Engines outside Serve: the transformers engine speaks the common core of the OpenAI API and refuses the rest by
name; the vLLM engine's flags are what `vllm serve` takes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deployments.config import ModelConfig
from deployments.engines import create_engine
from deployments.engines.base import OpenAIRequest, OpenAIResponse
from deployments.engines.transformers_engine import TransformersEngine
from deployments.engines.vllm_engine import VLLMEngine, adapter_version, server_flags


def run(engine, api: str, body: dict) -> list:
    async def collect():
        return [item async for item in engine.openai(OpenAIRequest(api=api, body=body))]

    return asyncio.run(collect())


def events(items: list[str]) -> list[dict]:
    assert items[-1] == "data: [DONE]\n\n"
    return [json.loads(item.removeprefix("data: ")) for item in items[:-1]]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    engine = create_engine(ModelConfig(name="tiny", source=str(tiny_model_dir), engine="transformers", max_model_len=64))
    assert isinstance(engine, TransformersEngine)
    asyncio.run(engine.start())
    return engine


HI = [{"role": "user", "content": "hi"}]


def test_transformers_engine_answers_chat_whole_and_streamed_the_same(engine):
    [whole] = run(engine, "chat", {"model": "tiny", "messages": HI, "max_tokens": 8, "temperature": 0})
    assert isinstance(whole, OpenAIResponse) and whole.status == 200
    body = whole.body
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    text = body["choices"][0]["message"]["content"]
    assert 0 < body["usage"]["completion_tokens"] <= 8 and body["usage"]["prompt_tokens"] > 2
    streamed = events(run(engine, "chat", {"model": "tiny", "messages": HI, "max_tokens": 8, "temperature": 0,
                                           "stream": True, "stream_options": {"include_usage": True}}))
    deltas = [c["choices"][0]["delta"].get("content", "") for c in streamed if c["choices"]]
    assert len([d for d in deltas if d]) >= 2, "tokens arrive as several events"
    assert "".join(deltas) == text
    assert streamed[-1]["usage"] == body["usage"]
    assert streamed[-2]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_transformers_engine_counts_the_chat_template_and_samples_what_the_model_samples(engine, tokenizer,
                                                                                       tiny_model_dir):
    """The prompt went through the model's chat template, token for token; the streamed deltas add up to what
    transformers' own generate() samples for the prompt and seed (nothing dropped, doubled or reordered), and the
    seed, not the call, decides the answer."""
    import torch
    from transformers import AutoModelForCausalLM

    [whole] = run(engine, "chat", {"model": "tiny", "messages": HI, "max_tokens": 4, "temperature": 0})
    assert whole.body["usage"]["prompt_tokens"] == len(tokenizer.apply_chat_template(
        HI, add_generation_prompt=True, tokenize=True, return_dict=False))

    def ask(seed: int) -> str:
        body = {"model": "tiny", "prompt": "Once", "max_tokens": 12, "temperature": 1.0, "seed": seed, "stream": True}
        return "".join(c["choices"][0]["text"] for c in events(run(engine, "completions", body)))

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer("Once")["input_ids"]])
    torch.manual_seed(3)
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=12, do_sample=True, temperature=1.0, top_p=1.0,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    assert expected.strip() and ask(3) == expected
    assert len({ask(seed) for seed in range(1, 5)}) >= 3


def test_transformers_engine_completions(engine):
    [whole] = run(engine, "completions", {"model": "tiny", "prompt": "Once", "max_tokens": 6, "temperature": 0})
    assert whole.body["object"] == "text_completion" and whole.body["usage"]["completion_tokens"] <= 6
    streamed = events(run(engine, "completions", {"model": "tiny", "prompt": "Once", "max_tokens": 6,
                                                  "temperature": 0, "stream": True}))
    assert "".join(c["choices"][0]["text"] for c in streamed) == whole.body["choices"][0]["text"]


@pytest.mark.parametrize("api, extra, field", [
    ("chat", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("chat", {"response_format": {"type": "json_object"}}, "response_format"),
    ("chat", {"logprobs": True}, "logprobs"),
    ("chat", {"n": 2}, "n"),
    ("completions", {"echo": True}, "echo"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
    ("responses", {"input": "hi"}, None),
])
def test_transformers_engine_refuses_what_it_cannot_do_by_name(engine, api, extra, field):
    body = {"model": "tiny", "max_tokens": 4} | ({"messages": HI} if api == "chat" else {"prompt": "x"}) | extra
    [answer] = run(engine, api, body)
    assert answer.status == 400
    error = answer.body["error"]
    assert error["param"] == field
    if field is not None:
        assert field.split(".")[0] in error["message"]


def test_prompt_over_the_context_is_a_400(engine):
    [answer] = run(engine, "completions", {"model": "tiny", "prompt": "word " * 200, "max_tokens": 4})
    assert answer.status == 400 and "context" in answer.body["error"]["message"]


def test_auto_picks_vllm_where_it_imports(tiny_model_dir):
    assert isinstance(create_engine(ModelConfig(name="t", source=str(tiny_model_dir))), VLLMEngine)


def test_vllm_flags_are_what_vllm_serve_parses(tiny_model_dir):
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    config = ModelConfig(name="tiny", source=str(tiny_model_dir), max_model_len=512)
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(server_flags(config, str(tiny_model_dir)))
    assert (args.model, args.served_model_name, args.max_model_len) == (str(tiny_model_dir), ["tiny"], 512)
    assert args.enable_lora and args.enforce_eager
    # The tiny model's chat template is ChatML: the hermes tool-call parser, which named/required tool_choice need.
    assert (args.enable_auto_tool_choice, args.tool_call_parser) == (True, "hermes")
    plain = config.model_copy(update={"tool_call_parser": None})
    assert "--tool-call-parser" not in server_flags(plain, str(tiny_model_dir))


def test_adapter_version_changes_when_weights_change(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"a")
    first = adapter_version(str(tmp_path))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"bb")
    assert adapter_version(str(tmp_path)) != first


class _SlowToStop:
    """Stands where vLLM's AsyncLLM is, with only what ``VLLMEngine.shutdown`` touches: a ``shutdown`` that blocks
    until the engine's processes are gone (the real one took 5.0 s on the tiny model here; 1 s is enough to see)."""

    def __init__(self):
        self.calls = 0

    def shutdown(self) -> None:
        self.calls += 1
        time.sleep(1.0)


def test_vllm_shutdown_leaves_the_event_loop_free(tiny_model_dir):
    """A merged fine-tune's engine retires beside the weights that serve now, in the same replica: its shutdown must
    not hold the replica's event loop, which streams every other request's tokens."""
    engine = VLLMEngine(ModelConfig(name="tiny", source=str(tiny_model_dir)), str(tiny_model_dir))
    engine._engine = stand_in = _SlowToStop()

    async def scenario() -> float:
        stop = asyncio.create_task(engine.shutdown())
        longest, last = 0.0, time.perf_counter()
        while not stop.done():
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        await stop
        return longest

    longest_gap = asyncio.run(scenario())
    assert stand_in.calls == 1 and engine._engine is None
    assert longest_gap < 0.5, f"the event loop stood still {longest_gap:.2f} s during the engine's shutdown"
