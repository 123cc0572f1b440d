"""The weights one engine replica holds: its base model, or a fine-tune merged into it, swapped without downtime.

A merged fine-tune is a different model, so serving it means loading a new engine. Serve takes a replica out of
routing while its ``reconfigure`` runs, so a reconfigure that loaded a model would queue every request for the whole
load. Instead ``want`` only schedules: a new set of weights loads in the background beside the ones serving now, and
weights no longer wanted retire — they keep answering the requests already routed to them and are shut down once
idle for ``grace_s``. The gateway switches its traffic only after the new weights report ready (see
``deployments/model_switch.py``), so no request waits for a load.

Weights are named by a spec: ``None`` for the base model of the deployment's config, or
``{"name", "path", "version"}`` for a merged checkpoint; a new version under the same name is a new engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from deployments.config import ModelConfig
from deployments.engines.base import (
    AdapterNotFoundError,
    EngineUnavailableError,
    LLMEngine,
    OpenAIRequest,
    OpenAIResponse,
)

logger = logging.getLogger("ray.serve")

Key = tuple[str | None, str | None]
BASE: Key = (None, None)


class WeightsNotLoadedError(AdapterNotFoundError):
    """A request asked for weights this replica does not hold (a stale route, or a switch still in progress)."""


def weights_key(spec: dict | None) -> Key:
    return BASE if spec is None else (spec["name"], spec["version"])


@dataclass
class _Slot:
    spec: dict | None
    engine: LLMEngine | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # loaded, or failed to
    error: str | None = None
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    retiring: bool = False
    task: asyncio.Task | None = None

    @property
    def label(self) -> str:
        return "base weights" if self.spec is None else f"merged fine-tune '{self.spec['name']}'"

    def status(self) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        if not self.done.is_set():
            return "loading"
        return "retiring" if self.retiring else "ready"


class WeightSet:
    def __init__(self, config: ModelConfig, make_engine: Callable[[ModelConfig], LLMEngine], grace_s: float = 10.0):
        self.config = config
        self.make_engine = make_engine
        self.grace_s = grace_s
        self.adapters: dict[str, str] = {}
        self._slots: dict[Key, _Slot] = {}

    def _config_for(self, spec: dict | None) -> ModelConfig:
        if spec is None:
            return self.config
        # The merged weights are a plain model served under the fine-tune's name: no LoRA slots (they would only
        # cost memory), no base adapters.
        return self.config.model_copy(
            update={"name": spec["name"], "source": spec["path"], "enable_lora": False, "adapters": {}})

    async def _load(self, slot: _Slot) -> None:
        engine = None
        try:
            # Inside the try: a merged folder deleted meanwhile fails here, and must fail the slot, not hang it.
            engine = self.make_engine(self._config_for(slot.spec))
            await engine.start()
            if slot.spec is None:
                for name, path in self.adapters.items():
                    await engine.add_adapter(name, path)
            # One token through the new weights: a checkpoint the engine can load but not run is refused here.
            async for out in engine.openai(OpenAIRequest.probe(engine.info().model)):
                if isinstance(out, OpenAIResponse) and not out.ok:
                    raise EngineUnavailableError(f"the probe request failed: {out.body}")
        except asyncio.CancelledError:  # the replica shuts down mid-load: free the half-started engine process
            if engine is not None:
                await _shutdown(engine)
            raise
        except Exception as exc:
            logger.exception("could not load the %s", slot.label)
            slot.error = f"{type(exc).__name__}: {exc}"
            if engine is not None:
                await _shutdown(engine)
        else:
            slot.engine = engine
            logger.info("%s loaded for model %s", slot.label, self.config.name)
        slot.done.set()
        if slot.retiring:  # dropped from the wanted set while it loaded
            slot.task = asyncio.create_task(self._retire(slot))

    async def start(self, spec: dict | None) -> None:
        """Load the first weights before the replica reports ready (the replica's constructor)."""
        slot = self._slots[weights_key(spec)] = _Slot(spec)
        await self._load(slot)
        if slot.error is not None:
            raise EngineUnavailableError(f"could not load the {slot.label}: {slot.error}")

    def want(self, specs: list[dict | None], adapters: dict[str, str]) -> None:
        """Hold exactly these weights: load the missing ones in the background, retire the rest. Never blocks."""
        self.adapters = dict(adapters)
        wanted = {weights_key(s): s for s in specs}
        for key, spec in wanted.items():
            slot = self._slots.get(key)
            if slot is not None and slot.error is not None:  # a failed load is retried by asking for it again
                del self._slots[key]
                slot = None
            if slot is None:
                slot = self._slots[key] = _Slot(spec)
                slot.task = asyncio.create_task(self._load(slot))
            elif slot.retiring:
                slot.retiring = False
        base = self._slots.get(BASE)
        if base is not None and base.engine is not None:
            for name, path in self.adapters.items():
                asyncio.create_task(_add_adapter(base.engine, name, path))
        for key, slot in list(self._slots.items()):
            if key not in wanted and not slot.retiring:
                slot.retiring = True
                if slot.done.is_set():
                    slot.task = asyncio.create_task(self._retire(slot))

    async def _retire(self, slot: _Slot) -> None:
        """Let the requests already routed to these weights finish, then free them."""
        while slot.retiring and (slot.active or time.monotonic() - slot.last_used < self.grace_s):
            await asyncio.sleep(0.5)
        if not slot.retiring:  # wanted again meanwhile
            return
        key = weights_key(slot.spec)
        if self._slots.get(key) is slot:
            del self._slots[key]
        if slot.engine is not None:
            await _shutdown(slot.engine)
            logger.info("%s unloaded from model %s", slot.label, self.config.name)

    async def wait(self, spec: dict | None, timeout_s: float) -> str:
        """Until these weights have loaded (or failed): their status, as ``status`` reports it."""
        slot = self._slots.get(weights_key(spec))
        if slot is None:
            return "not loaded"
        try:
            await asyncio.wait_for(slot.done.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        return slot.status()

    @asynccontextmanager
    async def use(self, name: str | None, version: str | None) -> AsyncIterator[LLMEngine]:
        """The engine for a request's weights; waits if they are still loading (a replica that missed the switch)."""
        slot = self._slots.get((name, version) if name is not None else BASE)
        if slot is None:
            what = f"the merged fine-tune '{name}'" if name is not None else f"the base model '{self.config.name}'"
            raise WeightsNotLoadedError(f"{what} is not loaded on this engine now; GET /v1/models lists what is.")
        slot.active += 1
        slot.last_used = time.monotonic()
        try:
            await slot.done.wait()
            if slot.error is not None or slot.engine is None:
                raise EngineUnavailableError(f"the {slot.label} could not be loaded: {slot.error}")
            yield slot.engine
        finally:
            slot.active -= 1
            slot.last_used = time.monotonic()

    def base_engine(self) -> LLMEngine | None:
        slot = self._slots.get(BASE)
        return slot.engine if slot is not None else None

    def any_engine(self) -> LLMEngine | None:
        ready = [s.engine for s in self._slots.values() if s.engine is not None and not s.retiring]
        return self.base_engine() or (ready[0] if ready else None)

    def status(self) -> dict[str, str]:
        return {("base" if s.spec is None else f"{s.spec['name']}@{s.spec['version']}"): s.status()
                for s in self._slots.values()}

    async def check_health(self) -> None:
        serving = [s for s in self._slots.values() if s.engine is not None and not s.retiring]
        if not serving and all(s.done.is_set() for s in self._slots.values()):
            raise EngineUnavailableError(f"no weights are loaded for model {self.config.name}")
        for slot in serving:
            # A slot retired while an earlier check awaited has a shut-down engine: not a reason to restart the replica.
            if not slot.retiring and slot.engine is not None:
                await slot.engine.check_health()

    async def shutdown(self) -> None:
        for slot in list(self._slots.values()):
            if slot.task is not None:
                slot.task.cancel()
            if slot.engine is not None:
                await _shutdown(slot.engine)
        self._slots.clear()


async def _add_adapter(engine: LLMEngine, name: str, path: str) -> None:
    try:
        await engine.add_adapter(name, path)
    except Exception:
        logger.exception("could not preload adapter %s from %s", name, path)


async def _shutdown(engine: LLMEngine) -> None:
    try:
        await engine.shutdown()
    except Exception:
        logger.exception("engine shutdown failed")
