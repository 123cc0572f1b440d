"""``build_app``: the one function that turns a validated ``StudioConfig`` into the studio's Serve application.

``serve run deployments.app:build_app`` or ``deployments/serve_config.yaml`` (``import_path``) both land here.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.config import BackpressureConfig

from deployments.config import ModelConfig, StudioConfig, embedding_deployment_name, engine_deployment_name
from deployments.embedding_deployment import EmbeddingDeployment
from deployments.engine_deployment import LLMDeployment
from deployments.engines.vllm_engine import cpu_env
from deployments.gateway import Gateway
from deployments.model_switch import serving_state_for
from deployments.serving_state import ServingState


def _app_env_vars() -> dict[str, str]:
    """The ``env_vars`` of the application's ``runtime_env`` (the Serve config's), as the builder sees them.

    Serve gives a deployment that sets its own ``runtime_env`` that one alone, without the application's env_vars
    (Ray 2.60, for deployments the config does not list), and every deployment here sets its own. So the builder
    merges them, as Serve's docs say it should: ``SAGE_STUDIO_API_KEY_FILE``, which ``sage studio start`` passes
    at the application level, then reaches the gateway. Not connected to Ray (a config check): none.
    """
    import ray

    if not ray.is_initialized():  # get_runtime_context() would connect to (or start) a cluster
        return {}
    return dict(ray.get_runtime_context().runtime_env.get("env_vars") or {})


def _engine_env(model: ModelConfig, config: StudioConfig) -> dict[str, str]:
    env = _app_env_vars() | {"SAGE_HOME": config.sage_home}
    return env | cpu_env(model) if model.num_gpus == 0 else env


def _engine_app(model: ModelConfig, config: StudioConfig, state: ServingState) -> Application:
    auto = model.autoscaling
    ongoing, queued = model.serve_limits()
    options: dict[str, Any] = dict(
        name=engine_deployment_name(model.name),
        max_ongoing_requests=ongoing,
        # Past the queue, the gateway's handle refuses at once (BackPressureError); the gateway answers it with
        # this status and Retry-After (deployments/security.py) rather than letting the request wait and time out.
        max_queued_requests=queued,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=model.retry_after_s),
        user_config=state.engine_user_config(model.name),
        ray_actor_options={
            "num_cpus": model.num_cpus,
            "num_gpus": model.num_gpus,
            "resources": model.resources,
            "runtime_env": {"env_vars": _engine_env(model, config)},
        },
    )
    if auto.min_replicas == auto.max_replicas:
        options["num_replicas"] = auto.min_replicas
    else:
        options["autoscaling_config"] = auto.model_dump()
    remote = config.remote.model_dump() if config.remote else None
    # A merged fine-tune chosen last is loaded at start, instead of the base weights it replaces.
    return LLMDeployment.options(**options).bind(model.model_dump(), remote, state.engine_weights(model.name))


def build_studio_app(config: StudioConfig) -> Application:
    state = serving_state_for(config)
    engines = {model.name: _engine_app(model, config, state) for model in config.models}
    embedders = {name: EmbeddingDeployment.options(name=embedding_deployment_name(name)).bind(name)
                 for name in config.embedding_models}
    gateway = Gateway.options(
        user_config=state.gateway_user_config(),
        num_replicas=config.gateway.num_replicas,
        max_ongoing_requests=config.gateway.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0,
                           "runtime_env": {"env_vars": _app_env_vars() | {"SAGE_HOME": config.sage_home}}},
    )
    return gateway.bind(config.model_dump(), engines, embedders)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve app builder: ``args`` is a ``StudioConfig`` as a dict (e.g. from the YAML's ``args``)."""
    return build_studio_app(StudioConfig.model_validate(args or {}))
