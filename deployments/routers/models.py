"""Model choice and hot swap: list base models and fine-tunes, show the current one, switch (a Serve redeploy)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from deployments.engines.base import GenerationRequest
from deployments.engines.vllm_engine import adapter_version
from deployments.hotswap import NotDeclarativeError, Redeployer
from deployments.model_router import ModelRouter
from deployments.serving_state import AdapterEntry, ServingState, save_state
from sage_studio.model_store import find_model_path

router = APIRouter(prefix="/api/finetune", tags=["models"])


class ModelEntry(BaseModel):
    name: str = Field(description="Name to ask for in the 'model' field.")
    kind: Literal["base", "finetune"]
    base: str | None = Field(None, description="Base model of a fine-tune.")
    source: str = Field(description="Checkpoint or adapter folder.")
    task_id: str | None = None
    served: bool = Field(description="Answering requests now (base models, and adapters switched to).")
    current: bool = Field(description="What 'sage-default' means now.")


class SwitchRequest(BaseModel):
    model: str = Field(min_length=1, description="A base model name, a served adapter name, or a fine-tune task id.")


class UseAsBackendRequest(BaseModel):
    task_id: str = Field(min_length=1)


async def startup(state: Any, config: Any) -> None:
    from ray import serve

    from deployments.app import engine_deployment_name

    try:
        app_name = serve.get_replica_context().app_name
    except RuntimeError:  # not inside a replica (unit tests of the app): switching is unavailable
        app_name = None
    state.redeployer = None
    if app_name is not None:
        from train.jobs import dashboard_address

        try:
            engines = {m.name: engine_deployment_name(m.name) for m in config.models}
            state.redeployer = Redeployer(app_name, dashboard_address(), engines)
        except RuntimeError as exc:
            state.redeployer_error = str(exc)


def _completed_tasks(request: Request) -> list[Any]:
    store = getattr(request.app.state, "finetune_store", None)
    return store.list_tasks(("completed",)) if store is not None else []


def _task_base(task: Any, models: ModelRouter) -> str | None:
    """The served base model a task was trained on (by name, or by checkpoint folder)."""
    wanted = {str(task.config.get("model")), str(task.config.get("model_path"))}
    for m in models.config.models:
        if m.name in wanted or m.source in wanted:
            return m.name
        path = find_model_path(m.source)  # a look-up: a GET never prepares a model
        if path is not None and str(path) in wanted:
            return m.name
    return None


@router.get("/models", response_model=list[ModelEntry])
async def list_models(request: Request) -> list[ModelEntry]:
    models: ModelRouter = request.app.state.model_router
    current = models.default_model
    out = [ModelEntry(name=m.name, kind="base", source=m.source, served=True, current=m.name == current)
           for m in models.config.models]
    served = models.serving.adapters
    for name, entry in served.items():
        out.append(ModelEntry(name=name, kind="finetune", base=entry.base, source=entry.path, task_id=entry.task_id,
                              served=True, current=name == current))
    served_tasks = {e.task_id for e in served.values()}
    for task in _completed_tasks(request):
        if task.id not in served_tasks:
            out.append(ModelEntry(name=task.id, kind="finetune", base=_task_base(task, models),
                                  source=str(Path(task.config.get("output_dir", "")) / "adapter"), task_id=task.id,
                                  served=False, current=False))
    return out


@router.get("/current-model")
async def current_model(request: Request) -> dict:
    models: ModelRouter = request.app.state.model_router
    name = models.default_model
    entry = models.serving.adapters.get(name or "")
    return {"model": name, "kind": "finetune" if entry else "base", "base": entry.base if entry else name,
            "adapter_path": entry.path if entry else None, "task_id": entry.task_id if entry else None}


def check_adapter(path: Path, max_rank: int) -> None:
    """Refuse a checkpoint that is missing or corrupt before anything is redeployed."""
    from safetensors import safe_open

    config_file, weights = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise HTTPException(422, detail=f"The fine-tune's adapter is missing: {path} has no adapter_config.json "
                                        "and adapter_model.safetensors.")
    try:
        rank = int(json.loads(config_file.read_text()).get("r", 0))
        with safe_open(str(weights), framework="pt") as fh:
            names = list(fh.keys())
            for key in names:
                fh.get_slice(key)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the checkpoint is unusable
        raise HTTPException(422, detail=f"The fine-tune's adapter at {path} is corrupt: {exc}") from None
    if not names:
        raise HTTPException(422, detail=f"The fine-tune's adapter at {path} holds no weights.")
    if rank > max_rank:
        raise HTTPException(422, detail=f"The adapter's LoRA rank {rank} is above the engine's max_lora_rank "
                                        f"{max_rank}; raise max_lora_rank in the model config.")


async def _probe(models: ModelRouter, name: str, entry: AdapterEntry) -> None:
    """One token through the engine with the new adapter: a checkpoint vLLM can't load is refused here."""
    request = GenerationRequest(request_id=f"probe-{uuid.uuid4().hex}", prompt="Hello", max_tokens=1,
                                temperature=0, adapter=name, adapter_path=entry.path)
    try:
        async for _ in models.handles[entry.base].options(stream=True).generate.remote(request):
            pass
    except Exception as exc:  # noqa: BLE001
        cause = getattr(exc, "cause", None) or exc
        raise HTTPException(422, detail=f"The engine could not load the adapter: {cause}") from None


