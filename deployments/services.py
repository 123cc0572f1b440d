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
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from deployments.config import StudioConfig
from deployments.model_router import ModelRouter
from deployments.model_switch import ModelSwitch
from pipelines.service import PipelineService
from sage_studio.memory import ChatMemory, open_chat_memory
from train.datasets import DatasetService
from train.jobs import JobManager
from train.store import FinetuneStore

logger = logging.getLogger("ray.serve")

# Which services each router area needs (deployments/routers/<area>.py).
AREA_SERVICES = {
    "sessions": {"memory"}, "memory": {"memory"}, "openai": set(), "system": set(),
    "finetune": {"finetune"}, "datasets": {"finetune"}, "models": {"finetune", "switch"}, "pipelines": {"pipelines"},
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
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def sage_home(self) -> Path:
        return Path(self.config.sage_home).expanduser()

    async def open(self, areas: list[str]) -> None:
        """Open what the router areas need (``create_api``'s lifespan calls this once)."""
        needs = set().union(*(AREA_SERVICES.get(area, set()) for area in areas))
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
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.stop)
            self.jobs = None
        if self.memory is not None:
            self.memory.close()
            self.memory = None


def get_services(request: Request) -> StudioServices:
    return request.app.state.services


def _missing(what: str, services: StudioServices, key: str, default: str) -> HTTPException:
    why = services.unavailable.get(key, default)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"{what} is unavailable: {why}.")


def get_model_router(request: Request) -> ModelRouter:
    services = get_services(request)
    if services.model_router is None:
        raise _missing("Chat", services, "model_router", "this gateway serves no models")
    return services.model_router


def get_memory(request: Request) -> ChatMemory:
    services = get_services(request)
    if services.memory is None:
        raise _missing("The session store", services, "memory", "it is not started")
    return services.memory


def get_finetune_store(request: Request) -> FinetuneStore:
    services = get_services(request)
    if services.finetune_store is None:
        raise _missing("The fine-tune store", services, "finetune", "it is not started")
    return services.finetune_store


def get_datasets(request: Request) -> DatasetService:
    services = get_services(request)
    if services.datasets is None:
        raise _missing("The dataset store", services, "finetune", "it is not started")
    return services.datasets


def get_jobs(request: Request) -> JobManager:
    services = get_services(request)
    if services.jobs is None:
        raise _missing("Fine-tuning", services, "jobs", "it is not started")
    return services.jobs


def get_pipelines(request: Request) -> PipelineService:
    services = get_services(request)
    if services.pipelines is None:
        raise _missing("Pipelines", services, "pipelines", "they are not started")
    return services.pipelines


def get_switch(request: Request) -> ModelSwitch:
    services = get_services(request)
    if services.switch is None:
        raise _missing("Model switching", services, "switch", "this gateway is not running inside Ray Serve")
    return services.switch


Services = Annotated[StudioServices, Depends(get_services)]
Models = Annotated[ModelRouter, Depends(get_model_router)]
Memory = Annotated[ChatMemory, Depends(get_memory)]
Store = Annotated[FinetuneStore, Depends(get_finetune_store)]
Datasets = Annotated[DatasetService, Depends(get_datasets)]
Jobs = Annotated[JobManager, Depends(get_jobs)]
Pipelines = Annotated[PipelineService, Depends(get_pipelines)]
Switch = Annotated[ModelSwitch, Depends(get_switch)]
