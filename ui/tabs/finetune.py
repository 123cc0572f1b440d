"""Fine-tune tab: dataset upload with its validation report, the docs sample, settings with the cluster's
recommendation, submit, a task table refreshed every few seconds, the live log, the loss plot, cancel and
"use as chat backend". Training runs in Ray (a Ray job per task), never in the UI: this tab only calls the API.

``create_finetune_tab`` lays the tab out and wires its events to a ``FinetuneController``, which holds the client;
``ui.tabs.finetune_view`` turns the API's answers into what the tab shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from sage_studio.settings import DEFAULT_MODEL_NAME
from ui import strings
from ui.client import ApiError, StudioClient
from ui.render import error_notice, notice
from ui.tabs import in_order
from ui.tabs.finetune_view import (
    TASK_COLUMNS,
    base_model_choices,
    dataset_choices,
    loss_frame,
    recommendation_for,
    recommendation_markdown,
    report_html,
    task_choices,
    task_notice,
    task_rows,
)

REFRESH_SECONDS = 3.0
DEFAULT_BASE_MODEL = DEFAULT_MODEL_NAME
# What ``FinetuneController.load`` fills, in the order of its outputs.
LOAD_OUTPUTS = ("dataset", "report", "model", "recommendations", "recommendation", "status")


def task_config(dataset_id: str, model_name: str, task_name: str | None, n_epochs, steps, batch, lr, length, r,
                alpha, dropout, n_workers) -> dict[str, Any]:
    """The ``POST /api/finetune/create`` body from the form's values (an empty number falls back to its default)."""
    config = {"dataset_id": dataset_id, "model": model_name, "epochs": int(n_epochs or 1),
              "batch_size": int(batch or 1), "learning_rate": float(lr or 2e-4), "max_length": int(length or 512),
              "lora_r": int(r or 8), "lora_alpha": int(alpha or 16), "lora_dropout": float(dropout or 0),
              "num_workers": int(n_workers or 1)}
    if steps:
        config["max_steps"] = int(steps)
    if task_name and task_name.strip():
        config["name"] = task_name.strip()
    return config


