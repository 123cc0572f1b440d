"""Which model the studio chats with, and which fine-tuned adapters it serves: persisted so a restart keeps the choice.

The file (``SAGE_HOME/studio/serving.json``) is read by ``build_app`` at every (re)build and written by the hot-swap
routes. At run time the same state travels to the replicas as Serve ``user_config`` so a change is applied in place.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from sage_studio.files import atomic_write


class AdapterEntry(BaseModel):
    """A LoRA adapter served on a base model."""

    base: str = Field(description="Name of the served base model the adapter applies to.")
    path: str = Field(description="Folder of the PEFT adapter.")
    version: str = Field(description="Fingerprint of the adapter weights; a new version is loaded afresh.")
    task_id: str | None = Field(None, description="The fine-tune task that produced it.")

    @property
    def on_disk(self) -> bool:
        """Its folder still holds it (deleting a fine-tune leaves its entry behind)."""
        return (Path(self.path) / "adapter_config.json").is_file()


class MergedEntry(AdapterEntry):
    """A fine-tune merged into its base model's weights: the base's engine serves it instead of the base.

    ``base`` is the model whose engine holds the merged weights, ``path`` the merged checkpoint, ``version`` the
    fingerprint of the adapter and base it was merged from."""

    adapter_path: str | None = Field(None, description="The PEFT adapter it was merged from.")

    @property
    def on_disk(self) -> bool:
        return (Path(self.path) / "config.json").is_file()

    def weights(self, name: str) -> dict:
        return {"name": name, "path": self.path, "version": self.version}


class ServingState(BaseModel):
    default_model: str | None = Field(None, description="What 'sage-default' means (a base, adapter or merged name).")
    adapters: dict[str, AdapterEntry] = Field(default_factory=dict, description="Served adapter name → adapter.")
    merged: dict[str, MergedEntry] = Field(
        default_factory=dict, description="Served merged fine-tunes, name → checkpoint; at most one per base model."
    )

    def merged_on(self, base: str) -> str | None:
        """The merged fine-tune that holds this base model's engine (None: the engine serves the base)."""
        return next((name for name, m in sorted(self.merged.items()) if m.base == base), None)

    def engine_weights(self, base: str) -> dict | None:
        name = self.merged_on(base)
        return None if name is None else self.merged[name].weights(name)

    def engine_user_config(self, base: str, also: list[dict | None] = ()) -> dict:
        """``also``: weights to keep (or start) loading beside the chosen ones, while a switch is under way."""
        config: dict = {"adapters": {n: a.path for n, a in sorted(self.adapters.items()) if a.base == base}}
        weights = [self.engine_weights(base), *(w for w in also if w != self.engine_weights(base))]
        if weights != [None]:
            config["weights"] = weights
        return config

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
    atomic_write(state_file(sage_home), json.dumps(state.model_dump(), indent=2))
