"""Fine-tunes end to end on real Ray (Jobs API + Ray Train + Ray Data) with the tiny Llama, over real HTTP:
completion with a falling loss and a peft-loadable adapter, a killed worker resuming from its checkpoint,
the FIFO queue and cancel at every state, and a studio restart during a run."""

from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest
import ray
from ft_helpers import alpaca_rows, upload, wait_for

FAST = {"model": "tiny-llama", "batch_size": 4, "learning_rate": 5e-3, "max_length": 64, "lora_r": 8,
        "lora_alpha": 16, "lora_dropout": 0.0, "val_size": 0.0}


@pytest.fixture(scope="module")
def dataset_id(ft_app):
    with ft_app.client() as http:
        body = "".join(json.dumps(r) + "\n" for r in alpaca_rows(64)).encode()
        r = upload(http, "toy.jsonl", body, max_length="64")
        assert r.status_code == 201, r.text
        return r.json()["id"]


def create(http, dataset_id, **overrides):
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, **overrides})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.slow  # 62 s here (2 busy cores)
def test_finetune_completes_with_falling_loss_and_a_peft_adapter(http, ft_app, dataset_id, tiny_model_dir):
    task = create(http, dataset_id, epochs=3, checkpoint_every=8, name="toy run", val_size=0.2, eval_steps=8)
    assert task["state"] == "queued" and task["name"] == "toy run"
    assert task["config"]["batch_size"] == 4  # what was asked is what runs: never silently changed
    seen = set()
    deadline = time.time() + 600
    while (state := http.get(f"/api/finetune/tasks/{task['id']}").json()["state"]) not in ("completed", "failed"):
        seen.add(state)
        assert time.time() < deadline
        time.sleep(0.3)
    done = http.get(f"/api/finetune/tasks/{task['id']}").json()
    assert done["state"] == "completed", done
    assert "preparing" in seen
    # 64 rows, 13 held out (val_size 0.2): 51 / 4 per step -> 13 steps per epoch × 3 epochs
    assert done["progress"]["step"] == done["progress"]["total_steps"] == 39
    points = http.get(f"/api/finetune/tasks/{task['id']}/metrics").json()["points"]
    assert [p["step"] for p in points] == list(range(1, 40))
    losses = [p["loss"] for p in points]
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.3, losses  # from ~6.1 (random) to ~5.6 nats
    evals = {p["step"]: p["eval_loss"] for p in points if p["eval_loss"] is not None}
    assert list(evals) == [8, 16, 24, 32, 39], points  # every eval_steps and at the last step
    assert evals[39] < evals[8], evals
    evaluation = done["evaluation"]  # computed once after training, on the 13 held-out rows
    assert evaluation["rows"] == 13 and evaluation["fine_tuned"]["loss"] == evals[39]
    assert evaluation["fine_tuned"]["loss"] < evaluation["base"]["loss"] - 0.3, evaluation
    assert [p["base_eval_loss"] for p in points if p["base_eval_loss"] is not None] == [evaluation["base"]["loss"]]
    assert abs(evaluation["base"]["perplexity"] - math.exp(evaluation["base"]["loss"])) < 0.01 * math.exp(
        evaluation["base"]["loss"])
    out = ft_app.home / "studio_finetune" / task["id"]
    assert {"task.json", "metrics.jsonl", "train.log", "result.json", "job.log", "adapter", "held_out.json"} <= {
        p.name for p in out.iterdir()}
    assert len(json.loads((out / "held_out.json").read_text())["rows"]) == 13
    assert json.loads((out / "task.json").read_text())["batch_size"] == 4
    assert (done["progress"]["adapter_path"], done["progress"]["steps"], done["progress"]["final_loss"]) == (
        str(out / "adapter"), 39, losses[-1])  # result.json, folded into the row
    log = http.get(f"/api/finetune/tasks/{task['id']}/logs").text
    assert "step 39/39" in (out / "train.log").read_text() and "[sage] completed: 39 steps" in log
    assert "13 rows held out, eval every 8 steps" in log
    with http.stream("GET", f"/api/finetune/tasks/{task['id']}/logs", params={"follow": "true"}) as stream:
        followed = "".join(stream.iter_text())  # the job is over: the stream must end by itself
    assert "[sage] completed: 39 steps" in followed

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "adapter")
    tok = AutoTokenizer.from_pretrained(out / "adapter")
    prompt = tok.apply_chat_template([{"role": "user", "content": "Say the word number 1."}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert not torch.allclose(base(**prompt).logits, tuned(**prompt).logits)


@pytest.mark.slow  # 70 s here (2 busy cores)
def test_killed_worker_resumes_from_last_checkpoint(http, ft_app, dataset_id):
    task = create(http, dataset_id, epochs=12, checkpoint_every=40, max_failures=2)  # 192 steps
    status_file = ft_app.home / "studio_finetune" / task["id"] / "status.json"
    deadline = time.time() + 600
    while True:  # kill once the controller has registered a checkpoint (what a restart resumes from)
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        if status.get("last_checkpoint_step", 0) >= 40:
            break
        assert time.time() < deadline, status
        time.sleep(0.05)
    assert status["step"] < 192, "the run ended before the worker could be killed"
    os.kill(status["worker_pid"], signal.SIGKILL)  # the Ray Train worker process of rank 0
    done = wait_for(http, task["id"], ("completed", "failed"), timeout=600)
    assert done["state"] == "completed", done
    assert done["progress"]["failures"] == 1
    points = http.get(f"/api/finetune/tasks/{task['id']}/metrics").json()["points"]
    assert [p["step"] for p in points] == list(range(1, 193))
    resumed = {p["resumed_from"] for p in points}
    assert 0 in resumed and max(resumed) >= 40  # the restarted group went on from a checkpoint, not from step 0
    log = (ft_app.home / "studio_finetune" / task["id"] / "train.log").read_text()
    assert "worker 0 failed" in log and "restarting from the last checkpoint" in log


@pytest.mark.slow  # 73 s here (2 busy cores)
def test_queue_fifo_and_cancel_in_every_state(http, dataset_id, ray_cluster):
    free = ray.available_resources().get("CPU", 0)
    cpus = free // 2 + 1  # one task fits, two do not
    long = create(http, dataset_id, epochs=100, batch_size=1, cpus_per_worker=cpus)  # 6,400 steps
    nxt = create(http, dataset_id, max_steps=4, cpus_per_worker=cpus)
    last = create(http, dataset_id, max_steps=4, cpus_per_worker=cpus)
    wait_for(http, long["id"], ("training",), timeout=600)
    assert http.get(f"/api/finetune/tasks/{nxt['id']}").json()["state"] == "queued"
    cancelled = http.post(f"/api/finetune/tasks/{last['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["job_id"] is None
    r = http.post(f"/api/finetune/tasks/{long['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    done = wait_for(http, nxt["id"], ("completed", "failed"), timeout=600)
    assert done["state"] == "completed", done
    assert http.get(f"/api/finetune/tasks/{long['id']}").json()["state"] == "cancelled"
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_cluster.dashboard_url)
    assert str(client.get_job_status(http.get(f"/api/finetune/tasks/{long['id']}").json()["job_id"])) in (
        "STOPPED", "JobStatus.STOPPED")
    r = http.post(f"/api/finetune/tasks/{last['id']}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["error"]["message"]
    assert http.delete(f"/api/finetune/tasks/{last['id']}").status_code == 204
    assert http.get(f"/api/finetune/tasks/{last['id']}").status_code == 404


def test_studio_restart_during_a_run(http, ft_app, dataset_id):
    task = create(http, dataset_id, epochs=30)  # 480 steps
    wait_for(http, task["id"], ("training",), timeout=600)
    ft_app.restart()  # a new gateway: new manager, same SQLite, the Ray job untouched
    with ft_app.client() as again:
        listed = {t["id"]: t for t in again.get("/api/finetune/tasks").json()}
        assert listed[task["id"]]["state"] in ("training", "completed")
        done = wait_for(again, task["id"], ("completed", "failed"), timeout=600)
    assert done["state"] == "completed", done


def test_create_rejects_what_cannot_run(http, dataset_id):
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": "ds-missing"})
    assert r.status_code == 404 and "upload it first" in r.json()["error"]["message"]
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "num_workers": 64,
                                                "cpus_per_worker": 64})
    assert r.status_code == 400 and "the whole cluster has" in r.json()["error"]["message"]
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id,
                                                "worker_resources": {"train_node": 1}})
    assert r.status_code == 400 and "needs 1 train_node" in r.json()["error"]["message"], r.text
    for bad, word in (({"train_node": -1}, "train_node"), ({"CPU": 2}, "cpus_per_worker"), ({" ": 1}, "empty")):
        r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "worker_resources": bad})
        assert r.status_code == 422 and word in r.json()["error"]["message"], r.text
    for val_size in (0.6, -0.1):
        r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "val_size": val_size})
        assert r.status_code == 422 and "val_size" in r.json()["error"]["message"], r.text
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "val_size": 0.5,
                                                "num_workers": 40})  # 32 held out, 32 left for 40 workers
    assert r.status_code == 422, r.text
    assert "leaves 32 for training, fewer than the 40 worker(s)" in r.json()["error"]["message"]
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "learning_rate": -1})
    assert r.status_code == 422 and "learning_rate" in r.json()["error"]["message"]
    r = http.post("/api/finetune/create", json={**FAST, "dataset_id": dataset_id, "model": "nope"})
    assert r.status_code == 400
    assert http.get("/api/finetune/tasks/ft-nope").status_code == 404
    assert http.post("/api/finetune/tasks/ft-nope/cancel").status_code == 404


def test_a_vanished_job_is_marked_failed_on_restart(ft_app):
    from train.store import FinetuneStore

    store = FinetuneStore(ft_app.home)  # as left by a studio whose Ray cluster was since replaced
    store.add_task("ft-ghost", "ghost", {"demand": {"CPU": 1}})
    store.update_task("ft-ghost", state="training", job_id="sage-ft-ft-ghost", progress={"step": 3})
    ft_app.restart()
    with ft_app.client() as http:
        task = http.get("/api/finetune/tasks/ft-ghost").json()
    assert task["state"] == "failed" and "gone" in task["error"] and task["progress"]["step"] == 3