class FinetuneController:
    """The Fine-tune tab's event handlers: each takes the values of its inputs and returns its outputs' updates."""

    def __init__(self, client: StudioClient):
        self.client = client

    async def dataset_update(self, selected: str | None = None):
        """Dropdown update for the uploaded datasets, keeping ``selected`` (else the newest) chosen."""
        items = await self.client.list_datasets()
        ids = [d["id"] for d in items]
        value = selected if selected in ids else (ids[0] if ids else None)
        return gr.update(choices=dataset_choices(items), value=value)

    async def load(self, current_model: str, current_dataset: str | None):
        """When the tab opens: datasets and the chosen one's report, base models, the cluster's recommendation."""
        out = {}
        try:
            out["dataset"] = await self.dataset_update(current_dataset)
            if out["dataset"]["value"]:
                out["report"] = report_html(await self.client.get_dataset(out["dataset"]["value"]))
        except Exception as exc:  # noqa: BLE001 - a tab missing its API says so and stays usable
            out["status"] = error_notice(exc, strings.FEAT_DATASETS)
            return in_order(out, LOAD_OUTPUTS)
        try:
            choices, chosen = base_model_choices(await self.client.finetune_models(), DEFAULT_BASE_MODEL)
            current_model = current_model if current_model in choices[:-1] else chosen
            out["model"] = gr.update(choices=choices, value=current_model)
        except Exception:  # noqa: BLE001 - keep the default base model
            pass
        try:
            info = await self._gpu_info(current_model)
            out["recommendations"] = info.get("recommendations", [])
            out["recommendation"] = recommendation_markdown(
                recommendation_for(out["recommendations"], current_model), info.get("note"))
        except Exception as exc:  # noqa: BLE001
            out["recommendation"] = error_notice(exc, strings.FEAT_RECOMMEND)
        return in_order(out, LOAD_OUTPUTS)

    async def _gpu_info(self, model_name: str) -> dict[str, Any]:
        try:
            return await self.client.gpu_info(model_name)
        except ApiError as exc:
            if exc.status != 400:  # 400: a model the studio can't size; the standard sizes still help
                raise
            return await self.client.gpu_info()

    async def show_dataset(self, dataset_id: str | None):
        if not dataset_id:
            return notice(strings.FT_NO_REPORT)
        try:
            return report_html(await self.client.get_dataset(dataset_id))
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_DATASETS)

    async def upload(self, path: str | None, model_name: str, length: float | None):
        if not path:
            return gr.update(), gr.update()
        try:
            record = await self.client.upload_dataset(Path(path).name, Path(path).read_bytes(), model=model_name,
                                                      max_length=int(length or 512))
        except Exception as exc:  # noqa: BLE001 - a refused file (not JSON, too big...) is a report of one line
            return gr.update(), error_notice(exc, strings.FEAT_UPLOAD)
        return await self.dataset_update(record["id"]), report_html(record)

    async def docs_sample(self, model_name: str, length: float | None):
        return await self._made_dataset(self.client.prepare_docs_dataset, strings.FEAT_DOCS, model_name, length)

    async def from_feedback(self, model_name: str, length: float | None):
        """A chat dataset of the 👍 replies of every conversation, validated like an upload."""
        return await self._made_dataset(self.client.dataset_from_feedback, strings.FEAT_FEEDBACK, model_name, length)

    async def _made_dataset(self, make, feature: str, model_name: str, length: float | None):
        try:
            record = await make(model=model_name, max_length=int(length or 512))
        except Exception as exc:  # noqa: BLE001
            return gr.update(), error_notice(exc, feature)
        return await self.dataset_update(record["id"]), report_html(record)

    @staticmethod
    def recommend(recs: list[dict[str, Any]], model_name: str) -> str:
        return recommendation_markdown(recommendation_for(recs, model_name))

    @staticmethod
    def apply_recommendation(recs: list[dict[str, Any]], model_name: str):
        rec = recommendation_for(recs, model_name)
        if not rec:
            return [gr.update()] * 4
        return rec.get("batch_size"), rec.get("max_length"), rec.get("lora_r"), rec.get("num_workers")

    async def submit(self, dataset_id, model_name, task_name, n_epochs, steps, batch, lr, length, r, alpha, dropout,
                     n_workers):
        if not dataset_id:
            return notice(strings.FT_PICK_DATASET, "warn"), gr.update(), gr.update()
        config = task_config(dataset_id, model_name, task_name, n_epochs, steps, batch, lr, length, r, alpha, dropout,
                             n_workers)
        try:
            created = await self.client.create_finetune(config)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_SUBMIT), gr.update(), gr.update()
        table, choices = await self.refresh_tasks()
        return (notice(strings.FT_STARTED.format(task=created["id"]), "ok"), table,
                gr.update(choices=choices, value=created["id"]))

    async def refresh_tasks(self):
        items = await self.client.list_tasks()
        return pd.DataFrame(task_rows(items, time.time()), columns=TASK_COLUMNS), task_choices(items)

    async def follow(self, task_id: str | None):
        """The periodic refresh: table, the selected task's log and loss curve."""
        try:
            table, choices = await self.refresh_tasks()
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), gr.update(), gr.update(), error_notice(exc, strings.FEAT_TASKS)
        ids = [value for _, value in choices]
        if task_id not in ids:
            task_id = ids[0] if ids else None
        if not task_id:
            return table, gr.update(choices=choices, value=None), "", gr.update(), notice(strings.FT_NO_TASKS)
        try:
            detail = await self.client.get_task(task_id)
            text = await self.client.task_logs(task_id)
            points = (await self.client.task_metrics(task_id)).get("points", [])
        except Exception as exc:  # noqa: BLE001
            return (table, gr.update(choices=choices, value=task_id), gr.update(), gr.update(),
                    error_notice(exc, strings.FT_LOG))
        return table, gr.update(choices=choices, value=task_id), text or "", loss_frame(points), task_notice(detail)

    async def cancel(self, task_id: str | None):
        if not task_id:
            return notice(strings.FT_PICK_TASK, "warn")
        try:
            await self.client.cancel_task(task_id)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_CANCEL)
        return notice(strings.FT_CANCELLED.format(task=task_id), "ok")

    async def use_as_backend(self, task_id: str | None):
        if not task_id:
            return notice(strings.FT_PICK_TASK, "warn")
        try:
            await self.client.use_as_backend(task_id)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_BACKEND)
        return notice(strings.FT_BACKEND_SET.format(task=task_id), "ok")


