"""The app config rejects bad input at once, and the shipped Serve configs are valid for Serve and for the builder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from deployments.config import ModelConfig, StudioConfig
from deployments.ui_deployment import UIConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "deployments").glob("serve_config*.yaml")), ids=lambda p: p.name)
def test_shipped_serve_configs_validate(path):
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    apps = {app.name: app for app in config.applications}
    studio = StudioConfig.model_validate(apps["studio"].args)
    assert studio.models and studio.default_model == studio.models[0].name
    if "ui" in apps:
        UIConfig.model_validate(apps["ui"].args)


@pytest.mark.parametrize(
    "args, words",
    [
        ({"models": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}, "unique"),
        ({"models": [{"name": "sage-default", "source": "x"}]}, "reserved"),
        ({"models": [{"name": "a", "source": "x"}], "default_model": "b", "remote": None}, "default_model"),
        ({"models": [{"name": "a", "source": "x", "engine": "tensorrt"}]}, "engine"),
        ({"models": [{"name": "a", "source": "x", "autoscaling": {"min_replicas": 3, "max_replicas": 1}}]}, "min_replicas"),
        ({"models": [{"name": "a", "source": "x", "max_model_len": 8}]}, "max_model_len"),
        ({"modles": []}, "modles"),
    ],
)
def test_bad_app_config_is_rejected_with_a_reason(args, words):
    with pytest.raises(ValidationError) as info:
        StudioConfig.model_validate(args)
    assert words in str(info.value)


def test_defaults_are_the_embedded_model_on_cpu():
    config = StudioConfig()
    assert [m.name for m in config.models] == ["SmolLM2-135M-Instruct"]
    assert config.models[0].num_gpus == 0 and config.models[0].engine == "auto"
    assert ModelConfig(name="m", source="s").enable_lora


def test_cpu_engine_runs_float32_unless_asked_otherwise():
    # vLLM's own "auto" is bf16 on CPU, which died with SIGILL on an AMX host (deployments/engines/vllm_engine.py).
    from deployments.engines.vllm_engine import engine_args, server_flags

    model = ModelConfig(name="m", source="s")
    assert engine_args(model, "/m")["dtype"] == "float32"
    assert "float32" in server_flags(model, "/m")  # vLLM's own server in bench/gateway.py gets the same
    assert engine_args(model.model_copy(update={"dtype": "bfloat16"}), "/m")["dtype"] == "bfloat16"
