"""Which model the studio chats with, and which fine-tuned adapters it serves: persisted so a restart keeps the choice.

The file (``SAGE_HOME/studio/serving.json``) is read by ``build_app`` at every (re)build and written by the hot-swap
routes. At run time the same state travels to the replicas as Serve ``user_config`` so a change is applied in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field


class AdapterEntry(BaseModel):
    """A LoRA adapter served on a base model."""

    base: str = Field(description="Name of the served base model the adapter applies to.")
    path: str = Field(description="Folder of the PEFT adapter.")
    version: str = Field(description="Fingerprint of the adapter weights; a new version is loaded afresh.")
    task_id: str | None = Field(None, description="The fine-tune task that produced it.")


class ServingState(BaseModel):
    default_model: str | None = Field(None, description="What 'sage-default' means (a base or adapter name).")
    adapters: dict[str, AdapterEntry] = Field(default_factory=dict, description="Served adapter name → adapter.")

    def engine_user_config(self, base: str) -> dict:
        return {"adapters": {n: a.path for n, a in sorted(self.adapters.items()) if a.base == base}}

    def gateway_user_config(self) -> dict:
        return self.model_dump()


def state_file(sage_home: str | Path) -> Path:
    return Path(sage_home) / "studio" / "serving.json"


def load_state(sage_home: str | Path) -> ServingState:
    path = state_file(sage_home)
    if not path.is_file():
        return ServingState()
    return ServingState.model_validate_json(path.read_text())


def save_state(sage_home: str | Path, state: ServingState) -> None:
    """Atomic write: a crash mid-write leaves the previous choice, never half a file."""
    path = state_file(sage_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".serving-")
    with os.fdopen(fd, "w") as fh:
        json.dump(state.model_dump(), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
