"""Gateway overhead: TTFT and tokens/s through the studio gateway vs the same vLLM engine driven directly vs vLLM's
own OpenAI server, on the same model and prompts, at 1 and 16 concurrent streams. Prints the ratios.

    .venv/bin/python bench/gateway.py [--model PATH] [--max-tokens 64] [--requests 8]

The three targets run one after another (never at once: this machine has 2 cores), with greedy decoding so every
target generates the same tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
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
    from deployments.engines.base import GenerationRequest

    request = GenerationRequest(request_id=uuid.uuid4().hex, messages=[{"role": "user", "content": prompt}],
                                max_tokens=max_tokens, temperature=0)
    start, ttft, tokens = time.perf_counter(), None, 0
    async for chunk in engine.generate(request):
        if ttft is None and chunk.text:
            ttft = time.perf_counter() - start
        if chunk.finish_reason:
            tokens = chunk.completion_tokens
    return ttft or 0.0, tokens


async def measure(one, concurrency: int, requests: int) -> Result:
    """`requests` rounds of `concurrency` simultaneous streams (after a warm-up)."""
    await asyncio.gather(*(one(PROMPTS[i % len(PROMPTS)]) for i in range(min(concurrency, 4))))
    result = Result()
    start = time.perf_counter()
    for r in range(requests):
        outs = await asyncio.gather(*(one(PROMPTS[(r + i) % len(PROMPTS)]) for i in range(concurrency)))
        for ttft, tokens in outs:
            result.ttft.append(ttft)
            result.tokens += tokens
    result.wall = time.perf_counter() - start
    return result


async def run_http(base_url: str, model: str, args) -> dict[int, Result]:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        one = lambda p: http_stream(client, model, p, args.max_tokens)  # noqa: E731
        return {1: await measure(one, 1, args.requests), 16: await measure(one, 16, max(1, args.requests // 4))}


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
    gateway's path, not the studio's CPU admission limit, which would queue half of them by design)."""
    from deployments.config import ModelConfig

    return ModelConfig(name="bench", source=model_path, engine="vllm", max_model_len=2048, max_ongoing_requests=16)


def engine_env(model) -> dict[str, str]:
    return {"VLLM_CPU_KVCACHE_SPACE": str(model.cpu_kvcache_gib), "VLLM_CPU_OMP_THREADS_BIND": model.cpu_threads_bind}


def bench_vllm_server(model_path: str, args) -> dict[int, Result]:
    from deployments.engines.vllm_engine import MAX_LORAS, engine_dtype

    model = bench_model(model_path)
    port = free_port()
    env = os.environ | engine_env(model)
    # The engine arguments VLLMEngine gives AsyncLLM (dtype "auto" = float32 on CPUs without native bf16; LoRA on,
    # which costs every decoding step something even when no adapter is asked for), so all serve the same engine.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path, "--port", str(port),
           "--host", "127.0.0.1", "--served-model-name", "bench", "--max-model-len", str(model.max_model_len),
           "--disable-log-stats", "--seed", str(model.seed), "--dtype", engine_dtype(model.dtype)]
    cmd += ["--enforce-eager"] if model.enforce_eager else []
    cmd += ["--enable-lora", "--max-lora-rank", str(model.max_lora_rank), "--max-loras", str(MAX_LORAS)] \
        if model.enable_lora else []
    log = open(Path(args.log_dir) / "vllm_server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", proc)
        return asyncio.run(run_http(f"http://127.0.0.1:{port}", "bench", args))
    finally:
        proc.terminate()
        proc.wait(60)


def bench_gateway(model_path: str, args) -> dict[int, Result]:
    import ray
    from ray import serve

    from deployments.app import build_studio_app
    from deployments.config import StudioConfig

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = StudioConfig(models=[bench_model(model_path)], remote=None)
    serve.run(build_studio_app(config), name="studio", route_prefix="/")
    try:
        return asyncio.run(run_http(f"http://127.0.0.1:{port}", "bench", args))
    finally:
        serve.shutdown()
        ray.shutdown()


def bench_engine(model_path: str, args) -> dict[int, Result]:
    from deployments.engines.vllm_engine import VLLMEngine

    model = bench_model(model_path)
    os.environ |= engine_env(model)

    async def main():
        engine = VLLMEngine(model, model_path)
        await engine.start()
        try:
            one = lambda p: engine_stream(engine, p, args.max_tokens)  # noqa: E731
            return {1: await measure(one, 1, args.requests), 16: await measure(one, 16, max(1, args.requests // 4))}
        finally:
            await engine.shutdown()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the prepared SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8, help="sequential requests at 1 stream; /4 rounds at 16")
    parser.add_argument("--log-dir", default="bench/results")
    args = parser.parse_args()
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    if args.model is None:
        from sage_studio.model_store import prepare_default_model

        args.model = str(prepare_default_model())

    results = {}
    for name, bench in (("vllm_server", bench_vllm_server), ("engine_direct", bench_engine),
                        ("gateway", bench_gateway)):
        results[name] = bench(args.model, args)
        for conc, r in results[name].items():  # printed as it comes: a later failure keeps what was measured
            print(f"[{name}] {conc} streams: TTFT p50 {r.ttft_p50 * 1000:.1f} ms, {r.tokens_per_s:.1f} tokens/s",
                  flush=True)
    print(f"\nmodel={args.model} max_tokens={args.max_tokens}")
    print(f"{'target':<15}{'streams':>8}{'TTFT p50 ms':>14}{'tokens/s':>11}")
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            print(f"{name:<15}{conc:>8}{r.ttft_p50 * 1000:>14.1f}{r.tokens_per_s:>11.1f}")
    g, v, e = results["gateway"], results["vllm_server"], results["engine_direct"]
    print("\nratios (gateway / baseline); targets: TTFT p50 <= 1.10, throughput at 16 >= 0.95 vs vLLM's server")
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
