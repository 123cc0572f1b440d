"""Gateway overhead: TTFT and tokens/s through the studio gateway vs the same vLLM engine driven directly vs vLLM's
own OpenAI server, on the same model and prompts, at 1 and 16 concurrent streams. Prints the ratios.

    .venv/bin/python bench/gateway.py [--model PATH] [--max-tokens 64] [--rounds 6]

All three targets are started first and stay up; each round then measures every target in turn (the order rotates
from round to round), so a slow spell of the machine falls on all three alike instead of on whichever ran last.
Only one target generates at a time (this machine has 2 cores), with greedy decoding so every target generates
the same tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROMPTS = [
    "What is the capital of France?",
    "Give three tips for staying healthy.",
    "Explain what a neural network is in two sentences.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
    "Name three programming languages.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet.",
]


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    tokens: int = 0
    wall: float = 0.0

    @property
    def ttft_p50(self) -> float:
        return statistics.median(self.ttft)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def http_stream(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start, ttft, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {(await resp.aread()).decode()[:300]}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft or 0.0, tokens


async def engine_stream(engine, prompt: str, max_tokens: int) -> tuple[float, int]:
    from deployments.engines.base import OpenAIRequest

    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start, ttft, tokens = time.perf_counter(), None, 0
    async for event in engine.openai(OpenAIRequest(api="chat", body=body)):
        if event.startswith("data: {"):
            chunk = json.loads(event[6:])
            if ttft is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft or 0.0, tokens


async def measure_round(one, concurrency: int, requests: int, into: Result) -> None:
    """``requests`` rounds of ``concurrency`` simultaneous streams, added to ``into``."""
    start = time.perf_counter()
    for r in range(requests):
        outs = await asyncio.gather(*(one(PROMPTS[(r + i) % len(PROMPTS)]) for i in range(concurrency)))
        for ttft, tokens in outs:
            into.ttft.append(ttft)
            into.tokens += tokens
    into.wall += time.perf_counter() - start


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(url)


def bench_model(model_path: str):
    """The one engine configuration all three targets serve: the studio's defaults for a model (LoRA on, so a
    fine-tune can be swapped in), all 16 streams admitted at once as vLLM's server does (this measures the
    gateway's path, not the studio's CPU admission limit, which would queue half of them by design). No queue limit
    either, as on vLLM's server: Serve counts every request of a burst as queued until it is routed, so 16 streams
    sent at once against the default limit of 8 could be refused with free slots (ray/serve/_private/router.py)."""
    from deployments.config import ModelConfig

    return ModelConfig(name="bench", source=model_path, engine="vllm", max_model_len=2048, max_ongoing_requests=16,
                       max_queued_requests=-1)


@contextlib.contextmanager
def vllm_server(model_path: str, log_dir: str):
    """vLLM's own OpenAI server on the engine arguments the studio's engine runs with (dtype "auto" = float32 on
    CPUs without native bf16; LoRA on, which costs every decoding step something even when no adapter is asked
    for)."""
    from deployments.engines.vllm_engine import cpu_env, server_flags

    model = bench_model(model_path)
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--port", str(port), "--host", "127.0.0.1",
           *server_flags(model, model_path)]
    with open(Path(log_dir) / "vllm_server.log", "w") as log:
        proc = subprocess.Popen(cmd, env=os.environ | cpu_env(model), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(60)


@contextlib.contextmanager
def studio_gateway(model_path: str):
    """The studio's Serve app (Serve proxy → gateway ingress → engine deployment) on a local Ray cluster."""
    import ray
    from ray import serve

    from deployments.app import build_studio_app
    from deployments.config import StudioConfig

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_studio_app(StudioConfig(models=[bench_model(model_path)], remote=None, embedding_models=[])),
                  name="studio",
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@contextlib.asynccontextmanager
async def direct_engine(model_path: str):
    """The same VLLMEngine the engine deployment runs, in this process."""
    from deployments.engines.vllm_engine import VLLMEngine, cpu_env

    model = bench_model(model_path)
    os.environ.update(cpu_env(model))
    engine = VLLMEngine(model, model_path)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.shutdown()


async def run(args) -> dict[str, dict[int, Result]]:
    async with contextlib.AsyncExitStack() as stack:
        server_url = stack.enter_context(vllm_server(args.model, args.log_dir))
        # The in-process engine starts before Ray: its engine process is not forked from a Ray driver.
        engine = await stack.enter_async_context(direct_engine(args.model))
        gateway_url = stack.enter_context(studio_gateway(args.model))
        server = await stack.enter_async_context(httpx.AsyncClient(base_url=server_url, timeout=600))
        gateway = await stack.enter_async_context(httpx.AsyncClient(base_url=gateway_url, timeout=600))
        targets = {
            "vllm_server": lambda p: http_stream(server, "bench", p, args.max_tokens),
            "engine_direct": lambda p: engine_stream(engine, p, args.max_tokens),
            "gateway": lambda p: http_stream(gateway, "bench", p, args.max_tokens),
        }
        for one in targets.values():  # warm-up
            await asyncio.gather(*(one(PROMPTS[i]) for i in range(4)))
        results = {name: {1: Result(), 16: Result()} for name in targets}
        names = list(targets)
        for r in range(args.rounds):
            for name in names[r % 3:] + names[:r % 3]:
                await measure_round(targets[name], 1, args.requests, results[name][1])
                await measure_round(targets[name], 16, 1, results[name][16])
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {results[n][1].ttft_p50 * 1000:.0f} ms / {results[n][16].tokens_per_s:.1f} tok/s"
                for n in names), flush=True)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the prepared SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=4, help="sequential 1-stream requests per target and round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds; each also runs 16 streams once per target")
    parser.add_argument("--log-dir", default="bench/results")
    args = parser.parse_args()
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    if args.model is None:
        from sage_studio.model_store import prepare_default_model

        args.model = str(prepare_default_model())

    results = asyncio.run(run(args))
    print(f"\nmodel={args.model} max_tokens={args.max_tokens}")
    print(f"{'target':<15}{'streams':>8}{'TTFT p50 ms':>14}{'tokens/s':>11}")
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            print(f"{name:<15}{conc:>8}{r.ttft_p50 * 1000:>14.1f}{r.tokens_per_s:>11.1f}")
    g, v, e = results["gateway"], results["vllm_server"], results["engine_direct"]
    print("\nratios (gateway / baseline); targets (issue 15): TTFT p50 <= 1.05 at 1 and 16 streams, tokens/s at 16 "
          ">= 0.97, vs vLLM's server")
    for conc in (1, 16):
        print(f"  {conc:>2} streams  TTFT vs vllm_server {g[conc].ttft_p50 / v[conc].ttft_p50:5.2f}   "
              f"vs engine_direct {g[conc].ttft_p50 / e[conc].ttft_p50:5.2f}   "
              f"tokens/s vs vllm_server {g[conc].tokens_per_s / v[conc].tokens_per_s:5.2f}   "
              f"vs engine_direct {g[conc].tokens_per_s / e[conc].tokens_per_s:5.2f}")
    out = Path(args.log_dir) / "gateway.json"
    out.write_text(json.dumps({k: {c: {"ttft_p50": r.ttft_p50, "tokens_per_s": r.tokens_per_s, "tokens": r.tokens}
                                   for c, r in v_.items()} for k, v_ in results.items()}, indent=2))


if __name__ == "__main__":
    main()
