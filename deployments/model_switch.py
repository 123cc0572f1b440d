"""What model the studio serves: the choice a (re)started app begins with, and the live switch (hot swap).

One home for both, used by the models router, ``sage studio start --use-finetuned`` (through that router) and
the app builder at every (re)start. A switch is a declarative Serve redeploy (``deployments/hotswap.py``):

1. A change of an engine's weights (a merged fine-tune, or the base coming back): the engines load the new weights
   beside the serving ones while the gateway keeps routing as before, and report them ready.
2. Optionally a check of the new model once loaded (one token through an adapter) before traffic moves.
3. The new state is saved and deployed; the gateway routes to it. Any failure on the way puts the previous model
   back (deployed and saved) and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deployments.config import StudioConfig, engine_deployment_name
from deployments.engines.base import OpenAIRequest, OpenAIResponse
from deployments.engines.vllm_engine import adapter_version
from deployments.errors import StudioError
from deployments.hotswap import NotDeclarativeError, Redeployer
from deployments.model_router import ModelRouter
from deployments.serving_state import AdapterEntry, MergedEntry, ServingState, load_state, save_state
from sage_studio.model_store import find_model_path, resolve_model_path
from sage_studio.operations import Progress
from train.store import FinetuneStore, TaskRecord
from train.task_folder import adapter_dir

logger = logging.getLogger("ray.serve")
ServeAs = Literal["adapter", "merged"]
MakeState = Callable[[ServingState], ServingState]


def _no_progress(fraction: float | None, message: str | None = None) -> None:
    return None


@dataclass
class SwitchPlan:
    """A checked switch, not started: ``slow`` when it merges or loads weights (minutes: the router answers 202 and
    runs it as an operation); ``run(progress)`` carries it out and returns the new current model."""

    run: Callable[[Progress], Awaitable[dict[str, Any]]]
    slow: bool


def serving_state_for(config: StudioConfig) -> ServingState:
    """The persisted choice (last hot swap) plus the adapters the config names, minus what no longer exists."""
    state = load_state(config.sage_home)
    served = {m.name for m in config.models}
    adapters = {name: entry for name, entry in state.adapters.items() if entry.base in served and entry.on_disk}
    for model in config.models:
        for name, path in model.adapters.items():
            adapters[name] = AdapterEntry(base=model.name, path=path, version=adapter_version(path))
    merged = {name: entry for name, entry in state.merged.items()
              if entry.base in served and entry.on_disk and name not in adapters}
    default = state.default_model if state.default_model in served | adapters.keys() | merged.keys() else None
    return ServingState(default_model=default, adapters=adapters, merged=merged)


def task_base(task: TaskRecord, config: StudioConfig) -> str | None:
    """The served base model a task was trained on (by name, or by checkpoint folder)."""
    wanted = {str(task.config.get("model")), str(task.config.get("model_path"))}
    for m in config.models:
        if m.name in wanted or m.source in wanted:
            return m.name
        path = find_model_path(m.source)  # a look-up: nothing here ever prepares a model
        if path is not None and str(path) in wanted:
            return m.name
    return None


def check_adapter(path: Path, max_rank: int) -> None:
    """Refuse a checkpoint that is missing or corrupt before anything is redeployed."""
    from safetensors import safe_open

    config_file, weights = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise StudioError(422, f"The fine-tune's adapter is missing: {path} has no adapter_config.json "
                               "and adapter_model.safetensors.")
    try:
        rank = int(json.loads(config_file.read_text()).get("r", 0))
        # numpy, not pt: the gateway does not import torch (2 s that would block its event loop, and every
        # request in flight with it); the header and slices are read without converting any tensor.
        with safe_open(str(weights), framework="numpy") as fh:
            names = list(fh.keys())
            for key in names:
                fh.get_slice(key)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the checkpoint is unusable
        raise StudioError(422, f"The fine-tune's adapter at {path} is corrupt: {exc}") from None
    if not names:
        raise StudioError(422, f"The fine-tune's adapter at {path} holds no weights.")
    if rank > max_rank:
        raise StudioError(422, f"The adapter's LoRA rank {rank} is above the engine's max_lora_rank {max_rank}; "
                               "raise max_lora_rank in the model config.")


def _without(state: ServingState, base: str, name: str) -> tuple[dict, dict]:
    """The state's adapters and merged fine-tunes minus ``name``, and minus any merged fine-tune holding ``base``."""
    adapters = {n: a for n, a in state.adapters.items() if n != name}
    merged = {n: m for n, m in state.merged.items() if n != name and m.base != base}
    return adapters, merged