def create_finetune_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, gr.components.Component]:
    """Build the Fine-tune tab inside the current Blocks context."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            c = _dataset_column()
        with gr.Column(scale=1):
            c |= _settings_column()
    c |= _tasks_panel()
    _wire(tab, FinetuneController(client), c)
    return {name: c[name] for name in ("tasks", "task", "status", "report")}


def _dataset_column() -> dict[str, Any]:
    gr.Markdown(f"### {strings.FT_DATASET}")
    return {
        "upload": gr.File(label=strings.FT_UPLOAD, file_types=[".json", ".jsonl"], type="filepath",
                          elem_id="ft-upload", height=120),
        "docs": gr.Button(strings.FT_DOCS_SAMPLE, size="sm", elem_id="ft-docs"),
        "feedback": gr.Button(strings.FT_FROM_FEEDBACK, size="sm", elem_id="ft-feedback"),
        "dataset": gr.Dropdown(label=strings.FT_DATASET_PICK, choices=[], elem_id="ft-dataset"),
        "report": gr.HTML(notice(strings.FT_NO_REPORT), elem_id="ft-report"),
    }


def _settings_column() -> dict[str, Any]:
    c: dict[str, Any] = {}
    gr.Markdown(f"### {strings.FT_CONFIG}")
    with gr.Row():
        c["model"] = gr.Dropdown(label=strings.FT_BASE_MODEL, choices=[DEFAULT_BASE_MODEL], value=DEFAULT_BASE_MODEL,
                                 allow_custom_value=True, elem_id="ft-model", scale=2)
        c["name"] = gr.Textbox(label=strings.FT_TASK_NAME, elem_id="ft-name", scale=2)
    with gr.Row():
        c["epochs"] = gr.Number(1, label=strings.FT_EPOCHS, precision=0, minimum=1, elem_id="ft-epochs")
        c["max_steps"] = gr.Number(0, label=strings.FT_MAX_STEPS, precision=0, minimum=0, elem_id="ft-steps")
        c["batch_size"] = gr.Number(4, label=strings.FT_BATCH_SIZE, precision=0, minimum=1, elem_id="ft-batch")
    with gr.Row():
        c["learning_rate"] = gr.Number(2e-4, label=strings.FT_LEARNING_RATE, minimum=0, elem_id="ft-lr")
        c["max_length"] = gr.Number(512, label=strings.FT_MAX_LENGTH, precision=0, minimum=16, elem_id="ft-maxlen")
        c["workers"] = gr.Number(1, label=strings.FT_WORKERS, precision=0, minimum=1, elem_id="ft-workers")
    with gr.Row():
        c["lora_r"] = gr.Number(8, label=strings.FT_LORA_R, precision=0, minimum=1, elem_id="ft-lora-r")
        c["lora_alpha"] = gr.Number(16, label=strings.FT_LORA_ALPHA, precision=0, minimum=1, elem_id="ft-lora-alpha")
        c["lora_dropout"] = gr.Number(0.05, label=strings.FT_LORA_DROPOUT, minimum=0, maximum=0.99,
                                      elem_id="ft-lora-dropout")
    with gr.Accordion(strings.FT_RECOMMEND, open=True):
        c["recommendation"] = gr.Markdown(elem_id="ft-recommendation")
        c["apply"] = gr.Button(strings.FT_APPLY_RECOMMENDATION, size="sm", elem_id="ft-apply")
    c["submit"] = gr.Button(strings.FT_SUBMIT, variant="primary", elem_id="ft-submit")
    c["status"] = gr.HTML(elem_id="ft-status")
    return c


def _tasks_panel() -> dict[str, Any]:
    c: dict[str, Any] = {}
    gr.Markdown(f"### {strings.FT_TASKS}")
    c["tasks"] = gr.Dataframe(headers=TASK_COLUMNS, value=pd.DataFrame(columns=TASK_COLUMNS), interactive=False,
                              elem_id="ft-tasks", wrap=True)
    with gr.Row(equal_height=True):
        c["task"] = gr.Dropdown(label=strings.FT_TASK_PICK, choices=[], scale=3, elem_id="ft-task")
        c["cancel"] = gr.Button(strings.FT_CANCEL, variant="stop", scale=1, elem_id="ft-cancel")
        c["backend"] = gr.Button(strings.FT_USE_BACKEND, variant="primary", scale=1, elem_id="ft-backend")
    c["task_status"] = gr.HTML(elem_id="ft-task-status")
    with gr.Row(equal_height=False):
        c["log"] = gr.Code(label=strings.FT_LOG, language=None, lines=16, max_lines=16, interactive=False,
                           elem_id="ft-log")
        c["loss"] = gr.LinePlot(loss_frame([]), x="step", y="loss", color="curve", title=strings.FT_LOSS,
                                elem_id="ft-loss",
                                height=320)
    c["recommendations"] = gr.State([])
    c["timer"] = gr.Timer(REFRESH_SECONDS, active=True)
    return c


def _wire(tab: gr.Tab, ft: FinetuneController, c: dict[str, Any]) -> None:
    # One bound ``follow`` for its four events: Gradio keys an event's concurrency group by id(fn), and the refreshes
    # share one group (one at a time), as they did when ``follow`` was a function.
    follow = ft.follow
    tab.select(ft.load, [c["model"], c["dataset"]], [c[name] for name in LOAD_OUTPUTS])
    c["upload"].upload(ft.upload, [c["upload"], c["model"], c["max_length"]], [c["dataset"], c["report"]])
    c["docs"].click(ft.docs_sample, [c["model"], c["max_length"]], [c["dataset"], c["report"]])
    c["feedback"].click(ft.from_feedback, [c["model"], c["max_length"]], [c["dataset"], c["report"]])
    c["dataset"].input(ft.show_dataset, [c["dataset"]], [c["report"]])
    c["model"].change(ft.recommend, [c["recommendations"], c["model"]], [c["recommendation"]])
    c["apply"].click(ft.apply_recommendation, [c["recommendations"], c["model"]],
                     [c["batch_size"], c["max_length"], c["lora_r"], c["workers"]])
    follow_outputs = [c[name] for name in ("tasks", "task", "log", "loss", "task_status")]
    form = [c[name] for name in ("dataset", "model", "name", "epochs", "max_steps", "batch_size", "learning_rate",
                                 "max_length", "lora_r", "lora_alpha", "lora_dropout", "workers")]
    c["submit"].click(ft.submit, form, [c["status"], c["tasks"], c["task"]]
                      ).then(follow, [c["task"]], follow_outputs)
    c["timer"].tick(follow, [c["task"]], follow_outputs, show_progress="hidden")
    c["task"].input(follow, [c["task"]], follow_outputs)
    c["cancel"].click(ft.cancel, [c["task"]], [c["task_status"]]).then(follow, [c["task"]], follow_outputs)
    c["backend"].click(ft.use_as_backend, [c["task"]], [c["task_status"]])
