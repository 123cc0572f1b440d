"""Model choice and hot swap: list base models and fine-tunes, show the current one, switch (a thin layer over
``deployments.model_switch``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from deployments.model_switch import ServeAs, SwitchPlan, current_model, task_base
from deployments.operations_http import ACCEPTED_RESPONSE, accepted, wants_async
from deployments.services import Models, Switch, get_services
from sage_studio.operations import OperationRunner
from train.task_folder import adapter_dir

router = APIRouter(prefix="/api/finetune", tags=["models"])


class ModelEntry(BaseModel):
    name: str = Field(description="Name to ask for in the 'model' field.")
    kind: Literal["base", "finetune"]
    base: str | None = Field(None, description="Base model of a fine-tune.")
    source: str = Field(description="Checkpoint or adapter folder.")
    task_id: str | None = None
    served: bool = Field(description="Answering requests now (base models, and adapters switched to).")
    current: bool = Field(description="What 'sage-default' means now.")


SERVE_AS_HELP = ("How a fine-tune is served: 'adapter' (LoRA beside the base weights) or 'merged' (merged into them; "
                 "the base's engine then serves the fine-tune instead of the base). Unset: the base model's "
                 "finetune_serving setting.")


class SwitchRequest(BaseModel):
    model: str = Field(min_length=1, description="A base model name, a served fine-tune name, or a fine-tune task id.")
    serve_as: ServeAs | None = Field(None, description=SERVE_AS_HELP + " Used when 'model' is a task id.")


class UseAsBackendRequest(BaseModel):
    task_id: str = Field(min_length=1)
    serve_as: ServeAs | None = Field(None, description=SERVE_AS_HELP)


@router.get("/models", response_model=list[ModelEntry])
def list_models(models: Models, request: Request) -> list[ModelEntry]:
    # Plain def: FastAPI runs it in a thread, off the loop that streams chat tokens (SQLite, and model look-ups
    # on disk per completed task).
    current = models.default_model
    out = [ModelEntry(name=m.name, kind="base", source=m.source, served=True, current=m.name == current)
           for m in models.config.models]
    served = models.serving.adapters
    for name, entry in served.items():
        out.append(ModelEntry(name=name, kind="finetune", base=entry.base, source=entry.path, task_id=entry.task_id,
                              served=True, current=name == current))
    for name, merged in models.serving.merged.items():
        if name in models.merged:
            out.append(ModelEntry(name=name, kind="finetune", base=merged.base, source=merged.path,
                                  task_id=merged.task_id, served=True, current=name == current))
    served_tasks = {e.task_id for e in served.values()} | {m.task_id for m in models.serving.merged.values()}
    store = get_services(request).finetune_store
    for task in store.list_tasks(("completed",)) if store is not None else []:
        if task.id not in served_tasks:
            out.append(ModelEntry(name=task.id, kind="finetune", base=task_base(task, models.config),
                                  source=str(adapter_dir(store.task_dir(task.id))), task_id=task.id,
                                  served=False, current=False))
    return out


@router.get("/current-model")
async def get_current_model(models: Models) -> dict:
    return current_model(models)


async def _carry_out(request: Request, plan: SwitchPlan, operations: OperationRunner | None):
    """A switch that merges or loads weights (minutes) answers 202 and runs as an operation; a quick one (an
    adapter on loaded weights) answers with the new current model, unless the client prefers respond-async."""
    if operations is not None and (plan.slow or wants_async(request)):
        return accepted(request, operations, "model-switch", plan.run)
    return await plan.run(lambda *_: None)


@router.post("/use-as-backend", responses=ACCEPTED_RESPONSE)
async def use_as_backend(request: Request, body: UseAsBackendRequest, switch: Switch):
    """Serve a completed fine-tune as the chat model. Merged (``serve_as: merged``) it answers 202 with an
    operation id at once: the merge and the load of the merged weights run in the background."""
    plan = await switch.plan_finetune(body.task_id, body.serve_as)
    return await _carry_out(request, plan, get_services(request).operations)


@router.post("/switch-model", responses=ACCEPTED_RESPONSE)
async def switch_model(request: Request, body: SwitchRequest, switch: Switch):
    """Chat with another model; 202 with an operation id when that means loading weights."""
    plan = await switch.plan_switch(body.model, body.serve_as)
    return await _carry_out(request, plan, get_services(request).operations)
