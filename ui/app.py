"""The studio UI: one Gradio Blocks assembled from one module per tab, talking to the gateway over HTTP only.

``build_blocks`` makes the Blocks; ``create_ui_app`` mounts it on a FastAPI app (what the Serve deployment
serves); ``ui.share.launch_shared`` launches the same Blocks with a share link. The UI imports no Ray, vLLM or
deployment code: everything it shows comes through ``ui.client.StudioClient``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

# Gradio would otherwise phone home from a laptop or a firewalled cluster; set before it is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from ui import flow_canvas, strings  # noqa: E402
from ui.client import StudioClient  # noqa: E402
from ui.page_head import HeadTags  # noqa: E402
from ui.tabs.chat import create_chat_tab  # noqa: E402
from ui.tabs.finetune import create_finetune_tab  # noqa: E402
from ui.tabs.memory import create_memory_tab  # noqa: E402
from ui.tabs.models import create_models_tab  # noqa: E402
from ui.tabs.pipelines import create_pipelines_tab  # noqa: E402
from ui.tabs.system import create_system_tab  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
# The login of a UI whose studio has an API key: this user name, and the key as the password.
LOGIN_USER = "sage"
CSS_PATH = ASSETS / "studio.css"
FAVICON = ASSETS / "favicon.png"


def theme() -> gr.themes.Base:
    """The studio's look: a calm indigo on slate, system fonts (nothing fetched from a font CDN)."""
    system_fonts = ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    return gr.themes.Soft(
        primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", radius_size="md",
        font=system_fonts, font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def build_blocks(client: StudioClient, dashboard_url: str | None = None) -> gr.Blocks:
    """The whole studio UI as one Blocks, wired to ``client``."""
    with gr.Blocks(title=strings.TITLE, analytics_enabled=False, fill_width=True) as demo:
        with gr.Row(elem_classes="sage-header"):
            gr.HTML(f'<div class="sage-brand"><span class="sage-logo">◆</span> {strings.TITLE}'
                    f'<span class="sage-tagline">{strings.TAGLINE}</span></div>')
        with gr.Tabs(elem_id="sage-tabs"):
            with gr.Tab(strings.TAB_CHAT, id="chat", elem_id="tab-chat") as chat_tab:
                create_chat_tab(demo, client, chat_tab)
            with gr.Tab(strings.TAB_PIPELINES, id="pipelines", elem_id="tab-pipelines") as pipelines_tab:
                create_pipelines_tab(demo, client, pipelines_tab)
            with gr.Tab(strings.TAB_FINETUNE, id="finetune", elem_id="tab-finetune") as finetune_tab:
                create_finetune_tab(demo, client, finetune_tab)
            with gr.Tab(strings.TAB_MODELS, id="models", elem_id="tab-models") as models_tab:
                create_models_tab(demo, client, models_tab)
            with gr.Tab(strings.TAB_MEMORY, id="memory", elem_id="tab-memory") as memory_tab:
                create_memory_tab(demo, client, memory_tab)
            with gr.Tab(strings.TAB_SYSTEM, id="system", elem_id="tab-system") as system_tab:
                create_system_tab(demo, client, system_tab, dashboard_url)
    return demo


def _icon_link() -> str:
    # Inline, because under a route prefix the browser's default /favicon.ico request hits the gateway, not Gradio.
    data = base64.b64encode(FAVICON.read_bytes()).decode()
    return f'<link rel="icon" type="image/png" href="data:image/png;base64,{data}">'


def launch_kwargs() -> dict:
    """Look-and-feel options Gradio 6 takes at mount/launch time rather than on the Blocks."""
    return {"theme": theme(), "css_paths": [CSS_PATH, *flow_canvas.CSS_PATHS], "favicon_path": str(FAVICON),
            "footer_links": []}


def create_ui_app(base_url: str, api_key: str | None = None, dashboard_url: str | None = None,
                  login: tuple[str, str] | None = None) -> FastAPI:
    """A FastAPI app serving the studio UI at its root, talking to the gateway at ``base_url``.

    With an ``api_key`` the UI asks for a login first (Gradio's ``auth``): user ``sage``, password the key. Its
    server-side client holds the key, so without a login anyone who reaches the page would use the studio with it.
    A ``login`` (``sage studio start --auth user:pass``) is accepted too, and alone it also makes the UI ask.
    """
    blocks = build_blocks(StudioClient(base_url, api_key), dashboard_url)
    logins = ([login] if login else []) + ([(LOGIN_USER, api_key)] if api_key else [])
    auth = {"auth": logins, "auth_message": strings.LOGIN_MESSAGE} if logins else {}
    app = gr.mount_gradio_app(FastAPI(title="SAGE Studio UI"), blocks, path="/", **auth, **launch_kwargs())
    app.add_middleware(HeadTags, tags=_icon_link())
    return app
