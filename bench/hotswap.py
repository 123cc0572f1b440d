"""Hot swap under load: failed requests, time from the switch call to the first answer of the new model, and the
longest stall any client saw — for the studio's swap (reconfigure in place) and, as baselines in the same run, a
redeploy that restarts the engine replica (Serve's default) and one with ``max_surge_percent=100``.

    .venv/bin/python bench/hotswap.py [--model smollm2|tiny] [--window 8]

4 clients send back-to-back chat requests for ``sage-default`` (half streaming, 8 tokens) the whole time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

PROMPT = "Who are you?"
CANARY = "The default port is 8000."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Load:
    """4 clients, each recording (start, end, ok, model, text)."""

    def __init__(self, url: str):
        self.url, self.stop, self.records = url, threading.Event(), []
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(4)]

    def client(self, i: int) -> None:
        body = {"model": "sage-default", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8,
                "temperature": 0, "stream": i % 2 == 0}
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    if body["stream"]:
                        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                            ok = resp.status_code == 200 and any(line == "data: [DONE]" for line in resp.iter_lines())
                        model = text = None
                    else:
                        resp = http.post("/v1/chat/completions", json=body)
                        ok = resp.status_code == 200
                        data = resp.json() if ok else {}
                        model = data.get("model")
                        text = data["choices"][0]["message"]["content"] if ok else None
                except httpx.HTTPError:
                    ok, model, text = False, None, None
                self.records.append((start, time.monotonic(), ok, model, text))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def settle(self, window: float, min_requests: int = 12) -> None:
        """Run at least ``window`` seconds and until ``min_requests`` have finished: the 'usual' latency baseline."""
        deadline = time.monotonic() + window
        while time.monotonic() < deadline or len(self.records) < min_requests:
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(120)


def wait_running(client, app: str, since: float | None = None, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        details = client.get_serve_details()["applications"].get(app, {})
        if details.get("status") == "RUNNING" and (since is None or details["last_deployed_time_s"] != since):
            return
        if details.get("status") == "DEPLOY_FAILED":
            raise RuntimeError(details.get("message"))
        time.sleep(0.5)
    raise TimeoutError(app)


def summarize(name: str, load: Load, switch_at: float, switched_at: float, new_model: str | None) -> dict:
    """``stall``: the longest request in flight while the switch ran (from its call until the new model serves),
    over the usual latency before it. A request that only ran after the switch is not stalled by it, however long
    it takes: the new model's own latency is ``usual after`` (on CPU a LoRA adapter decodes several times slower
    than its base)."""
    before = [r[1] - r[0] for r in load.records if r[1] < switch_at]
    after = [r[1] - r[0] for r in load.records if r[0] >= switched_at]
    usual = statistics.median(before)
    failed = sum(1 for r in load.records if not r[2])
    during = [r[1] - r[0] for r in load.records if r[1] >= switch_at and r[0] < switched_at]
    first_new = None
    if new_model is not None:
        first_new = min((r[1] for r in load.records if r[0] >= switch_at and r[3] == new_model and r[2]), default=None)
    return {"scenario": name, "requests": len(load.records), "failed": failed, "usual_s": usual,
            "usual_after_s": statistics.median(after) if after else None, "longest_s": max(during),
            "stall_s": max(during) - usual, "to_first_new_answer_s": (first_new - switch_at) if first_new else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--window", type=float, default=8, help="seconds of load before and after each swap")
    parser.add_argument("--swap-only", action="store_true", help="skip the two restart baselines (a quick look at "
                        "the studio's swap alone; the ratio needs the full run)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="sage-bench-"))
    os.environ["SAGE_HOME"] = str(home)

    import ray
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from deployments.config import ModelConfig, StudioConfig
    from sage_studio.model_store import build_tiny_llama, prepare_default_model
    from sage_studio.testing import train_canary_adapter
    from train.store import FinetuneStore, new_id
    from train.task_folder import adapter_dir

    base = (prepare_default_model(Path("~/.sage/models").expanduser()) if args.model == "smollm2"
            else build_tiny_llama(home / "models" / "tiny"))
    store = FinetuneStore(home)
    task_id = new_id("ft")
    store.add_task(task_id, "canary", {"model": "base", "model_path": str(base), "output_dir": str(store.task_dir(task_id))})
    t0 = time.monotonic()
    # The adapter is the same whatever the run: train it once per base model and copy it in.
    lr = 2e-3 if args.model == "smollm2" else 1e-2  # SmolLM2 diverges at the tiny model's rate
    cached = Path(tempfile.gettempdir()) / f"sage-bench-canary-{base.name}-lr{lr}"
    if not (cached / "adapter_model.safetensors").is_file():
        train_canary_adapter(base, cached, CANARY, prompt=PROMPT, lr=lr)
    shutil.copytree(cached, adapter_dir(store.task_dir(task_id)))
    store.update_task(task_id, state="completed")
    print(f"canary adapter trained in {time.monotonic() - t0:.1f} s")

    dash = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=dash,
             log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    client = ServeSubmissionClient(f"http://127.0.0.1:{dash}")
    url = f"http://127.0.0.1:{port}"
    model = ModelConfig(name="base", source=str(base), engine="vllm", max_model_len=1024, cpu_kvcache_gib=1)
    app = {"name": "studio", "route_prefix": "/", "import_path": "deployments.app:build_app",
           "args": StudioConfig(models=[model], remote=None, embedding_models=[]).model_dump(mode="json")}
    client.deploy_applications({"applications": [app]})
    wait_running(client, "studio")
    rows = []
    try:
        # 1. The studio's swap: use-as-backend (reconfigure in place), then back to the base model.
        with Load(url) as load:
            load.settle(args.window)
            switch_at = time.monotonic()
            resp = httpx.post(f"{url}/api/finetune/use-as-backend", json={"task_id": task_id}, timeout=600)
            resp.raise_for_status()
            switch_returned = time.monotonic()
            time.sleep(args.window)
        # The new model serves once the call returns (the swap is applied before it answers).
        rows.append(summarize("studio swap (reconfigure)", load, switch_at, switch_returned, "canary"))
        # 8-token answers: the canary's first 8 tokens.
        canary_ok = [bool(r[4]) and CANARY.startswith(r[4].strip()) for r in load.records
                     if r[0] > switch_at + 1 and r[4] is not None]
        print(f"answers with the canary after the swap: {sum(canary_ok)}/{len(canary_ok)}")
        print(f"switch call returned after {switch_returned - switch_at:.2f} s; slowest requests around it "
              "(start, end, seconds from the call):")
        for start, end, ok, answered_by, _ in sorted(load.records, key=lambda r: r[0] - r[1])[:4]:
            print(f"  {start - switch_at:+.2f} → {end - switch_at:+.2f}  ok={ok} model={answered_by}")
        httpx.post(f"{url}/api/finetune/switch-model", json={"model": "base"}, timeout=600).raise_for_status()

        # 2./3. Baselines: a redeploy that restarts the engine (its args change), without and with surge.
        baselines = () if args.swap_only else (("restart redeploy (default)", {}),
                                                ("restart redeploy (max_surge 100%)", {"max_surge_percent": 100}))
        for name, extra in baselines:
            seed = len(rows) + 1
            patched = app | {"args": app["args"] | {"models": [model.model_copy(update={"seed": seed}).model_dump(mode="json")]}}
            patched["deployments"] = [{"name": "LLM-base", **extra}] if extra else []
            with Load(url) as load:
                load.settle(args.window)
                since = client.get_serve_details()["applications"]["studio"]["last_deployed_time_s"]
                switch_at = time.monotonic()
                client.deploy_applications({"applications": [patched]})
                wait_running(client, "studio", since=since)
                switched_at = time.monotonic()
                time.sleep(args.window)
            rows.append(summarize(name, load, switch_at, switched_at, None))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"\nmodel={base.name}, 4 clients, 8-token requests")
    print(f"{'scenario':<36}{'requests':>9}{'failed':>8}{'usual s':>9}{'longest s':>11}{'stall s':>9}"
          f"{'usual after s':>15}{'first new s':>13}")
    for r in rows:
        first = f"{r['to_first_new_answer_s']:.2f}" if r["to_first_new_answer_s"] is not None else "-"
        after = f"{r['usual_after_s']:.2f}" if r["usual_after_s"] is not None else "-"
        print(f"{r['scenario']:<36}{r['requests']:>9}{r['failed']:>8}{r['usual_s']:>9.2f}{r['longest_s']:>11.2f}"
              f"{r['stall_s']:>9.2f}{after:>15}{first:>13}")


if __name__ == "__main__":
    main()