async def _switch(request: Request, state: ServingState) -> dict:
    redeployer: Redeployer | None = request.app.state.redeployer
    if redeployer is None:
        reason = getattr(request.app.state, "redeployer_error", "this gateway is not running inside Ray Serve")
        raise HTTPException(503, detail=f"Model switching is unavailable: {reason}.")
    save_state(request.app.state.config.sage_home, state)
    try:
        await redeployer.apply(state)
    except NotDeclarativeError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    return await current_model(request)


@router.post("/use-as-backend")
async def use_as_backend(body: UseAsBackendRequest, request: Request) -> dict:
    models: ModelRouter = request.app.state.model_router
    store = getattr(request.app.state, "finetune_store", None)
    task = store.get_task(body.task_id) if store is not None else None
    if task is None:
        raise HTTPException(404, detail=f"Fine-tune task '{body.task_id}' does not exist.")
    if task.state != "completed":
        raise HTTPException(409, detail=f"Fine-tune task '{task.id}' is {task.state}: only a completed fine-tune "
                                        "can become the chat model.")
    base = _task_base(task, models)
    if base is None:
        raise HTTPException(409, detail=f"The task was trained on '{task.config.get('model')}', which no engine "
                                        "of this studio serves.")
    path = store.task_dir(task.id) / "adapter"
    base_config = next(m for m in models.config.models if m.name == base)
    check_adapter(path, base_config.max_lora_rank)
    name = task.name if task.name and task.name not in models.handles and ":" not in task.name else task.id
    entry = AdapterEntry(base=base, path=str(path), version=adapter_version(str(path)), task_id=task.id)
    await _probe(models, name, entry)
    current = models.serving
    state = ServingState(default_model=name, adapters=current.adapters | {name: entry})
    return await _switch(request, state)


@router.post("/switch-model")
async def switch_model(body: SwitchRequest, request: Request) -> dict:
    models: ModelRouter = request.app.state.model_router
    if body.model in models.handles or body.model in models.adapters:
        return await _switch(request, models.serving.model_copy(update={"default_model": body.model}))
    store = getattr(request.app.state, "finetune_store", None)
    if store is not None and store.get_task(body.model) is not None:
        return await use_as_backend(UseAsBackendRequest(task_id=body.model), request)
    raise HTTPException(404, detail=f"No model or fine-tune named '{body.model}'. GET /api/finetune/models lists them.")
