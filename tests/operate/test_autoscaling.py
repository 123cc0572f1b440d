"""The autoscaling path, for real, on Ray's fake multi-node provider: node types mirror cluster.yaml (fake GPUs
included). Deploying the studio with a GPU engine launches a gpu.serve node on demand, the engine replica lands on
it, and the node is removed again once the app is gone and the node idle."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from deployments.config import ModelConfig, StudioConfig
from sage_studio import launcher, serve_rest

from operate_helpers import alive_nodes, replica_actors, wait_for

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


def test_gpu_engine_scales_a_gpu_node_up_and_down(run_id, tiny_model_dir, tmp_path):
    rid, pids = run_id
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
    serve_rest.deploy(client, launcher.serve_config(args, "127.0.0.1", launcher.free_port(), None, "HeadOnly"))
    serve_rest.wait_running(client, launcher.APP_NAME, timeout_s=480)

    nodes = alive_nodes(head.dashboard_url)
    gpu_nodes = [n for n in nodes if n.resources_total.get("GPU")]
    assert len(gpu_nodes) == 1 and gpu_nodes[0].resources_total.get("serve_gpu") == 1, "a gpu.serve node was launched"
    assert not any(n.resources_total.get("train_gpu") for n in nodes), "no training node: nothing asked for one"
    engine = replica_actors(head.dashboard_url, "studio", "LLM-tiny-llama")
    assert len(engine) == 1 and engine[0].node_id == gpu_nodes[0].node_id, "the GPU replica runs on the GPU node"

    assert serve_rest.delete_all(client, timeout_s=120)
    wait_for("the idle GPU node to be removed",
             lambda: not any(n.resources_total.get("GPU") for n in alive_nodes(head.dashboard_url)), timeout_s=240)
