"""``vdb``: dense recall of older dialogs with the packaged MiniLM embedder and an HNSW index (hnswlib)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from sage_studio.memory.base import IndexedBackend
from sage_studio.memory.config import MemoryConfig
from sage_studio.memory.embeddings import Embedder, VectorCache, get_embedder
from sage_studio.sessions.models import Dialog, RecalledDialog

_SIDES = ("user turn", "reply")


def _labels(dialog: Dialog) -> tuple[int, int]:
    # Each dialog is embedded twice, its user turn and its reply, so a fact stated in either is found even when
    # the other half is long or off-topic (message ids are unique, so 2*key and 2*key+1 never collide).
    return 2 * dialog.key, 2 * dialog.key + 1


@dataclass
class VectorIndex:
    """One session's HNSW index (cosine space) and the vectors it holds, by label."""

    hnsw: hnswlib.Index
    vectors: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.vectors)


class VdbMemory(IndexedBackend[VectorIndex]):
    """Finds older dialogs whose user turn or reply is semantically close to the new question."""

    name = "vdb"

    # HNSW build parameters: small graphs, recall close to exact search at this size.
    M = 16
    EF_CONSTRUCTION = 100

    def __init__(self, config: MemoryConfig, data_dir: Path) -> None:
        super().__init__(config)
        self.vector_cache = VectorCache(data_dir / "vectors.db")
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.config.embedding_model)
        return self._embedder

    def warm_up(self) -> None:
        self.embedder.encode(["warm up"])

    def _vectors_for(self, session_id: str, dialogs: list[Dialog]) -> dict[int, np.ndarray]:
        texts = {label: text for d in dialogs for label, text in zip(_labels(d), (d.user, d.assistant))}
        model = self.config.embedding_model
        found = self.vector_cache.load(session_id, model, texts)
        missing = [label for label in texts if label not in found]
        if missing:
            vectors = self.embedder.encode([texts[label] for label in missing])
            new = dict(zip(missing, vectors))
            self.vector_cache.save(session_id, model, {label: (texts[label], new[label]) for label in missing})
            found.update(new)
        return found

    def build(self, session_id: str, dialogs: list[Dialog]) -> VectorIndex:
        index = hnswlib.Index(space="cosine", dim=self.embedder.dim)
        index.init_index(max_elements=max(64, 4 * len(dialogs)), ef_construction=self.EF_CONSTRUCTION, M=self.M)
        result = VectorIndex(hnsw=index)
        return self.extend(session_id, result, dialogs, dialogs)

    def extend(self, session_id: str, index: VectorIndex, all_dialogs: list[Dialog], new: list[Dialog]) -> VectorIndex:
        vectors = self._vectors_for(session_id, new)
        if not vectors:
            return index
        needed = index.size + len(vectors)
        if needed > index.hnsw.get_max_elements():
            index.hnsw.resize_index(max(needed, 2 * index.hnsw.get_max_elements()))
        labels = np.fromiter(vectors, dtype=np.int64)
        index.hnsw.add_items(np.stack([vectors[int(label)] for label in labels]), labels)
        index.vectors.update(vectors)
        return index

    def retrieve(self, index: VectorIndex, candidates: list[Dialog], query: str) -> list[RecalledDialog]:
        by_label = {label: (d, side) for d in candidates for side, label in enumerate(_labels(d))}
        allowed = [label for label in by_label if label in index.vectors]
        if not allowed:
            return []
        q = self.embedder.encode([query])
        k = min(len(allowed), 4 * self.config.top_k)
        index.hnsw.set_ef(max(64, 2 * k))
        allowed_set = set(allowed)
        try:
            found, distances = index.hnsw.knn_query(q, k=k, filter=lambda label: label in allowed_set)
            hits = zip(found[0].tolist(), (1.0 - distances[0]).tolist())
        except RuntimeError:
            # HNSW may return fewer than k neighbours under a tight filter: fall back to exact search.
            matrix = np.stack([index.vectors[label] for label in allowed])
            hits = zip(allowed, (matrix @ q[0]).tolist())
        best: dict[int, RecalledDialog] = {}
        for label, score in hits:
            dialog, side = by_label[label]
            if score < self.config.min_score:
                continue
            current = best.get(dialog.key)
            if current is None or score > (current.score or 0.0):
                best[dialog.key] = RecalledDialog(
                    dialog=dialog.index,
                    user=dialog.user,
                    assistant=dialog.assistant,
                    score=round(float(score), 4),
                    reason=f"cosine similarity {score:.2f} with its {_SIDES[side]}",
                )
        return sorted(best.values(), key=lambda r: r.score or 0.0, reverse=True)[: self.config.top_k]

    def describe(self, index: VectorIndex) -> dict[str, Any]:
        return {
            "type": "hnswlib",
            "space": "cosine",
            "dim": index.hnsw.dim,
            "vectors": index.size,
            "capacity": index.hnsw.get_max_elements(),
            "embedding_model": self.config.embedding_model,
        }

    def forget(self, session_id: str) -> None:
        super().forget(session_id)
        self.vector_cache.delete_session(session_id)

    def index_info(self, session_id: str) -> dict[str, Any] | None:
        info = super().index_info(session_id) or {}
        info["collection"] = f"session-{session_id}"
        info["persisted_vectors"] = self.vector_cache.count(session_id)
        return info
