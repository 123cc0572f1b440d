"""The services the gateway's routers work on, opened once per app and handed to routes as FastAPI dependencies.

``create_api`` puts one ``StudioServices`` on the app; its lifespan opens what the areas need and closes it again.
A route declares what it uses with one of the ``Annotated`` types below (``memory: Memory``): every dependency is
typed, one place says how it is opened, and a service that could not start answers a clear 503.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

from deployments.config import StudioConfig
from deployments.metrics import MetricsPage, StudioMetrics
from deployments.model_router import ModelRouter
from deployments.model_switch import ModelSwitch
from deployments.request_context import RequestIdFilter
from pipelines.service import PipelineService
from sage_studio.memory import ChatMemory, open_chat_memory
from sage_studio.operations import OperationRunner, OperationStore
from sage_studio.usage import UsageLedger
from train.datasets import DatasetService
from train.jobs import JobManager
from train.store import FinetuneStore

logger = logging.getLogger("ray.serve")

# Which services each router area needs (deployments/routers/<area>.py).
AREA_SERVICES = {
    "sessions": {"memory"}, "memory": {"memory"}, "openai": set(), "system": set(),
    "finetune": {"finetune"}, "datasets": {"finetune"}, "models": {"finetune", "switch"}, "pipelines": {"pipelines"},
    "catalog": {"finetune"}, "feedback": {"memory", "finetune"},
}


@dataclass
class StudioServices:
    """Everything routes share; a field is None when its area is not served or its service could not start
    (``unavailable`` then says why)."""

    config: StudioConfig
    model_router: ModelRouter | None = None
    memory: ChatMemory | None = None
    finetune_store: FinetuneStore | None = None
    datasets: DatasetService | None = None
    jobs: JobManager | None = None
    pipelines: PipelineService | None = None
    switch: ModelSwitch | None = None
    metrics: StudioMetrics = field(default_factory=StudioMetrics)
    metrics_page: MetricsPage | None = None
    usage: UsageLedger | None = None
    operations: OperationRunner | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def sage_home(self) -> Path:
        return Path(self.config.sage_home).expanduser()

    async def open(self, areas: list[str]) -> None:
        """Open what the router areas need (``create_api``'s lifespan calls this once)."""
        needs = set().union(*(AREA_SERVICES.get(area, set()) for area in areas))
        # Every area may account tokens, start an operation or be measured: these are cheap and always open.
        self.metrics_page = MetricsPage(self.metrics)
        studio_dir = self.sage_home / "studio"
        self.usage = await asyncio.to_thread(UsageLedger, studio_dir / "usage.db")
        self.operations = OperationRunner(await asyncio.to_thread(OperationStore, studio_dir / "operations.db"))
        if not any(isinstance(f, RequestIdFilter) for f in logger.filters):
            logger.addFilter(RequestIdFilter())
        if "memory" in needs:
            self.memory = await asyncio.to_thread(open_chat_memory, self.sage_home, self.config.memory)
        if "finetune" in needs:
            self.finetune_store = FinetuneStore(self.sage_home)
            self.datasets = DatasetService(self.finetune_store)
            try:
                self.jobs = await asyncio.to_thread(lambda: JobManager(self.finetune_store).start())
            except Exception as exc:  # noqa: BLE001 - the rest of the studio works without training
                logger.warning("fine-tune manager not started: %s", exc)
                self.unavailable["jobs"] = str(exc)
        if "pipelines" in needs:
            self.pipelines = PipelineService.open(self.sage_home)
        if "switch" in needs and self.model_router is not None:
            try:
                self.switch = ModelSwitch.in_replica(self.model_router, self.finetune_store)
            except RuntimeError as exc:
                self.unavailable["switch"] = str(exc)

    async def close(self) -> None:
        if self.metrics_page is not None:
            await self.metrics_page.close()
        for ledger in (self.usage, self.operations.store if self.operations else None):
            if ledger is not None:
                ledger.close()
        self.usage = self.operations = None
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.stop)
            self.jobs = None
        if self.memory is not None:
            self.memory.close()
            self.memory = None


def get_services(request: Request) -> StudioServices:
    return request.app.state.services


def _required(field: str, what: str, why_missing: str, key: str | None = None) -> Callable[[Request], Any]:
    """A dependency that hands a route ``services.<field>``, or answers 503 saying why it is not there."""

    def dependency(request: Request) -> Any:
        services = get_services(request)
        value = getattr(services, field)
        if value is None:
            why = services.unavailable.get(key or field, why_missing)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"{what} is unavailable: {why}.")
        return value

    dependency.__name__ = f"get_{field}"
    return dependency


get_pipelines = _required("pipelines", "Pipelines", "they are not started")

Services = Annotated[StudioServices, Depends(get_services)]
Models = Annotated[ModelRouter, Depends(_required("model_router", "Chat", "this gateway serves no models"))]
Memory = Annotated[ChatMemory, Depends(_required("memory", "The session store", "it is not started"))]
Store = Annotated[FinetuneStore, Depends(_required("finetune_store", "The fine-tune store", "it is not started",
                                                   "finetune"))]
Datasets = Annotated[DatasetService, Depends(_required("datasets", "The dataset store", "it is not started",
                                                       "finetune"))]
Jobs = Annotated[JobManager, Depends(_required("jobs", "Fine-tuning", "it is not started"))]
Pipelines = Annotated[PipelineService, Depends(get_pipelines)]
Usage = Annotated[UsageLedger, Depends(_required("usage", "Token accounting", "it is not started"))]
Operations = Annotated[OperationRunner, Depends(_required("operations", "Operations", "they are not started"))]
Switch = Annotated[ModelSwitch, Depends(_required("switch", "Model switching",
                                                  "this gateway is not running inside Ray Serve"))]
