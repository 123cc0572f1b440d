"""System tab: cluster CPUs, GPUs and memory, the node list, the gateway's health and the Ray dashboard link
(``/api/system/gpu-info`` and ``/health``)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui import strings
from ui.client import StudioClient
from ui.render import card, cards, error_notice, esc, fmt, kv_table, notice, usage_bar


def _used_bar(total: float, free: float | None, unit: str) -> str:
    if not total:
        return ""
    if free is None:
        return usage_bar(0, f"{fmt(total)} {unit}")
    used = total - free
    return usage_bar(100 * used / total, f"{fmt(used)} of {fmt(total)} {unit} in use")


def resources_html(info: dict[str, Any]) -> str:
    """Cards for CPUs, GPUs and memory from the gpu-info answer (its ``cluster`` part or the top level)."""
    cluster = info.get("cluster") if isinstance(info.get("cluster"), dict) else info
    cpus, gpus = cluster.get("cpus", 0), cluster.get("gpus", 0)
    items = [
        card("CPUs", f'<div class="sage-big">{fmt(cpus)}</div>' + _used_bar(cpus, cluster.get("cpus_free"), "CPUs")),
        card("GPUs", f'<div class="sage-big">{fmt(gpus)}</div>' + (
            _used_bar(gpus, cluster.get("gpus_free"), "GPUs") if gpus
            else f'<div class="sage-muted">{strings.SYSTEM_NO_GPU}</div>')),
        card("Memory", f'<div class="sage-big">{fmt(cluster.get("memory_gib"))} GiB</div>'
             f'<div class="sage-muted">{strings.SYSTEM_MEMORY_NOTE}</div>'),
    ]
    return cards(items)


def gpus_html(info: dict[str, Any]) -> str:
    gpus = info.get("gpus") if isinstance(info.get("gpus"), list) else []
    if not gpus:
        return notice(strings.SYSTEM_NO_GPU)
    rows = "".join(
        f'<tr><td>{esc(str(g.get("node_ip", "")))}</td><td>{esc(str(g.get("index", "")))}</td>'
        f'<td>{esc(str(g.get("name", "")))}</td><td>{fmt(g.get("memory_total_mib", 0) / 1024)} GiB</td></tr>'
        for g in gpus)
    return f'<table class="sage-table"><tr><th>Node</th><th>#</th><th>GPU</th><th>Memory</th></tr>{rows}</table>'


def nodes_html(info: dict[str, Any]) -> str:
    cluster = info.get("cluster") if isinstance(info.get("cluster"), dict) else info
    nodes = cluster.get("nodes") or []
    if not nodes:
        return notice(strings.SYSTEM_NO_NODES)
    rows = "".join(
        f'<tr><td>{esc(str(n.get("node_ip", "?")))}</td><td>{fmt(n.get("cpus"))}</td><td>{fmt(n.get("gpus"))}</td>'
        f'<td>{esc(fmt(n.get("accelerator_types")))}</td><td>{"alive" if n.get("alive", True) else "dead"}</td></tr>'
        for n in nodes)
    return (f'<table class="sage-table" id="system-nodes"><tr><th>Node</th><th>CPUs</th><th>GPUs</th>'
            f"<th>Accelerators</th><th>State</th></tr>{rows}</table>")


def dashboard_link(url: str | None) -> str:
    if not url:
        return ""
    return (f'<a class="sage-link-button" href="{esc(url)}" target="_blank" rel="noopener">'
            f"{strings.SYSTEM_DASHBOARD}</a>")


class SystemController:
    """The System tab's one handler: the cluster from ``/api/system/gpu-info`` and the gateway from ``/health``."""

    def __init__(self, client: StudioClient, dashboard_url: str | None = None):
        self.client = client
        self.dashboard_url = dashboard_url

    async def load(self):
        health_html = await self._health_html()
        try:
            info = await self.client.gpu_info()
        except Exception as exc:  # noqa: BLE001
            return gr.update(), error_notice(exc, strings.SYSTEM_RESOURCES), "", "", "", health_html
        url = self.dashboard_url or info.get("dashboard_url")
        return (dashboard_link(url) if url else gr.update(), "", resources_html(info), nodes_html(info),
                gpus_html(info), health_html)

    async def _health_html(self) -> str:
        try:
            h = await self.client.health()
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.SYSTEM_HEALTH)
        return kv_table([("status", h.get("status")), ("default model", h.get("default_model")),
                         ("models", h.get("models")), ("API", self.client.base_url)])


def create_system_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab, dashboard_url: str | None) -> None:
    """Build the System tab inside the current Blocks context."""
    with gr.Row(equal_height=True):
        link = gr.HTML(dashboard_link(dashboard_url), elem_id="system-dashboard")
        refresh = gr.Button(strings.SYSTEM_REFRESH, size="sm", scale=0, min_width=100)
    status = gr.HTML(elem_id="system-status")
    gr.Markdown(f"#### {strings.SYSTEM_RESOURCES}")
    resources = gr.HTML(elem_id="system-resources")
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown(f"#### {strings.SYSTEM_NODES}")
            nodes = gr.HTML(elem_id="system-nodes-panel")
        with gr.Column():
            gr.Markdown(f"#### {strings.SYSTEM_GPUS}")
            gpus = gr.HTML(elem_id="system-gpus")
    gr.Markdown(f"#### {strings.SYSTEM_HEALTH}")
    health = gr.HTML(elem_id="system-health")

    load = SystemController(client, dashboard_url).load  # one object for both events (concurrency group: id(fn))
    outputs = [link, status, resources, nodes, gpus, health]
    tab.select(load, None, outputs)
    refresh.click(load, None, outputs)