def current_model(models: ModelRouter) -> dict[str, Any]:
    """What ``sage-default`` means now, and how it is served."""
    name = models.default_model
    entry = models.serving.adapters.get(name or "")
    merged = models.serving.merged.get(name or "") if name in models.merged else None
    if merged is not None:
        return {"model": name, "kind": "finetune", "served_as": "merged", "merged": True, "base": merged.base,
                "adapter_path": merged.adapter_path, "merged_path": merged.path, "task_id": merged.task_id}
    return {"model": name, "kind": "finetune" if entry else "base", "served_as": "adapter" if entry else None,
            "merged": False, "base": entry.base if entry else name, "adapter_path": entry.path if entry else None,
            "merged_path": None, "task_id": entry.task_id if entry else None}


class ModelSwitch:
    """Switches of one gateway replica, one at a time (their steps must not interleave)."""

    def __init__(self, models: ModelRouter, redeployer: Redeployer, store: FinetuneStore | None):
        self.models = models
        self.redeployer = redeployer
        self.store = store
        self.home = models.config.sage_home
        self._lock = asyncio.Lock()
        self._merge_lock = asyncio.Lock()
        self._running: set[asyncio.Task] = set()  # switches in flight (the loop keeps only weak references)

    @classmethod
    def in_replica(cls, models: ModelRouter, store: FinetuneStore | None) -> "ModelSwitch":
        """The switch of the Serve replica this runs in; ``RuntimeError`` outside Serve or without a dashboard."""
        from ray import serve

        from train.jobs import dashboard_address

        try:
            app_name = serve.get_replica_context().app_name
        except RuntimeError:
            raise RuntimeError("this gateway is not running inside Ray Serve") from None
        engines = {m.name: engine_deployment_name(m.name) for m in models.config.models}
        return cls(models, Redeployer(app_name, dashboard_address(), engines), store)

    # ---- the two requests --------------------------------------------------------------------------------------

    async def use_finetune(self, task_id: str, serve_as: ServeAs | None = None) -> dict[str, Any]:
        """Serve a completed fine-tune as the chat model, as an adapter or merged into its base."""
        return await (await self.plan_finetune(task_id, serve_as)).run(_no_progress)

    async def switch_to(self, model: str, serve_as: ServeAs | None = None) -> dict[str, Any]:
        """Chat with a served base model or fine-tune, or with a fine-tune task (by id) not served yet."""
        return await (await self.plan_switch(model, serve_as)).run(_no_progress)

    async def plan_finetune(self, task_id: str, serve_as: ServeAs | None = None) -> SwitchPlan:
        """Check that a fine-tune can be served (a StudioError at once if not) and plan its switch."""
        task = self.store.get_task(task_id) if self.store is not None else None
        if task is None:
            raise StudioError(404, f"Fine-tune task '{task_id}' does not exist.")
        if task.state != "completed":
            raise StudioError(409, f"Fine-tune task '{task.id}' is {task.state}: only a completed fine-tune "
                                   "can become the chat model.")
        models = self.models
        base = task_base(task, models.config)
        if base is None:
            raise StudioError(409, f"The task was trained on '{task.config.get('model')}', which no engine "
                                   "of this studio serves.")
        path = adapter_dir(self.store.task_dir(task.id))
        base_config = next(m for m in models.config.models if m.name == base)
        serve_as = serve_as or base_config.finetune_serving
        await asyncio.to_thread(check_adapter, path, base_config.max_lora_rank if serve_as == "adapter" else 1 << 30)
        taken = set(models.handles) | ({models.config.remote.model} if models.config.remote else set())
        name = task.name if task.name and task.name not in taken and ":" not in task.name else task.id
        if serve_as == "merged":
            async def merge_and_switch(progress: Progress) -> dict[str, Any]:
                await asyncio.to_thread(progress, 0.05, f"merging the fine-tune into '{base}'")
                merged_dir = await self._merge(base, path, self.store.task_dir(task.id) / "merged")
                merged_entry = MergedEntry(base=base, path=str(merged_dir), version=merged_dir.name,
                                           task_id=task.id, adapter_path=str(path))

                def with_merged(current: ServingState) -> ServingState:
                    adapters, merged = _without(current, base, name)
                    return ServingState(default_model=name, adapters=adapters, merged=merged | {name: merged_entry})

                return await self._switch(with_merged, progress=progress)

            return SwitchPlan(merge_and_switch, slow=True)
        adapter = AdapterEntry(base=base, path=str(path), version=adapter_version(str(path)), task_id=task.id)
        # A merged fine-tune holding the base weights: they come back with the switch, and the probe waits for them.
        base_is_loaded = models.serving.merged_on(base) is None

        def with_adapter(current: ServingState) -> ServingState:
            adapters, merged = _without(current, base, name)
            return ServingState(default_model=name, adapters=adapters | {name: adapter}, merged=merged)

        async def probe_and_switch(progress: Progress) -> dict[str, Any]:
            if base_is_loaded:
                await self._probe(name, adapter)
            return await self._switch(with_adapter, None if base_is_loaded else (lambda: self._probe(name, adapter)),
                                      progress=progress)

        return SwitchPlan(probe_and_switch, slow=not base_is_loaded)

    async def plan_switch(self, model: str, serve_as: ServeAs | None = None) -> SwitchPlan:
        """Check and plan a switch to a served model, or to a fine-tune task (by id) not served yet."""
        models, current = self.models, self.models.serving
        if model in models.handles or model in current.adapters or model in models.merged:
            base = (model if model in models.handles else
                    current.adapters[model].base if model in current.adapters else current.merged[model].base)

            def choose(now: ServingState) -> ServingState:
                merged = now.merged
                if model not in models.merged:  # a base or an adapter: the engine serves the base weights again
                    merged = {n: m for n, m in merged.items() if m.base != base}
                return now.model_copy(update={"default_model": model, "merged": merged})

            planned = choose(current)
            slow = any(current.engine_weights(b) != planned.engine_weights(b) for b in models.handles)
            return SwitchPlan(lambda progress: self._switch(choose, progress=progress), slow=slow)
        if self.store is not None and self.store.get_task(model) is not None:
            return await self.plan_finetune(model, serve_as)
        raise StudioError(404, f"No model or fine-tune named '{model}'. GET /api/finetune/models lists them.")

    # ---- the steps ---------------------------------------------------------------------------------------------

    async def _probe(self, name: str, entry: AdapterEntry) -> None:
        """One token through the engine with the new adapter: a checkpoint vLLM can't load is refused here (and
        the engine replica that answers has the adapter loaded before traffic moves)."""
        request = OpenAIRequest.probe(name, adapter=name, adapter_path=entry.path)
        try:
            async for out in self.models.handles[entry.base].options(stream=True).openai.remote(request):
                if isinstance(out, OpenAIResponse) and not out.ok:
                    raise RuntimeError(out.body.get("error", {}).get("message", out.body))
        except Exception as exc:  # noqa: BLE001
            raise StudioError(422, f"The engine could not load the adapter: {getattr(exc, 'cause', None) or exc}"
                              ) from None

    async def _merge(self, base: str, adapter: Path, out_root: Path) -> Path:
        import ray

        @ray.remote(num_cpus=0, max_calls=1)  # its own process, gone afterwards: the torch copy of the model goes too
        def merge(base_dir: str, adapter_dir: str, root: str, keep: list[str]) -> str:
            from train.merge import merge_adapter

            return str(merge_adapter(base_dir, adapter_dir, root, tuple(keep)))

        base_config = next(m for m in self.models.config.models if m.name == base)
        keep = [m.path for m in self.models.serving.merged.values()]
        async with self._merge_lock:
            try:
                ref = merge.remote(str(resolve_model_path(base_config.source)), str(adapter), str(out_root), keep)
                return Path(await ref)
            except Exception as exc:  # noqa: BLE001 - a merge that fails leaves the old model serving
                cause = getattr(exc, "cause", None) or exc
                raise StudioError(422, f"Could not merge the fine-tune into '{base}': {cause}") from None

    async def _switch(self, make_state: MakeState, after_load: Callable[[], Awaitable[None]] | None = None,
                      progress: Progress = _no_progress) -> dict:
        """Serve ``make_state(current)``: built under the switch lock from the state serving then, so a switch that
        waited (or merged for minutes) does not drop what another switch changed meanwhile. ``after_load`` checks
        the new model once its weights are loaded, before traffic moves (a StudioError from it undoes the switch).

        Serve cancels a handler whose client hangs up (a UI call times out long before a merged model has loaded);
        a switch cut off between its steps would leave the engines holding two sets of weights, so it runs to its
        end on its own task."""
        task = asyncio.create_task(self._switch_steps(make_state, after_load, progress))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def _switch_steps(self, make_state: MakeState, after_load: Callable[[], Awaitable[None]] | None,
                            progress: Progress) -> dict:
        async with self._lock:
            current = self.models.serving
            state = make_state(current)
            try:
                await asyncio.to_thread(progress, 0.3, "loading the new weights beside the serving ones")
                await self._load_weights(current, state)
                await asyncio.to_thread(progress, 0.9, "moving traffic to the new model")
                if after_load is not None:
                    try:
                        await after_load()
                    except StudioError:
                        await self.redeployer.apply(current)
                        raise
                save_state(self.home, state)
                await self.redeployer.apply(state)
            except NotDeclarativeError as exc:
                raise StudioError(409, str(exc)) from None
            except StudioError:
                raise  # _load_weights has put the old weights back already
            except Exception as exc:  # noqa: BLE001 - e.g. an engine replica died or Serve timed out mid-switch
                logger.exception("model switch failed; going back to the previous model")
                try:
                    save_state(self.home, current)
                    await self.redeployer.apply(current)
                except Exception:  # noqa: BLE001 - the answer below still says what happened
                    logger.exception("could not go back to the previous model")
                raise StudioError(503, f"The switch failed ({type(exc).__name__}: {exc}); the previous model "
                                       "keeps serving. Retry in a moment.") from None
        return current_model(self.models)

    async def _load_weights(self, current: ServingState, state: ServingState) -> None:
        """Step one of a switch that changes an engine's weights: the engines load the new weights beside the ones
        serving now while the gateway keeps routing as before; returns once every engine reports them ready. On
        failure the engines drop them again and the old model keeps serving."""
        handles = self.models.handles
        changed = {base: current.engine_weights(base) for base in handles
                   if current.engine_weights(base) != state.engine_weights(base)}
        if not changed:
            return
        await self.redeployer.apply(state, gateway=current, also={base: [old] for base, old in changed.items()})
        for base in changed:
            wanted = state.engine_weights(base)
            # Each call lands on one replica; asking (twice per replica) until all say ready covers them with high
            # odds, and a replica that was missed still serves correctly: it waits for its own load.
            checks = 2 * await self.redeployer.replicas(engine_deployment_name(base))
            for _ in range(checks):
                status = await handles[base].wait_weights.remote(wanted, 600)
                if status != "ready":
                    await self.redeployer.apply(current)
                    what = f"merged fine-tune '{wanted['name']}'" if wanted else f"base model '{base}'"
                    raise StudioError(422, f"The engine could not load the {what} ({status}); the previous "
                                           "model keeps serving.")
