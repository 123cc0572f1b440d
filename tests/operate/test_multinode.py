"""Two Ray nodes on this machine: the head, and a second node offering custom resources (``llm_node`` and
``train_node``). An engine whose ModelConfig asks for ``llm_node`` and a fine-tune whose ``worker_resources`` ask
for ``train_node`` must both run on the second node (proved from Ray's state API); chat works through the head's
HTTP proxy, and the fine-tune's checkpoints land in the storage path every node reaches (``SAGE_HOME``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deployments import serve_rest
from deployments.config import ModelConfig, StudioConfig
from sage_cli import launcher
from sage_studio.settings import get_settings

from operate_helpers import alive_nodes, follow_finetune, replica_actors, upload_toy_dataset, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@dataclass
class TwoNodes:
    dashboard_url: str
    head_id: str
    second_id: str
    base_url: str


@pytest.fixture(scope="module")
def two_nodes(module_run_id, tiny_model_dir, tmp_path_factory):
    """Head (2 CPUs) + a second node (2 CPUs, llm_node and train_node), with the studio deployed on them."""
    rid, pids = module_run_id
    logs = tmp_path_factory.mktemp("two_nodes")
    head = launcher.start_ray_head(rid, logs / "head.log", num_cpus=2, dashboard_port=0)
    pids.append(head.pid)
    worker = launcher.start_ray_worker(rid, head.gcs_address, logs / "worker.log", num_cpus=2,
                                       resources={"llm_node": 1, "train_node": 1}, dashboard_url=head.dashboard_url)
    pids.append(worker.pid)
    nodes = wait_for("two alive nodes", lambda: (n := alive_nodes(head.dashboard_url)) and len(n) == 2 and n,
                     timeout_s=60)
    second = next(n for n in nodes if n.resources_total.get("llm_node"))
    head_node = next(n for n in nodes if n.is_head_node)
    assert second.node_id != head_node.node_id

    model = ModelConfig(name="tiny-llama", source=str(tiny_model_dir), engine="transformers", max_model_len=512,
                        resources={"llm_node": 1})
    args = StudioConfig(models=[model], remote=None).model_dump(mode="json")
    port = launcher.free_port()
    client = serve_rest.serve_client(head.dashboard_url)
    serve_rest.deploy(client, launcher.serve_config(args, "127.0.0.1", port, None, "HeadOnly"))
    status = serve_rest.wait_running(client, launcher.APP_NAME, timeout_s=420)
    assert {d.name for d in status.deployments} == {"Gateway", "LLM-tiny-llama"}
    yield TwoNodes(head.dashboard_url, head_node.node_id, second.node_id, f"http://127.0.0.1:{port}")
    assert serve_rest.delete_all(client, timeout_s=120)


def test_engine_is_placed_on_the_node_with_its_resource(two_nodes):
    engine = replica_actors(two_nodes.dashboard_url, "studio", "LLM-tiny-llama")
    assert len(engine) == 1 and engine[0].node_id == two_nodes.second_id, "the engine runs where llm_node is"
    gateway = replica_actors(two_nodes.dashboard_url, "studio", "Gateway")
    assert len(gateway) == 1  # no resource asked: wherever Ray put it, it reaches the engine on the other node

    reply = httpx.post(f"{two_nodes.base_url}/v1/chat/completions", timeout=120, json={
        "model": "sage-default", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "tiny-llama"


def test_finetune_workers_run_on_the_node_with_their_resource(two_nodes):
    with httpx.Client(base_url=two_nodes.base_url, timeout=300) as http:
        task = http.post("/api/finetune/create", json={
            "model": "tiny-llama", "dataset_id": upload_toy_dataset(http), "max_steps": 4, "batch_size": 4,
            "max_length": 64, "checkpoint_every": 2, "worker_resources": {"train_node": 1}}).json()
        assert task.get("state") == "queued", task
        assert task["config"]["demand"] == {"CPU": 1, "train_node": 1}
        task, seen = follow_finetune(http, two_nodes.dashboard_url, task["id"], timeout_s=900)
    assert task["state"] == "completed", task
    assert seen, "the state API shows no Ray Train worker"
    assert set(seen.values()) == {two_nodes.second_id}, "every Train worker ran where train_node is"

    # Checkpoints go to RunConfig.storage_path: the task's folder under SAGE_HOME, the path every node mounts.
    task_dir = Path(get_settings().sage_home) / "studio_finetune" / task["id"]
    assert sorted(p.name for p in (task_dir / "ray_train").glob("checkpoint_*")), "no checkpoint in the storage path"
    assert (task_dir / "adapter" / "adapter_config.json").is_file()
