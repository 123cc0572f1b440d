"""Two Ray nodes on this machine: the head, and a second node offering a custom resource. An engine whose
ModelConfig asks for that resource must run on the second node (proved from Ray's state API), and chat still
works through the head's HTTP proxy."""

from __future__ import annotations

import httpx
import pytest

from deployments.config import ModelConfig, StudioConfig
from sage_studio import launcher, serve_rest

from operate_helpers import alive_nodes, replica_actors, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_engine_is_placed_on_the_node_with_its_resource(run_id, tiny_model_dir, tmp_path):
    rid, pids = run_id
    head = launcher.start_ray_head(rid, tmp_path / "head.log", num_cpus=2, dashboard_port=0)
    pids.append(head.pid)
    worker = launcher.start_ray_worker(rid, head.gcs_address, tmp_path / "worker.log", num_cpus=2,
                                       resources={"llm_node": 1}, dashboard_url=head.dashboard_url)
    pids.append(worker.pid)
    nodes = wait_for("two alive nodes", lambda: (n := alive_nodes(head.dashboard_url)) and len(n) == 2 and n,
                     timeout_s=60)
    llm_node = next(n for n in nodes if n.resources_total.get("llm_node"))
    head_node = next(n for n in nodes if n.is_head_node)
    assert llm_node.node_id != head_node.node_id

    model = ModelConfig(name="tiny-llama", source=str(tiny_model_dir), engine="transformers", max_model_len=512,
                        resources={"llm_node": 1})
    args = StudioConfig(models=[model], remote=None).model_dump(mode="json")
    port = launcher.free_port()
    client = serve_rest.serve_client(head.dashboard_url)
    serve_rest.deploy(client, launcher.serve_config(args, "127.0.0.1", port, None, "HeadOnly"))
    status = serve_rest.wait_running(client, launcher.APP_NAME, timeout_s=420)
    assert {d.name for d in status.deployments} == {"Gateway", "LLM-tiny-llama"}

    engine = replica_actors(head.dashboard_url, "studio", "LLM-tiny-llama")
    assert len(engine) == 1 and engine[0].node_id == llm_node.node_id, "the engine runs where llm_node is"
    gateway = replica_actors(head.dashboard_url, "studio", "Gateway")
    assert len(gateway) == 1  # no resource asked: wherever Ray put it, it reaches the engine on the other node

    reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
        "model": "sage-default", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "tiny-llama"
    assert serve_rest.delete_all(client, timeout_s=120)
