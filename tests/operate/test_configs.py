"""cluster.yaml against Ray's own cluster-config schema; both Serve configs against Serve's schema and our builder."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.serve._private.build_app import build_app as serve_build
from ray.serve.schema import ServeDeploySchema

from deployments.app import build_app
from sage_cli import launcher

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _ray_schema() -> dict:
    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def test_cluster_yaml_passes_rays_schema():
    jsonschema.validate(_load("cluster.yaml"), _ray_schema())


def test_ray_schema_rejects_a_broken_cluster_yaml():
    # The check above can fail: a misspelt key or a fractional resource is refused by the same schema.
    config = _load("cluster.yaml")
    config["available_node_types"]["gpu.serve"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())
    config = _load("cluster.yaml")
    config["setup_comands"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())


def test_cluster_yaml_shape():
    config = _load("cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0, "the head serves gateway and UI: no GPU"
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(t["min_workers"] <= t["max_workers"] for t in workers.values())
    assert any(t["resources"].get("serve_gpu") for t in workers.values())
    assert any(t["resources"].get("train_gpu") for t in workers.values())
    setup = " ".join(config["setup_commands"])
    assert 'pip install -e ".[gpu]"' in setup
    assert "--head" in " ".join(config["head_start_ray_commands"])
    assert "SAGE_HOME=/mnt/sage" in " ".join(config["worker_start_ray_commands"])


def _deployments(serve_config: dict, app_name: str):
    app = next(a for a in serve_config["applications"] if a["name"] == app_name)
    return {d.name: d for d in serve_build(build_app(app["args"]), name=app_name).deployments}


@pytest.mark.parametrize("name", ["deployments/serve_config.yaml", "deployments/serve_config.gpu.yaml"])
def test_serve_configs_pass_serves_schema_and_build(name, sage_home):
    config = _load(name)
    ServeDeploySchema.model_validate(config)
    deployments = _deployments(config, "studio")
    assert "Gateway" in deployments and any(n.startswith("LLM-") for n in deployments)
    for engine in (d for n, d in deployments.items() if n.startswith("LLM-")):
        # A bounded queue with an explicit refusal: an overloaded engine answers 503 + Retry-After, not a hang.
        assert engine.max_queued_requests >= 1 and engine.max_ongoing_requests >= 1
        backpressure = engine._deployment_config.backpressure_config
        assert backpressure.status_code == 503 and backpressure.retry_after_s > 0


def test_gpu_serve_config_asks_gpus_for_engines_only(sage_home):
    config = _load("deployments/serve_config.gpu.yaml")
    for name, dep in _deployments(config, "studio").items():
        options = dep.ray_actor_options or {}
        if name.startswith("LLM-"):
            assert options["num_gpus"] >= 1 and options["resources"] == {"serve_gpu": 1}
        else:
            assert not options.get("num_gpus"), f"{name} must not ask for a GPU"
    cluster = _load("cluster.yaml")["available_node_types"]
    assert any(t["resources"].get("serve_gpu") for t in cluster.values()), "the resource must exist on a node type"
    cpu = _deployments(_load("deployments/serve_config.yaml"), "studio")
    assert not any((d.ray_actor_options or {}).get("num_gpus") for d in cpu.values())


def test_launcher_writes_a_config_serve_accepts(sage_home, tmp_path):
    from deployments.config import ModelConfig, StudioConfig

    args = StudioConfig(models=[ModelConfig(name="m", source="/models/m", resources={"llm_node": 1})],
                        remote=None).model_dump(mode="json")
    config = launcher.serve_config(args, "127.0.0.1", 8123, {"gateway_url": "http://127.0.0.1:8123"},
                                   env_vars={"SAGE_STUDIO_API_KEY_FILE": "/somewhere/api_key"})
    path = launcher.write_serve_config(config, tmp_path / "serve_config.yaml")
    assert path.stat().st_mode & 0o077 == 0, "it can hold keys: owner-only"
    parsed = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    assert [a.name for a in parsed.applications] == ["studio", "ui"]
    assert parsed.http_options.port == 8123
    engine = _deployments(config, "studio")["LLM-m"]
    assert engine.ray_actor_options["resources"] == {"llm_node": 1}


def test_start_puts_the_key_in_a_0600_file_and_only_its_path_in_the_config(sage_home, tmp_path):
    from deployments.config import StudioConfig
    from deployments.ui_deployment import UIConfig
    from sage_studio.api_key import KEY_FILE_VAR
    from sage_cli.start import StartOptions, deploy_config

    key = "sk-sage-config-test-0123456789"
    state = launcher.StudioState(run_id="r", owns_ray=True, dashboard_url="http://127.0.0.1:8265",
                                 http_host="127.0.0.1", http_port=8123, log_dir=str(tmp_path),
                                 serve_config_path=str(tmp_path / "serve_config.yaml"))
    args = StudioConfig(models=[], remote=None).model_dump(mode="json")
    config = deploy_config(state, StartOptions(port=8123), args, key)
    key_file = sage_home / "studio" / "api_key"
    assert key_file.read_text().strip() == key and key_file.stat().st_mode & 0o777 == 0o600
    written = (tmp_path / "serve_config.yaml").read_text()
    assert key not in written and key not in json.dumps(config)
    for app in config["applications"]:  # the studio and the UI get the path, and nothing else about the key
        assert app["runtime_env"] == {"env_vars": {KEY_FILE_VAR: str(key_file)}}
    ui = next(a for a in config["applications"] if a["name"] == launcher.UI_APP_NAME)
    UIConfig.model_validate(ui["args"])
    with pytest.raises(ValueError, match="SAGE_STUDIO_API_KEY_FILE"):
        UIConfig.model_validate(ui["args"] | {"api_key": key})  # the UI refuses a key in its args

    again = deploy_config(state, StartOptions(port=8123), args, None)  # a start without a key
    assert not key_file.exists() and all("runtime_env" not in app for app in again["applications"])


def test_the_finetune_manager_reads_which_nodes_cluster_yaml_can_launch():
    from train import autoscale

    scaler = autoscale.parse_config(_load("cluster.yaml"), "cluster.yaml")
    assert {t.name: t.max_workers for t in scaler.node_types} == {"gpu.serve": 4, "gpu.train": 4}, "head excluded"
    head = _load("cluster.yaml")["available_node_types"]["ray.head.default"]["resources"]
    on_train_gpus = autoscale.worker_bundle(4, True, {"train_gpu": 1})
    assert [autoscale.fits(on_train_gpus, t.resources) for t in scaler.node_types] == [0, 1]
    assert autoscale.capacity(on_train_gpus, [head], None) == 0, "a fixed cluster with only the head holds none"
    assert autoscale.capacity(on_train_gpus, [head], scaler) == 4, "one per gpu.train node, at most 4 of them"
    # The cluster-wide max_workers caps the launches too: 7 workers already up leave room for one more node.
    assert autoscale.capacity(on_train_gpus, [head] + [{"CPU": 4}] * 7, scaler) == 1
    assert autoscale.capacity(autoscale.worker_bundle(9, False, None), [head], scaler) == 0, "no node has 9 CPUs"
