"""Fine-tune tab: dataset upload with its validation report, the docs sample, settings with the cluster's
recommendation, submit, a task table refreshed every few seconds, the live log, the loss plot, cancel and
"use as chat backend". Training runs in Ray (a Ray job per task), never in the UI: this tab only calls the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ui import strings
from ui.client import ApiError, StudioClient
from ui.render import error_notice, notice
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
DEFAULT_BASE_MODEL = "SmolLM2-135M-Instruct"


def create_finetune_tab(demo: gr.Blocks, client: StudioClient, tab: gr.Tab) -> dict[str, gr.components.Component]:
    """Build the Fine-tune tab inside the current Blocks context."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gr.Markdown(f"### {strings.FT_DATASET}")
            upload = gr.File(label=strings.FT_UPLOAD, file_types=[".json", ".jsonl"], type="filepath",
                             elem_id="ft-upload", height=120)
            docs_btn = gr.Button(strings.FT_DOCS_SAMPLE, size="sm", elem_id="ft-docs")
            dataset = gr.Dropdown(label=strings.FT_DATASET_PICK, choices=[], elem_id="ft-dataset")
            report = gr.HTML(notice(strings.FT_NO_REPORT), elem_id="ft-report")
        with gr.Column(scale=1):
            gr.Markdown(f"### {strings.FT_CONFIG}")
            with gr.Row():
                model = gr.Dropdown(label="Base model", choices=[DEFAULT_BASE_MODEL], value=DEFAULT_BASE_MODEL,
                                    allow_custom_value=True, elem_id="ft-model", scale=2)
                name = gr.Textbox(label="Task name (optional)", elem_id="ft-name", scale=2)
            with gr.Row():
                epochs = gr.Number(1, label="Epochs", precision=0, minimum=1, elem_id="ft-epochs")
                max_steps = gr.Number(0, label="Max steps (0 = all epochs)", precision=0, minimum=0, elem_id="ft-steps")
                batch_size = gr.Number(4, label="Batch size", precision=0, minimum=1, elem_id="ft-batch")
            with gr.Row():
                learning_rate = gr.Number(2e-4, label="Learning rate", minimum=0, elem_id="ft-lr")
                max_length = gr.Number(512, label="Max length (tokens)", precision=0, minimum=16, elem_id="ft-maxlen")
                workers = gr.Number(1, label="Workers", precision=0, minimum=1, elem_id="ft-workers")
            with gr.Row():
                lora_r = gr.Number(8, label="LoRA r", precision=0, minimum=1, elem_id="ft-lora-r")
                lora_alpha = gr.Number(16, label="LoRA alpha", precision=0, minimum=1, elem_id="ft-lora-alpha")
                lora_dropout = gr.Number(0.05, label="LoRA dropout", minimum=0, maximum=0.99, elem_id="ft-lora-dropout")
            with gr.Accordion(strings.FT_RECOMMEND, open=True):
                recommendation = gr.Markdown(elem_id="ft-recommendation")
                apply_btn = gr.Button(strings.FT_APPLY_RECOMMENDATION, size="sm", elem_id="ft-apply")
            submit = gr.Button(strings.FT_SUBMIT, variant="primary", elem_id="ft-submit")
            status = gr.HTML(elem_id="ft-status")
    gr.Markdown(f"### {strings.FT_TASKS}")
    tasks = gr.Dataframe(headers=TASK_COLUMNS, value=pd.DataFrame(columns=TASK_COLUMNS), interactive=False,
                         elem_id="ft-tasks", wrap=True)
    with gr.Row(equal_height=True):
        task = gr.Dropdown(label=strings.FT_TASK_PICK, choices=[], scale=3, elem_id="ft-task")
        cancel_btn = gr.Button(strings.FT_CANCEL, variant="stop", scale=1, elem_id="ft-cancel")
        backend_btn = gr.Button(strings.FT_USE_BACKEND, variant="primary", scale=1, elem_id="ft-backend")
    task_status = gr.HTML(elem_id="ft-task-status")
    with gr.Row(equal_height=False):
        log = gr.Code(label=strings.FT_LOG, language=None, lines=16, max_lines=16, interactive=False,
                      elem_id="ft-log")
        loss = gr.LinePlot(loss_frame([]), x="step", y="loss", title=strings.FT_LOSS,
                           elem_id="ft-loss", height=320)
    recommendations = gr.State([])
    timer = gr.Timer(REFRESH_SECONDS, active=True)

    async def load_datasets(selected: str | None = None):
        items = await client.list_datasets()
        ids = [d["id"] for d in items]
        value = selected if selected in ids else (ids[0] if ids else None)
        return gr.update(choices=dataset_choices(items), value=value)

    async def load(current_model: str, current_dataset: str | None):
        out = {}
        try:
            out[dataset] = await load_datasets(current_dataset)
            if out[dataset]["value"]:
                out[report] = report_html(await client.get_dataset(out[dataset]["value"]))
        except Exception as exc:  # noqa: BLE001 - a tab missing its API says so and stays usable
            out[status] = error_notice(exc, strings.FEAT_DATASETS)
            return out
        try:
            choices, chosen = base_model_choices(await client.finetune_models(), DEFAULT_BASE_MODEL)
            current_model = current_model if current_model in choices[:-1] else chosen
            out[model] = gr.update(choices=choices, value=current_model)
        except Exception:  # noqa: BLE001 - keep the default base model
            pass
        try:
            try:
                info = await client.gpu_info(current_model)
            except ApiError as exc:
                if exc.status != 400:  # 400: a model the studio can't size; the standard sizes still help
                    raise
                info = await client.gpu_info()
            out[recommendations] = info.get("recommendations", [])
            out[recommendation] = recommendation_markdown(recommendation_for(out[recommendations], current_model),
                                                          info.get("note"))
        except Exception as exc:  # noqa: BLE001
            out[recommendation] = error_notice(exc, strings.FEAT_RECOMMEND)
        return out

    async def show_dataset(dataset_id: str | None):
        if not dataset_id:
            return notice(strings.FT_NO_REPORT)
        try:
            return report_html(await client.get_dataset(dataset_id))
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_DATASETS)

    async def do_upload(path: str | None, model_name: str, length: float | None):
        if not path:
            return gr.update(), gr.update()
        try:
            record = await client.upload_dataset(Path(path).name, Path(path).read_bytes(), model=model_name,
                                                 max_length=int(length or 512))
        except Exception as exc:  # noqa: BLE001 - a refused file (not JSON, too big...) is a report of one line
            return gr.update(), error_notice(exc, strings.FEAT_UPLOAD)
        return await load_datasets(record["id"]), report_html(record)

    async def do_docs(model_name: str, length: float | None):
        try:
            record = await client.prepare_docs_dataset(model=model_name, max_length=int(length or 512))
        except Exception as exc:  # noqa: BLE001
            return gr.update(), error_notice(exc, strings.FEAT_DOCS)
        return await load_datasets(record["id"]), report_html(record)

    def apply_recommendation(recs: list[dict[str, Any]], model_name: str):
        rec = recommendation_for(recs, model_name)
        if not rec:
            return [gr.update()] * 4
        return rec.get("batch_size"), rec.get("max_length"), rec.get("lora_r"), rec.get("num_workers")

    async def do_submit(dataset_id, model_name, task_name, n_epochs, steps, batch, lr, length, r, alpha, dropout,
                        n_workers):
        if not dataset_id:
            return notice(strings.FT_PICK_DATASET, "warn"), gr.update(), gr.update()
        config = {"dataset_id": dataset_id, "model": model_name, "epochs": int(n_epochs or 1),
                  "batch_size": int(batch or 1), "learning_rate": float(lr or 2e-4), "max_length": int(length or 512),
                  "lora_r": int(r or 8), "lora_alpha": int(alpha or 16), "lora_dropout": float(dropout or 0),
                  "num_workers": int(n_workers or 1)}
        if steps:
            config["max_steps"] = int(steps)
        if task_name and task_name.strip():
            config["name"] = task_name.strip()
        try:
            created = await client.create_finetune(config)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_SUBMIT), gr.update(), gr.update()
        table, choices = await refresh_tasks()
        return notice(strings.FT_STARTED.format(task=created["id"]), "ok"), table, gr.update(choices=choices,
                                                                                              value=created["id"])

    async def refresh_tasks():
        items = await client.list_tasks()
        return pd.DataFrame(task_rows(items, time.time()), columns=TASK_COLUMNS), task_choices(items)

    async def follow(task_id: str | None):
        """The periodic refresh: table, the selected task's log and loss curve."""
        try:
            table, choices = await refresh_tasks()
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), gr.update(), gr.update(), error_notice(exc, strings.FEAT_TASKS)
        ids = [value for _, value in choices]
        if task_id not in ids:
            task_id = ids[0] if ids else None
        if not task_id:
            return table, gr.update(choices=choices, value=None), "", gr.update(), notice(strings.FT_NO_TASKS)
        try:
            detail = await client.get_task(task_id)
            text = await client.task_logs(task_id)
            points = (await client.task_metrics(task_id)).get("points", [])
        except Exception as exc:  # noqa: BLE001
            return table, gr.update(choices=choices, value=task_id), gr.update(), gr.update(), \
                error_notice(exc, strings.FT_LOG)
        summary = task_notice(detail)
        return table, gr.update(choices=choices, value=task_id), text or "", loss_frame(points), summary

    async def do_cancel(task_id: str | None):
        if not task_id:
            return notice(strings.FT_PICK_TASK, "warn")
        try:
            await client.cancel_task(task_id)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_CANCEL)
        return notice(strings.FT_CANCELLED.format(task=task_id), "ok")

    async def do_backend(task_id: str | None):
        if not task_id:
            return notice(strings.FT_PICK_TASK, "warn")
        try:
            await client.use_as_backend(task_id)
        except Exception as exc:  # noqa: BLE001
            return error_notice(exc, strings.FEAT_BACKEND)
        return notice(strings.FT_BACKEND_SET.format(task=task_id), "ok")

    tab.select(load, [model, dataset], [dataset, report, model, recommendations, recommendation, status])
    upload.upload(do_upload, [upload, model, max_length], [dataset, report])
    docs_btn.click(do_docs, [model, max_length], [dataset, report])
    dataset.input(show_dataset, [dataset], [report])
    model.change(lambda recs, m: recommendation_markdown(recommendation_for(recs, m)), [recommendations, model],
                 [recommendation])
    apply_btn.click(apply_recommendation, [recommendations, model], [batch_size, max_length, lora_r, workers])
    follow_outputs = [tasks, task, log, loss, task_status]
    submit.click(do_submit, [dataset, model, name, epochs, max_steps, batch_size, learning_rate, max_length, lora_r,
                             lora_alpha, lora_dropout, workers], [status, tasks, task]
                 ).then(follow, [task], follow_outputs)
    timer.tick(follow, [task], follow_outputs, show_progress="hidden")
    task.input(follow, [task], follow_outputs)
    cancel_btn.click(do_cancel, [task], [task_status]).then(follow, [task], follow_outputs)
    backend_btn.click(do_backend, [task], [task_status])
    return {"tasks": tasks, "task": task, "status": status, "report": report}
