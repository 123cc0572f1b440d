"""The autoscaling path, for real, on Ray's fake multi-node provider: node types mirror cluster.yaml (fake GPUs
included), no worker node runs at first. Deploying the studio with a GPU engine launches a gpu.serve node and the
engine replica lands on it; a fine-tune whose workers ask for ``train_gpu`` is queued (not refused), the job manager
asks the autoscaler for a gpu.train node, the Train workers run there, and that node is removed once the task is done
and the node idle, while the serving node stays; deleting the app removes the serving node too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import pytest
import ray
import yaml

from deployments import serve_rest
from deployments.config import ModelConfig, StudioConfig
from sage_cli import launcher
from sage_studio.settings import get_settings

from operate_helpers import alive_nodes, follow_finetune, replica_actors, upload_toy_dataset, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


def fake_cluster_config(gcs_address: str) -> dict:
    """cluster.yaml with the fake provider and laptop-sized nodes: same node types, same custom resources."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["provider"] = {
        "type": "fake_multinode",
        "gcs_address": gcs_address,
        # Several Ray nodes share one IP here: the autoscaler must tell them apart by node id.
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    }
    config["idle_timeout_minutes"] = 0.25
    config["max_workers"] = 2
    for name, node_type in config["available_node_types"].items():
        node_type["node_config"] = {}
        node_type["resources"] = dict(node_type["resources"], CPU=1 if name != config["head_node_type"] else 2)
        if name != config["head_node_type"]:
            node_type["min_workers"], node_type["max_workers"] = 0, 1
        else:
            node_type["max_workers"] = 0
    for key in ("file_mounts", "initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        config[key] = {} if key == "file_mounts" else []
    config.pop("rsync_exclude", None)
    return config


@dataclass
class FakeCluster:
    dashboard_url: str
    base_url: str
    client: object  # the Serve REST client


@pytest.fixture(scope="module")
def fake_cluster(module_run_id, tiny_model_dir, tmp_path_factory):
    """The fake autoscaling cluster (a head only, at first) with the studio deployed: its GPU engine asks for a
    gpu.serve node."""
    rid, pids = module_run_id
    tmp_path = tmp_path_factory.mktemp("autoscaling")
    gcs_port = launcher.free_port()
    config = fake_cluster_config(f"{launcher.node_ip()}:{gcs_port}")
    jsonschema.validate(config, json.loads((Path(ray.__file__).parent / "autoscaler/ray-schema.json").read_text()))
    config_path = tmp_path / "autoscaling.yaml"
    config_path.write_text(yaml.safe_dump(config))
    head = launcher.start_ray_head(
        rid, tmp_path / "head.log", num_cpus=2, num_gpus=0, dashboard_port=0, gcs_port=gcs_port,
        autoscaling_config=config_path, extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
    )
    pids.append(head.pid)
    assert len(alive_nodes(head.dashboard_url)) == 1, "no worker before anything asks for one"

    model = ModelConfig(name="tiny-llama", source=str(tiny_model_dir), engine="transformers", max_model_len=512,
                        num_cpus=1, num_gpus=1, resources={"serve_gpu": 1})
    args = StudioConfig(models=[model], remote=None).model_dump(mode="json")
    client = serve_rest.serve_client(head.dashboard_url)
    port = launcher.free_port()
    serve_rest.deploy(client, launcher.serve_config(args, "127.0.0.1", port, None, "HeadOnly"))
    serve_rest.wait_running(client, launcher.APP_NAME, timeout_s=480)
    yield FakeCluster(head.dashboard_url, f"http://127.0.0.1:{port}", client)
    serve_rest.delete_all(client, timeout_s=120)


def _nodes_with(dashboard_url: str, resource: str) -> list:
    return [n for n in alive_nodes(dashboard_url) if n.resources_total.get(resource)]


def test_gpu_engine_lands_on_a_launched_gpu_node(fake_cluster):
    gpu_nodes = _nodes_with(fake_cluster.dashboard_url, "GPU")
    assert len(gpu_nodes) == 1 and gpu_nodes[0].resources_total.get("serve_gpu") == 1, "a gpu.serve node was launched"
    assert not _nodes_with(fake_cluster.dashboard_url, "train_gpu"), "no training node: nothing asked for one"
    engine = replica_actors(fake_cluster.dashboard_url, "studio", "LLM-tiny-llama")
    assert len(engine) == 1 and engine[0].node_id == gpu_nodes[0].node_id, "the GPU replica runs on the GPU node"


def test_finetune_launches_a_train_node_that_scales_down_when_idle(fake_cluster):
    url = fake_cluster.dashboard_url
    assert not _nodes_with(url, "train_gpu"), "no gpu.train node before the fine-tune"
    train_nodes: set[str] = set()  # every gpu.train node seen alive while the task runs

    def note_train_nodes() -> None:
        train_nodes.update(n.node_id for n in _nodes_with(url, "train_gpu"))

    # use_gpu off: the fake GPUs are only a resource label; torch on this machine has no CUDA.
    spec = {"model": "tiny-llama", "max_steps": 4, "batch_size": 4, "max_length": 64, "checkpoint_every": 2,
            "use_gpu": False}
    with httpx.Client(base_url=fake_cluster.base_url, timeout=300) as http:
        dataset_id = upload_toy_dataset(http)
        # No node type offers 2 train_gpu: refused at once, naming what the autoscaler can launch.
        r = http.post("/api/finetune/create", json={**spec, "dataset_id": dataset_id,
                                                    "worker_resources": {"train_gpu": 2}})
        assert r.status_code == 400 and "gpu.train (1 CPU, 1 GPU, 1 train_gpu, up to 1)" in r.text, r.text
        # One that only a gpu.train node, not yet launched, can hold: queued, not refused.
        task = http.post("/api/finetune/create", json={**spec, "dataset_id": dataset_id,
                                                       "worker_resources": {"train_gpu": 1}}).json()
        assert task.get("state") == "queued", task
        assert task["config"]["demand"] == {"CPU": 1, "train_gpu": 1}
        task, seen = follow_finetune(http, url, task["id"], timeout_s=900, on_poll=note_train_nodes)
    assert task["state"] == "completed", task
    log = (Path(get_settings().sage_home) / "studio_finetune" / task["id"] / "train.log").read_text()
    assert "asked the autoscaler for room for 1 worker(s) of 1 CPU, 1 train_gpu" in log, log

    assert len(train_nodes) == 1, f"one gpu.train node was launched for the task: {train_nodes}"
    assert seen, "the state API shows no Ray Train worker"
    assert set(seen.values()) == train_nodes, "every Train worker ran on the launched gpu.train node"

    # The request is withdrawn once the workers run: the idle training node goes, the busy serving node stays.
    wait_for("the idle gpu.train node to be removed", lambda: not _nodes_with(url, "train_gpu"), timeout_s=240)
    assert len(_nodes_with(url, "serve_gpu")) == 1, "the gpu.serve node still runs the engine"


def test_idle_gpu_node_is_removed_once_the_app_is_gone(fake_cluster):
    assert serve_rest.delete_all(fake_cluster.client, timeout_s=120)
    wait_for("the idle GPU node to be removed", lambda: not _nodes_with(fake_cluster.dashboard_url, "GPU"),
             timeout_s=240)
