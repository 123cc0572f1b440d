"""Model choice and hot swap: list base models and fine-tunes, show the current one, switch (a Serve redeploy)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from deployments.config import StudioConfig
from deployments.engines.base import GenerationRequest
from deployments.engines.vllm_engine import adapter_version
from deployments.hotswap import NotDeclarativeError, Redeployer
from deployments.model_router import ModelRouter
from deployments.serving_state import (
    AdapterEntry,
    MergedEntry,
    ServingState,
    save_state,
)
from sage_studio.model_store import find_model_path

logger = logging.getLogger("ray.serve")
router = APIRouter(prefix="/api/finetune", tags=["models"])


class ModelEntry(BaseModel):
    name: str = Field(description="Name to ask for in the 'model' field.")
    kind: Literal["base", "finetune"]
    base: str | None = Field(None, description="Base model of a fine-tune.")
    source: str = Field(description="Checkpoint or adapter folder.")
    task_id: str | None = None
    served: bool = Field(description="Answering requests now (base models, and adapters switched to).")
    current: bool = Field(description="What 'sage-default' means now.")


ServeAs = Literal["adapter", "merged"]
SERVE_AS_HELP = ("How a fine-tune is served: 'adapter' (LoRA beside the base weights) or 'merged' (merged into them; "
                 "the base's engine then serves the fine-tune instead of the base). Unset: the base model's "
                 "finetune_serving setting.")


class SwitchRequest(BaseModel):
    model: str = Field(min_length=1, description="A base model name, a served fine-tune name, or a fine-tune task id.")
    serve_as: ServeAs | None = Field(None, description=SERVE_AS_HELP + " Used when 'model' is a task id.")


class UseAsBackendRequest(BaseModel):
    task_id: str = Field(min_length=1)
    serve_as: ServeAs | None = Field(None, description=SERVE_AS_HELP)


async def startup(state: Any, config: StudioConfig) -> None:
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
def list_models(request: Request) -> list[ModelEntry]:
    # Plain def: FastAPI runs it in a thread, off the loop that streams chat tokens (SQLite, and model look-ups
    # on disk per completed task).
    models: ModelRouter = request.app.state.model_router
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
    merged = models.serving.merged.get(name or "") if name in models.merged else None
    if merged is not None:
        return {"model": name, "kind": "finetune", "served_as": "merged", "merged": True, "base": merged.base,
                "adapter_path": merged.adapter_path, "merged_path": merged.path, "task_id": merged.task_id}
    return {"model": name, "kind": "finetune" if entry else "base", "served_as": "adapter" if entry else None,
            "merged": False, "base": entry.base if entry else name, "adapter_path": entry.path if entry else None,
            "merged_path": None, "task_id": entry.task_id if entry else None}


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
    request = GenerationRequest.probe(adapter=name, adapter_path=entry.path)
    try:
        async for _ in models.handles[entry.base].options(stream=True).generate.remote(request):
            pass
    except Exception as exc:  # noqa: BLE001
        cause = getattr(exc, "cause", None) or exc
        raise HTTPException(422, detail=f"The engine could not load the adapter: {cause}") from None


def _redeployer(request: Request) -> Redeployer:
    redeployer: Redeployer | None = request.app.state.redeployer
    if redeployer is None:
        reason = getattr(request.app.state, "redeployer_error", "this gateway is not running inside Ray Serve")
        raise HTTPException(503, detail=f"Model switching is unavailable: {reason}.")
    return redeployer


async def _load_weights(request: Request, redeployer: Redeployer, current: ServingState, state: ServingState) -> None:
    """Step one of a switch that changes an engine's weights: the engines load the new weights beside the ones
    serving now while the gateway keeps routing as before; returns once every engine reports them ready. On failure
    the engines drop them again and the old model keeps serving."""
    models: ModelRouter = request.app.state.model_router
    changed = {base: current.engine_weights(base) for base in models.handles
               if current.engine_weights(base) != state.engine_weights(base)}
    if not changed:
        return
    from deployments.app import engine_deployment_name

    await redeployer.apply(state, gateway=current, also={base: [old] for base, old in changed.items()})
    for base in changed:
        wanted = state.engine_weights(base)
        # Each call lands on one replica; asking (twice per replica) until all say ready covers them with high odds,
        # and a replica that was missed still serves correctly: it waits for its own load.
        checks = 2 * await redeployer.replicas(engine_deployment_name(base))
        for _ in range(checks):
            status = await models.handles[base].wait_weights.remote(wanted, 600)
            if status != "ready":
                await redeployer.apply(current)
                what = f"merged fine-tune '{wanted['name']}'" if wanted else f"base model '{base}'"
                raise HTTPException(422, detail=f"The engine could not load the {what} ({status}); the previous "
                                                "model keeps serving.")


async def _switch(request: Request, make_state: Callable[[ServingState], ServingState],
                  after_load: Callable[[], Awaitable[None]] | None = None) -> dict:
    """Serve ``make_state(current)``: built under the switch lock from the state serving then, so a switch that
    waited (or merged for minutes) does not drop what another switch changed meanwhile. ``after_load`` checks the
    new model once its weights are loaded, before traffic moves (an HTTPException from it undoes the switch)."""
    redeployer = _redeployer(request)
    # Serve cancels a handler whose client hangs up (a UI call times out long before a merged model has loaded);
    # a switch cut off between its steps would leave the engines holding two sets of weights, so it runs to its end
    # on its own task.
    task = asyncio.create_task(_switch_steps(request, redeployer, make_state, after_load))
    _switches.add(task)
    task.add_done_callback(_switches.discard)
    return await asyncio.shield(task)


async def _switch_steps(request: Request, redeployer: Redeployer, make_state: Callable[[ServingState], ServingState],
                        after_load: Callable[[], Awaitable[None]] | None) -> dict:
    models: ModelRouter = request.app.state.model_router
    home = request.app.state.config.sage_home
    async with _switch_lock:
        current = models.serving
        state = make_state(current)
        try:
            await _load_weights(request, redeployer, current, state)
            if after_load is not None:
                try:
                    await after_load()
                except HTTPException:
                    await redeployer.apply(current)
                    raise
            save_state(home, state)
            await redeployer.apply(state)
        except NotDeclarativeError as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except HTTPException:
            raise  # _load_weights has put the old weights back already
        except Exception as exc:  # noqa: BLE001 - e.g. an engine replica died or Serve timed out mid-switch
            logger.exception("model switch failed; going back to the previous model")
            try:
                save_state(home, current)
                await redeployer.apply(current)
            except Exception:  # noqa: BLE001 - the answer below still says what happened
                logger.exception("could not go back to the previous model")
            raise HTTPException(503, detail=f"The switch failed ({type(exc).__name__}: {exc}); the previous model "
                                            "keeps serving. Retry in a moment.") from None
    return await current_model(request)


_switch_lock = asyncio.Lock()  # one switch at a time per gateway replica (its steps must not interleave)
_switches: set[asyncio.Task] = set()  # switches in flight (the loop keeps only weak references to tasks)
_merge_lock = asyncio.Lock()


def _merge_task():
    import ray

    @ray.remote(num_cpus=0, max_calls=1)  # its own process, gone afterwards: the torch copy of the model goes too
    def merge(base: str, adapter: str, out_root: str, keep: list[str]) -> str:
        from train.merge import merge_adapter

        return str(merge_adapter(base, adapter, out_root, tuple(keep)))

    return merge


async def _merge(models: ModelRouter, base: str, adapter: Path, out_root: Path) -> Path:
    from sage_studio.model_store import resolve_model_path

    base_config = next(m for m in models.config.models if m.name == base)
    keep = [m.path for m in models.serving.merged.values()]
    async with _merge_lock:
        try:
            ref = _merge_task().remote(str(resolve_model_path(base_config.source)), str(adapter), str(out_root), keep)
            return Path(await ref)
        except Exception as exc:  # noqa: BLE001 - a merge that fails leaves the old model serving
            cause = getattr(exc, "cause", None) or exc
            raise HTTPException(422, detail=f"Could not merge the fine-tune into '{base}': {cause}") from None


def _without(state: ServingState, base: str, name: str) -> tuple[dict, dict]:
    """The state's adapters and merged fine-tunes minus ``name``, and minus any merged fine-tune holding ``base``."""
    adapters = {n: a for n, a in state.adapters.items() if n != name}
    merged = {n: m for n, m in state.merged.items() if n != name and m.base != base}
    return adapters, merged


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
    serve_as = body.serve_as or base_config.finetune_serving
    check_adapter(path, base_config.max_lora_rank if serve_as == "adapter" else 1 << 30)
    taken = set(models.handles) | ({models.config.remote.model} if models.config.remote else set())
    name = task.name if task.name and task.name not in taken and ":" not in task.name else task.id
    if serve_as == "merged":
        merged_dir = await _merge(models, base, path, store.task_dir(task.id) / "merged")
        entry = MergedEntry(base=base, path=str(merged_dir), version=merged_dir.name, task_id=task.id,
                            adapter_path=str(path))

        def make_state(current: ServingState) -> ServingState:
            adapters, merged = _without(current, base, name)
            return ServingState(default_model=name, adapters=adapters, merged=merged | {name: entry})
    else:
        adapter = AdapterEntry(base=base, path=str(path), version=adapter_version(str(path)), task_id=task.id)
        # A merged fine-tune holding the base weights: they come back with the switch, and the probe waits for them.
        base_is_loaded = models.serving.merged_on(base) is None
        if base_is_loaded:
            await _probe(models, name, adapter)

        def make_state(current: ServingState) -> ServingState:
            adapters, merged = _without(current, base, name)
            return ServingState(default_model=name, adapters=adapters | {name: adapter}, merged=merged)

        after_load = None if base_is_loaded else (lambda: _probe(models, name, adapter))
        return await _switch(request, make_state, after_load)
    return await _switch(request, make_state)


@router.post("/switch-model")
async def switch_model(body: SwitchRequest, request: Request) -> dict:
    models: ModelRouter = request.app.state.model_router
    current = models.serving
    if body.model in models.handles or body.model in current.adapters or body.model in models.merged:
        base = (body.model if body.model in models.handles else
                current.adapters[body.model].base if body.model in current.adapters else current.merged[body.model].base)

        def make_state(now: ServingState) -> ServingState:
            merged = now.merged
            if body.model not in models.merged:  # a base or an adapter: the engine serves the base weights again
                merged = {n: m for n, m in merged.items() if m.base != base}
            return now.model_copy(update={"default_model": body.model, "merged": merged})

        return await _switch(request, make_state)
    store = getattr(request.app.state, "finetune_store", None)
    if store is not None and store.get_task(body.model) is not None:
        return await use_as_backend(UseAsBackendRequest(task_id=body.model, serve_as=body.serve_as), request)
    raise HTTPException(404, detail=f"No model or fine-tune named '{body.model}'. GET /api/finetune/models lists them.")
