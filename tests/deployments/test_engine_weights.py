"""WeightSet: new weights load beside the serving ones, old ones retire once idle (fake engines, no Ray)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from deployments.config import ModelConfig
from deployments.engine_weights import WeightSet, WeightsNotLoadedError
from deployments.engines.base import (
    EngineInfo,
    EngineUnavailableError,
    LLMEngine,
    OpenAIResponse,
)

MERGED = {"name": "canary", "path": "/ckpt/merged/v1", "version": "v1"}


class FakeEngine(LLMEngine):
    def __init__(self, config: ModelConfig, load_s: float = 0.3, fail: bool = False):
        self.config, self.load_s, self.fail, self.running = config, load_s, fail, False

    async def start(self) -> None:
        await asyncio.sleep(self.load_s)
        if self.fail:
            raise OSError(f"cannot read {self.config.source}")
        self.running = True

    async def openai(self, request):
        await asyncio.sleep(0.05)
        yield OpenAIResponse(200, {"choices": [{"text": self.config.source}]})

    async def check_health(self) -> None:
        if not self.running:
            raise EngineUnavailableError("down")

    def info(self) -> EngineInfo:
        return EngineInfo(model=self.config.name, engine="fake", max_model_len=64)

    async def shutdown(self) -> None:
        self.running = False


def weight_set(fail: set[str] = frozenset(), grace_s: float = 0.3) -> tuple[WeightSet, list[FakeEngine]]:
    made: list[FakeEngine] = []

    def make(config: ModelConfig) -> FakeEngine:
        made.append(FakeEngine(config, fail=config.source in fail))
        return made[-1]

    return WeightSet(ModelConfig(name="base", source="/ckpt/base"), make, grace_s=grace_s), made


async def answer(ws: WeightSet, name=None, version=None) -> str:
    async with ws.use(name, version) as engine:
        return "".join([out.body["choices"][0]["text"] async for out in engine.openai(None)])


def test_switch_loads_in_background_then_retires_the_old_weights():
    async def scenario():
        ws, made = weight_set()
        await ws.start(None)
        ws.want([None, MERGED], {})  # step one: load beside
        assert ws.status() == {"base": "ready", "canary@v1": "loading"}
        assert await answer(ws) == "/ckpt/base"  # the base keeps answering while the merged weights load
        assert await ws.wait(MERGED, 5) == "ready"
        assert made[1].config.enable_lora is False
        ws.want([MERGED], {})  # step two: the base retires, but still answers what was routed to it
        assert ws.status()["base"] == "retiring"
        assert await answer(ws) == "/ckpt/base"
        assert await answer(ws, "canary", "v1") == "/ckpt/merged/v1"
        await asyncio.sleep(1.2)
        assert ws.status() == {"canary@v1": "ready"} and not made[0].running
        with pytest.raises(WeightsNotLoadedError, match="base model 'base' is not loaded"):
            await answer(ws)
        await ws.check_health()

    asyncio.run(scenario())


def test_a_request_for_loading_weights_waits_and_a_failed_load_keeps_the_old_ones():
    async def scenario():
        ws, _ = weight_set(fail={"/ckpt/merged/bad"})
        await ws.start(None)
        ws.want([None, MERGED], {})
        assert await answer(ws, "canary", "v1") == "/ckpt/merged/v1"  # waited for the load, no error
        bad = {"name": "bad", "path": "/ckpt/merged/bad", "version": "b"}
        ws.want([None, bad], {})
        status = await ws.wait(bad, 5)
        assert status.startswith("failed: OSError: cannot read /ckpt/merged/bad")
        with pytest.raises(EngineUnavailableError, match="could not be loaded"):
            await answer(ws, "bad", "b")
        ws.want([None], {})  # the rollback
        await asyncio.sleep(1.2)
        assert ws.status() == {"base": "ready"} and await answer(ws) == "/ckpt/base"

    asyncio.run(scenario())


def test_wanted_again_while_retiring_is_kept():
    async def scenario():
        ws, made = weight_set(grace_s=0.5)
        await ws.start(None)
        ws.want([MERGED], {})
        ws.want([None], {})  # switched back before the base retired, and before the merged weights loaded
        await asyncio.sleep(1.5)
        assert ws.status() == {"base": "ready"}
        assert made[0].running and not made[1].running

    asyncio.run(scenario())


def test_weights_that_cannot_even_be_built_fail_the_load_instead_of_hanging_it():
    async def scenario():
        def make(config: ModelConfig) -> FakeEngine:
            if config.source != "/ckpt/base":
                raise FileNotFoundError(f"{config.source} was deleted")  # as resolve_model_path does
            return FakeEngine(config)

        ws = WeightSet(ModelConfig(name="base", source="/ckpt/base"), make, grace_s=0.3)
        await ws.start(None)
        ws.want([None, MERGED], {})
        assert (await ws.wait(MERGED, 5)).startswith("failed: FileNotFoundError")
        with pytest.raises(EngineUnavailableError, match="could not be loaded"):
            await answer(ws, "canary", "v1")
        assert await answer(ws) == "/ckpt/base"

    asyncio.run(scenario())


def test_health_ignores_weights_being_retired():
    async def scenario():
        ws, made = weight_set(grace_s=5)
        await ws.start(None)
        ws.want([None, MERGED], {})
        assert await ws.wait(MERGED, 5) == "ready"
        ws.want([MERGED], {})  # the base retires (its grace period has not run out yet)
        made[0].running = False  # as if it were shut down while the health check ran
        await ws.check_health()

    asyncio.run(scenario())


def test_a_restarted_engine_replica_starts_on_the_persisted_weights(tmp_path, monkeypatch):
    from deployments.engine_deployment import LLMDeployment
    from deployments.serving_state import MergedEntry, ServingState, save_state

    merged_dir = tmp_path / "merged" / "v2"
    merged_dir.mkdir(parents=True)
    (merged_dir / "config.json").write_text("{}")
    entry = MergedEntry(base="base", path=str(merged_dir), version="v2", task_id="t2", adapter_path="/a")
    save_state(tmp_path, ServingState(default_model="canary", merged={"canary": entry}))
    replica = SimpleNamespace(config=ModelConfig(name="base", source="/ckpt/base"))  # the method alone: no Serve
    first_weights = LLMDeployment.func_or_class._first_weights
    built_with = {"name": "old", "path": "/ckpt/merged/v1", "version": "v1"}
    monkeypatch.setenv("SAGE_HOME", str(tmp_path))
    assert first_weights(replica, built_with) == {"name": "canary", "path": str(merged_dir), "version": "v2"}
    (merged_dir / "config.json").unlink()  # the fine-tune was deleted since: the base, not a crash loop
    assert first_weights(replica, built_with) is None
