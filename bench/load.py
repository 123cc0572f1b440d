"""Load: N concurrent chat clients for T seconds against a running studio, with a 1-client baseline in the same run.

    sage studio start --port 8011            # or any running studio app
    .venv/bin/python bench/load.py --url http://127.0.0.1:8011 --clients 32 --duration 60

Each client sends streamed chat completions back to back (closed loop). Printed for the baseline and the load
phase: requests/s, completion tokens/s, latency p50/p99, time to first token p50/p99, errors by kind, and the
ratios load/baseline; and the machine's load average, since the figures depend on what else runs. Explicit
back-pressure (429, or Serve's queue-full 503, with Retry-After) is counted apart from errors; every other failure
is an error, by kind and message, and makes the exit status 1.
Loopback only, and bounded (at most 256 clients, 600 s): this is a benchmark, not a load generator for others'
servers.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

MAX_CLIENTS, MAX_DURATION_S = 256, 600
PROMPTS = [
    "What is the capital of France?",
    "Give three tips for staying healthy.",
    "Write a haiku about the sea.",
    "Why is the sky blue?",
    "Name three programming languages.",
    "Explain what a neural network is in two sentences.",
]


@dataclass
class Phase:
    name: str
    clients: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: Counter = field(default_factory=Counter)
    backpressure: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"cannot resolve {host!r}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"bench/load.py only targets this machine (loopback); {host!r} is not")


def error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text


def is_backpressure(resp: httpx.Response) -> bool:
    """An explicit "too busy, retry later": 429, or Serve's queue-full 503, with Retry-After. A 503 for any other
    reason (an engine that gave no first token in time, no engine at all) is an error."""
    if "retry-after" not in resp.headers:
        return False
    return resp.status_code == 429 or (resp.status_code == 503 and "backpressure" in error_text(resp).lower())


async def one_chat(client: httpx.AsyncClient, phase: Phase, model: str, prompt: str, max_tokens: int) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.monotonic()
    first = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                kind = f"HTTP {resp.status_code}: {error_text(resp)[:70]}"
                if is_backpressure(resp):
                    phase.backpressure[kind] += 1
                    await asyncio.sleep(min(float(resp.headers["retry-after"]), 5.0))
                else:
                    phase.errors[kind] += 1
                return
            tokens, failed = 0, None
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    failed = chunk["error"].get("message", "error")[:80]
                    break
                if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                    first = time.monotonic() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as exc:
        phase.errors[type(exc).__name__] += 1
        return
    if failed:
        phase.errors[f"in-stream error: {failed}"] += 1
        return
    phase.latencies.append(time.monotonic() - started)
    if first is not None:
        phase.ttfts.append(first)
    phase.tokens += tokens


async def run_phase(args, phase: Phase, duration_s: float) -> Phase:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=phase.clients + 4, max_keepalive_connections=phase.clients + 4)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=args.timeout, limits=limits) as client:
        deadline = time.monotonic() + duration_s

        async def loop(i: int) -> None:
            n = i
            while time.monotonic() < deadline:
                await one_chat(client, phase, args.model, PROMPTS[n % len(PROMPTS)], args.max_tokens)
                n += phase.clients

        started = time.monotonic()
        await asyncio.gather(*(loop(i) for i in range(phase.clients)))
        phase.wall_s = time.monotonic() - started  # includes the requests still running at the deadline
    return phase


def describe(phase: Phase) -> str:
    errors = ", ".join(f"{k} ×{n}" for k, n in phase.errors.most_common()) or "none"
    back = ", ".join(f"{k} ×{n}" for k, n in phase.backpressure.items()) or "none"
    return (f"{phase.name:9} {phase.clients:3} clients {phase.wall_s:6.1f} s: {phase.ok} ok, {phase.rate():.2f} req/s, "
            f"{phase.tokens / phase.wall_s if phase.wall_s else 0:.1f} tokens/s, latency p50 "
            f"{percentile(phase.latencies, 0.5):.2f} s p99 {percentile(phase.latencies, 0.99):.2f} s, TTFT p50 "
            f"{percentile(phase.ttfts, 0.5):.2f} s p99 {percentile(phase.ttfts, 0.99):.2f} s; "
            f"back-pressure: {back}; errors: {errors}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("SAGE_STUDIO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("SAGE_STUDIO_API_KEY"))
    parser.add_argument("--model", default="sage-default")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60, help="seconds of the load phase")
    parser.add_argument("--baseline", type=float, default=20, help="seconds of the 1-client baseline (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120, help="per-request timeout (a hang counts as error)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--clients must be 1..{MAX_CLIENTS} and --duration 1..{MAX_DURATION_S} s")
    args.url = args.url.rstrip("/")
    check_loopback(args.url)
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as probe:
        health = (await probe.get("/health")).json()
    print(f"target {args.url}: model {args.model} → {health.get('default_model')}; {args.max_tokens} max tokens; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    phases = []
    if args.baseline > 0:
        phases.append(await run_phase(args, Phase("baseline", 1), args.baseline))
        print(describe(phases[-1]), flush=True)
    phases.append(await run_phase(args, Phase("load", args.clients), args.duration))
    print(describe(phases[-1]), flush=True)
    load = phases[-1]
    if len(phases) == 2 and phases[0].ok and load.ok:
        base = phases[0]
        print(f"ratios load/baseline: throughput ×{load.rate() / base.rate():.2f}, latency p50 "
              f"×{percentile(load.latencies, 0.5) / percentile(base.latencies, 0.5):.2f}, TTFT p50 "
              f"×{percentile(load.ttfts, 0.5) / percentile(base.ttfts, 0.5):.2f}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 1 if any(p.errors for p in phases) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
