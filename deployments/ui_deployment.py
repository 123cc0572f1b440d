"""The studio UI as a Serve deployment: the Gradio app of ``ui/``, served by its own Serve application.

It holds no handles and imports nothing of the gateway: the UI is an HTTP client of the gateway, so its only
config is where the gateway is. The API key is never in its args (a Serve config holds them in clear): the replica
reads it as the gateway does, from the file named by ``SAGE_STUDIO_API_KEY_FILE`` (else ``SAGE_STUDIO_API_KEY``),
and then asks browsers for a login (user ``sage``, the key as the password). Deploy it next to the studio app, e.g.
``serve.run(build_ui_app(UIConfig(gateway_url=...)), name="ui", route_prefix="/ui")``, or from a Serve config
file with ``import_path: deployments.ui_deployment:build_app``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray import serve
from ray.serve import Application

from sage_studio.api_key import key_from_environment, login_from_environment

class UIConfig(BaseModel):
    """What the UI deployment needs to reach the gateway."""

    model_config = ConfigDict(extra="forbid")

    gateway_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the studio gateway as seen from the UI replica (Serve's HTTP address).",
    )
    dashboard_url: str | None = Field(
        None, description="Ray dashboard link shown in the System tab (default: the one the gateway reports)."
    )
    num_replicas: int = Field(
        1, ge=1, description="UI replicas; each keeps its users' browser sessions (and, with a key, their logins)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_args(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError("the UI takes no api_key in its args (a Serve config holds args in clear): set "
                             "SAGE_STUDIO_API_KEY_FILE (or SAGE_STUDIO_API_KEY) in the replica's environment")
        return data

    @field_validator("gateway_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"gateway_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


@serve.deployment(name="StudioUI", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class StudioUI:
    """Serves the Gradio Blocks of ``ui.app`` under the application's route prefix."""

    def __init__(self, config: dict[str, Any]):
        self.config = UIConfig.model_validate(config)
        # From the replica's environment only, as the gateway reads it; a named key file that cannot be read stops
        # the replica (fail closed) instead of serving a UI with no login.
        self.api_key = key_from_environment()
        self.login = login_from_environment()

    def __serve_build_asgi_app__(self):
        # Built inside the replica: a FastAPI app with Gradio mounted does not pickle. With a key it asks for a login.
        from ui.app import create_ui_app

        return create_ui_app(self.config.gateway_url, self.api_key, self.config.dashboard_url, self.login)


def build_ui_app(config: UIConfig | dict[str, Any] | None = None) -> Application:
    """The UI's Serve application; bind it with ``name="ui", route_prefix="/ui"``."""
    config = config if isinstance(config, UIConfig) else UIConfig.model_validate(config or {})
    # Gradio keeps per-browser state (sessions, queues) in the replica; one replica is the safe default.
    return StudioUI.options(num_replicas=config.num_replicas).bind(config.model_dump())


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve config entry point (``import_path: deployments.ui_deployment:build_app``)."""
    return build_ui_app(UIConfig.model_validate(args or {}))
