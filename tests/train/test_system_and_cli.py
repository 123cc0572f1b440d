"""/api/system/gpu-info on the real cluster, the recommendation rules on GPU inventories (no GPU here: the
inventory is built from nvidia-smi output), and the `sage finetune` CLI against the running routers."""

from __future__ import annotations

import json
import time

import ray
from ft_helpers import alpaca_rows
from typer.testing import CliRunner

from train.recommend import GpuInfo, parse_nvidia_smi, recommend, recommendations


def test_gpu_info_reports_the_cluster_and_recommends(http):
    r = http.get("/api/system/gpu-info", params={"model": "tiny-llama"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["cluster"]["cpus"] == ray.cluster_resources()["CPU"]
    assert info["gpus"] == [] and info["dashboard_url"].startswith("http")
    first = info["recommendations"][0]
    assert first["model"] == "tiny-llama" and first["model_size_b"] < 0.001
    assert first["use_gpu"] is False and first["num_workers"] == 1
    assert first["notes"][0].startswith("No GPU: 1 worker")
    assert {r["model"] for r in info["recommendations"]} >= {"0.135B", "7B", "13B"}
    assert http.get("/api/system/gpu-info", params={"model": "nope"}).status_code == 400


def test_gpu_info_in_a_fresh_home_only_looks_the_model_up(http, monkeypatch, tmp_path):
    """A GET never prepares a model: in a SAGE_HOME where SmolLM2 is not converted yet, it answers at once with
    the standard sizes, says the model is not prepared when asked for it, and writes no model file."""
    from sage_studio.settings import DEFAULT_MODEL_NAME, get_settings

    fresh = tmp_path / "fresh_home"
    monkeypatch.setenv("SAGE_HOME", str(fresh))
    get_settings.cache_clear()
    try:
        started = time.monotonic()
        r = http.get("/api/system/gpu-info")
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        rows = {row["model"] for row in r.json()["recommendations"]}
        assert DEFAULT_MODEL_NAME not in rows and {"0.135B", "7B"} <= rows
        r = http.get("/api/system/gpu-info", params={"model": DEFAULT_MODEL_NAME})
        assert r.status_code == 400 and "not prepared" in r.json()["detail"], r.text
        assert not (fresh / "models").exists(), "a GET converted the model"
        assert elapsed < 30, f"gpu-info took {elapsed:.0f} s (the GGUF conversion takes about a minute)"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_recommendations_follow_gpu_memory():
    smi = "0, NVIDIA H100 80GB HBM3, 81559, 1\n1, NVIDIA H100 80GB HBM3, 81559, 3\n"
    gpus = parse_nvidia_smi(smi, "10.0.0.2")
    assert [(g.index, g.name, g.memory_total_mib) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559), (1, "NVIDIA H100 80GB HBM3", 81559)]
    big = recommend(7.0, gpus, cpus=32)
    assert big.fits and big.use_gpu and big.num_workers == 2 and big.max_length == 2048 and big.lora_r == 16
    small_gpu = [GpuInfo(node_ip="x", index=0, name="T4", memory_total_mib=15360)]
    t4 = recommend(7.0, small_gpu, cpus=8)
    assert t4.batch_size <= big.batch_size
    assert not recommend(13.0, small_gpu, cpus=8).fits  # 26 GB of bf16 weights on a 15 GB card
    cpu = recommend(0.135, [], cpus=2)
    assert (cpu.use_gpu, cpu.num_workers, cpu.cpus_per_worker) == (False, 1, 2)
    named = recommendations(gpus, 32, {"SmolLM2": 0.135})
    assert named[0]["model"] == "SmolLM2" and len(named) == 7


def test_cli_start_list_logs_cancel(ft_app, tmp_path):
    from sage_cli.finetune import app

    data = tmp_path / "cli.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in alpaca_rows(16)))
    runner = CliRunner()
    url = ["--url", ft_app.base_url]
    result = runner.invoke(app, ["start", "--data", str(data), "--model", "tiny-llama", "--max-length", "64",
                                 "--max-steps", "3", "--batch-size", "4", *url])
    assert result.exit_code == 0, result.output
    assert "alpaca, 16 valid / 16 rows" in result.output and "completed" in result.output
    task_id = result.output.split("task ")[1].split()[0]
    listed = runner.invoke(app, ["list", *url])
    assert task_id in listed.output and "completed" in listed.output
    logs = runner.invoke(app, ["logs", task_id, *url])
    assert logs.exit_code == 0 and "step 3/3" in logs.output
    refused = runner.invoke(app, ["cancel", task_id, *url])
    assert refused.exit_code == 1 and "already completed" in refused.output
    down = runner.invoke(app, ["list", "--url", "http://127.0.0.1:9"])
    assert down.exit_code == 2 and "cannot reach the studio" in down.output


def test_cli_worker_resources(tmp_path):
    from sage_cli.finetune import _parse_resources, app

    assert _parse_resources(["train_gpu=1", "memory=2e9"]) == {"train_gpu": 1.0, "memory": 2e9}
    data = tmp_path / "cli.jsonl"
    data.write_text(json.dumps(alpaca_rows(1)[0]) + "\n")
    for bad in ("train_gpu", "=1", "train_gpu=lots"):
        result = CliRunner().invoke(app, ["start", "--data", str(data), "--worker-resource", bad,
                                          "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 2 and "NAME=AMOUNT" in result.output, result.output  # before any request
