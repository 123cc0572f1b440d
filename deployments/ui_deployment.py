"""The studio UI as a Serve deployment: the Gradio app of ``ui/``, served by its own Serve application.

It holds no handles and imports nothing of the gateway: the UI is an HTTP client of the gateway, so its only
config is where the gateway is and the API key. Deploy it next to the studio app, e.g.
``serve.run(build_ui_app(UIConfig(gateway_url=...)), name="ui", route_prefix="/ui")``, or from a Serve config
file with ``import_path: deployments.ui_deployment:build_app``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Application

from sage_studio.settings import get_settings

UI_ROUTE_PREFIX = "/ui"


class UIConfig(BaseModel):
    """What the UI deployment needs to reach the gateway."""

    model_config = ConfigDict(extra="forbid")

    gateway_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the studio gateway as seen from the UI replica (Serve's HTTP address).",
    )
    api_key: str | None = Field(
        default_factory=lambda: get_settings().studio_api_key,
        description="Bearer key for the gateway when it requires one (default: SAGE_STUDIO_API_KEY).",
    )
    dashboard_url: str | None = Field(
        None, description="Ray dashboard link shown in the System tab (default: the one the gateway reports)."
    )
    num_replicas: int = Field(1, ge=1, description="UI replicas; each keeps its users' browser sessions.")

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

    def __serve_build_asgi_app__(self):
        # Built inside the replica: a FastAPI app with Gradio mounted does not pickle.
        from ui.app import create_ui_app

        return create_ui_app(self.config.gateway_url, self.config.api_key, self.config.dashboard_url)


def build_ui_app(config: UIConfig | dict[str, Any] | None = None) -> Application:
    """The UI's Serve application; bind it with ``name="ui", route_prefix="/ui"``."""
    config = config if isinstance(config, UIConfig) else UIConfig.model_validate(config or {})
    # Gradio keeps per-browser state (sessions, queues) in the replica; one replica is the safe default.
    return StudioUI.options(num_replicas=config.num_replicas).bind(config.model_dump())


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve config entry point (``import_path: deployments.ui_deployment:build_app``)."""
    return build_ui_app(UIConfig.model_validate(args or {}))
