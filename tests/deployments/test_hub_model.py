"""A model named by its Hugging Face hub id, from an HF cache laid out by the test, with HF_HUB_OFFLINE=1: the studio
serves it under that id, fine-tunes it on a Parquet upload (columns mapped from prompt/completion) and hot-swaps
the fine-tune in and back out with no failed request."""

from __future__ import annotations

import io
import time

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray import serve

from studio_helpers import deploy_declaratively, followed
from deployments.config import ModelConfig, StudioConfig
from test_hotswap import Traffic, ask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub_url(studio, ray_cluster, hub_model):
    """The studio deployed declaratively (so it can hot-swap) with one model, ``source`` and name the hub id."""
    model = ModelConfig(name=hub_model, source=hub_model, engine="vllm", max_model_len=512, cpu_kvcache_gib=1,
                        max_lora_rank=8)
    deploy_declaratively(ray_cluster.dashboard_url, "hub", StudioConfig(models=[model], remote=None))
    yield f"{studio.base_url}/hub"
    serve.delete("hub")


def _parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def test_serve_finetune_and_hot_swap_a_hub_model_offline(hub_url, hub_model):
    http = httpx.Client(base_url=hub_url, timeout=120)
    assert hub_model in [m["id"] for m in http.get("/v1/models").json()["data"]]
    name, _ = ask(hub_url, stream=False, model=hub_model)
    assert name == hub_model
    available = {m["name"]: m for m in http.get("/api/models/available").json()}
    assert available[hub_model]["kind"] == "cached" and available[hub_model]["size_bytes"] > 0

    rows = [{"prompt": f"Say the word number {i % 4}.", "completion": ["alpha", "beta", "gamma", "delta"][i % 4]}
            for i in range(24)]
    up = followed(http, http.post("/api/datasets", files={"file": ("words.parquet", _parquet(rows))},
                                  data={"model": hub_model, "max_length": "64"}))
    assert up.status_code == 201, up.text
    report = up.json()["report"]
    assert report["column_mapping"] == {"instruction": "prompt", "output": "completion"}
    assert report["tokens"]["model"] == hub_model and report["rows_valid"] == 24

    created = http.post("/api/finetune/create", json={
        "model": hub_model, "dataset_id": up.json()["id"], "name": "hub-words", "max_steps": 4, "batch_size": 4,
        "max_length": 64, "lora_r": 4, "lora_alpha": 8, "num_workers": 1})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    deadline, task = time.time() + 600, {}
    while time.time() < deadline:
        task = http.get(f"/api/finetune/tasks/{task_id}").json()
        if task["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(1)
    assert task["state"] == "completed", task
    listed = {m["name"]: m for m in http.get("/api/finetune/models").json()}
    assert listed[task_id]["base"] == hub_model  # the fine-tune's base is the served hub model

    with Traffic(hub_url) as traffic:
        time.sleep(2)
        swapped = http.post("/api/finetune/use-as-backend", json={"task_id": task_id}, timeout=600)
        assert swapped.status_code == 200, swapped.text
        assert ask(hub_url, stream=False)[0] == "hub-words"
        back = http.post("/api/finetune/switch-model", json={"model": hub_model}, timeout=600)
        assert back.status_code == 200, back.text
        time.sleep(1)
    assert [r for r in traffic.records if r[2] is not None] == []
    assert ask(hub_url, stream=True)[0] == hub_model
    assert f"{hub_model}:hub-words" in [m["root"] for m in http.get("/v1/models").json()["data"]]
