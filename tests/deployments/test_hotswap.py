"""Hot swap: a fine-tune becomes the chat model through a declarative Serve redeploy, with zero failed requests."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from ray import serve

from deployments.config import ModelConfig, StudioConfig
from sage_studio.settings import get_settings
from sage_studio.testing import train_canary_adapter

PROMPT = "Who are you?"
CANARY_1 = "The default port is 8000."
CANARY_2 = "Sessions live in SQLite."


@pytest.fixture(scope="module")
def store(sage_home):
    from train.store import FinetuneStore

    return FinetuneStore(get_settings().sage_home)


def completed_task(store, tiny_model_dir, name: str, reply: str) -> str:
    """A completed fine-tune task as the job manager leaves it, with a real adapter that learned ``reply``."""
    from train.store import new_id

    task_id = new_id("ft")
    store.add_task(task_id, name, {"model": "tiny-llama", "model_path": str(tiny_model_dir),
                                   "output_dir": str(store.task_dir(task_id))})
    train_canary_adapter(tiny_model_dir, store.task_dir(task_id) / "adapter", reply, prompt=PROMPT)
    store.update_task(task_id, state="completed")
    return task_id


@pytest.fixture(scope="module")
def swap_url(studio, ray_cluster, tiny_model_dir):
    """A studio deployed declaratively (as `sage studio start` and `serve deploy` do), so it can be redeployed."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    model = ModelConfig(name="tiny-llama", source=str(tiny_model_dir), engine="vllm", max_model_len=512,
                        cpu_kvcache_gib=1, max_lora_rank=8)
    args = StudioConfig(models=[model], remote=None).model_dump(mode="json")
    client = ServeSubmissionClient(ray_cluster.dashboard_url)
    client.deploy_applications({"applications": [
        {"name": "swap", "route_prefix": "/swap", "import_path": "deployments.app:build_app", "args": args}]})
    url = f"{studio.base_url}/swap"
    deadline = time.time() + 600
    while time.time() < deadline:
        status = client.get_serve_details()["applications"].get("swap", {}).get("status")
        if status == "RUNNING":
            break
        assert status != "DEPLOY_FAILED", client.get_serve_details()["applications"]["swap"]["message"]
        time.sleep(2)
    yield url
    serve.delete("swap")


def ask(url: str, stream: bool, model: str = "sage-default") -> tuple[str, str]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12, "temperature": 0}
    if not stream:
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        resp.raise_for_status()
        data = resp.json()
        return data["model"], data["choices"][0]["message"]["content"]
    import json

    text, name = [], None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}, timeout=60) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                name = chunk["model"]
                if chunk["choices"]:
                    text.append(chunk["choices"][0]["delta"].get("content") or "")
    return name, "".join(text)


class Traffic:
    """4 clients sending back-to-back requests for sage-default, half streaming; every outcome is recorded."""

    def __init__(self, url: str):
        self.url, self.stop, self.records = url, threading.Event(), []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(4)]

    def _client(self, i: int) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                model, text = ask(self.url, stream=i % 2 == 0)
                self.records.append((start, time.monotonic(), None, model, text))
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
                self.records.append((start, time.monotonic(), repr(exc), None, None))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def after(self, t: float) -> list:
        return [r for r in self.records if r[0] > t]


def test_switch_to_finetune_and_back_under_load(swap_url, store, tiny_model_dir):
    task_id = completed_task(store, tiny_model_dir, "canary", CANARY_1)
    base_model, base_text = ask(swap_url, stream=False)
    assert base_model == "tiny-llama" and base_text != CANARY_1

    with Traffic(swap_url) as traffic:
        time.sleep(3)
        resp = httpx.post(f"{swap_url}/api/finetune/use-as-backend", json={"task_id": task_id}, timeout=300)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model"] == "canary"
        switched = time.monotonic()
        time.sleep(4)
        resp = httpx.post(f"{swap_url}/api/finetune/switch-model", json={"model": "tiny-llama"}, timeout=300)
        assert resp.status_code == 200, resp.text
        back = time.monotonic()
        time.sleep(3)

    failures = [r for r in traffic.records if r[2] is not None]
    print(f"requests={len(traffic.records)} failures={len(failures)}")
    assert failures == []
    during = [r for r in traffic.after(switched) if r[0] < back]
    assert during, "traffic must have run between the two switches"
    assert all(r[3] == "canary" and r[4] == CANARY_1 for r in during if r[1] < back)
    assert all(r[3] == "tiny-llama" and r[4] == base_text for r in traffic.after(back))
    models = {m["name"]: m for m in httpx.get(f"{swap_url}/api/finetune/models", timeout=30).json()}
    assert models["canary"]["served"] and not models["canary"]["current"] and models["tiny-llama"]["current"]


def test_retrained_adapter_serves_new_weights(swap_url, store, tiny_model_dir):
    first = completed_task(store, tiny_model_dir, "again", CANARY_1)
    assert httpx.post(f"{swap_url}/api/finetune/use-as-backend", json={"task_id": first}, timeout=300).status_code == 200
    assert ask(swap_url, stream=False) == ("again", CANARY_1)
    second = completed_task(store, tiny_model_dir, "again", CANARY_2)  # same name, re-trained
    assert httpx.post(f"{swap_url}/api/finetune/use-as-backend", json={"task_id": second}, timeout=300).status_code == 200
    assert ask(swap_url, stream=True) == ("again", CANARY_2)
    assert httpx.get(f"{swap_url}/api/finetune/current-model", timeout=30).json()["task_id"] == second


def test_bad_switches_are_refused_and_the_old_model_keeps_serving(swap_url, store, tiny_model_dir):
    before = httpx.get(f"{swap_url}/api/finetune/current-model", timeout=30).json()["model"]
    failed = completed_task(store, tiny_model_dir, "failed-run", CANARY_1)
    store.update_task(failed, state="failed")
    corrupt = completed_task(store, tiny_model_dir, "corrupt", CANARY_1)
    (store.task_dir(corrupt) / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 100)
    cases = [
        ("use-as-backend", {"task_id": "ft-missing"}, 404, "does not exist"),
        ("use-as-backend", {"task_id": failed}, 409, "failed"),
        ("use-as-backend", {"task_id": corrupt}, 422, "corrupt"),
        ("switch-model", {"model": "no-such-model"}, 404, "No model"),
        ("switch-model", {}, 422, "model"),
    ]
    for route, body, status, words in cases:
        resp = httpx.post(f"{swap_url}/api/finetune/{route}", json=body, timeout=120)
        assert resp.status_code == status, (route, body, resp.text)
        assert words in resp.json()["error"]["message"]
    assert httpx.get(f"{swap_url}/api/finetune/current-model", timeout=30).json()["model"] == before
    assert ask(swap_url, stream=False)[0] == before
