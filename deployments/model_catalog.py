"""Every model the studio could serve or fine-tune from this machine, with its size on disk: models prepared under
``SAGE_HOME/models``, models in the Hugging Face cache, and completed fine-tunes. ``sage models list`` and
``GET /api/models/available`` (the UI's model pickers) show the same list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from sage_studio import hub
from sage_studio.model_store import folder_size, prepared_models
from train.store import FinetuneStore
from train.task_folder import adapter_dir


class AvailableModel(BaseModel):
    name: str = Field(description="What to pass as 'model' (a prepared name, a hub id, a fine-tune's task id).")
    kind: Literal["prepared", "cached", "finetune"] = Field(
        description="prepared: under SAGE_HOME/models; cached: in the Hugging Face cache; finetune: a LoRA adapter.")
    path: str = Field(description="Checkpoint folder, GGUF file or adapter folder.")
    size_bytes: int = Field(description="Bytes on disk.")
    base: str | None = Field(None, description="The base model a fine-tune was trained on.")
    label: str | None = Field(None, description="A fine-tune's display name.")


def _cached() -> list[AvailableModel]:
    out = []
    for model in hub.cached_models():
        name = model.repo_id if model.revision == "main" else f"{model.repo_id}@{model.revision}"
        if (model.path / "config.json").is_file():
            out.append(AvailableModel(name=name, kind="cached", path=str(model.path), size_bytes=model.size_bytes))
        for gguf in model.gguf_files:
            file = model.path / gguf
            out.append(AvailableModel(name=f"{name}:{gguf}", kind="cached", path=str(file),
                                      size_bytes=file.stat().st_size))
    return out


def available_models(store: FinetuneStore | None) -> list[AvailableModel]:
    """Prepared models, then cached hub models, then completed fine-tunes whose adapter is still on disk."""
    out = [AvailableModel(name=m.name, kind="prepared", path=str(m.path), size_bytes=m.size_bytes)
           for m in prepared_models()]
    out += _cached()
    for task in store.list_tasks(("completed",)) if store is not None else []:
        adapter = adapter_dir(store.task_dir(task.id))
        if adapter.is_dir():
            out.append(AvailableModel(name=task.id, kind="finetune", path=str(adapter), size_bytes=folder_size(adapter),
                                      base=task.config.get("model"), label=task.name))
    return out
