"""RAG: build an index from documents (dense MiniLM or BM25) and return the passages closest to a query."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.embedder import embed_texts

_TOKEN = re.compile(r"\w+", re.UNICODE)
_INDEX_LIMIT = 16
_indexes: OrderedDict[str, Any] = OrderedDict()
_indexes_lock = threading.Lock()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (BM25, overlap scores and the evaluators share this)."""
    return _TOKEN.findall(text.lower())


def _corpus_key(method: str, docs: list[dict[str, Any]]) -> str:
    digest = hashlib.sha1(method.encode())
    for doc in docs:
        digest.update(b"\x00" + str(doc["id"]).encode() + b"\x01" + doc["text"].encode())
    return digest.hexdigest()


def _build_index(method: str, docs: list[dict[str, Any]]) -> Any:
    if method == "bm25":
        from rank_bm25 import BM25Okapi

        return BM25Okapi([tokenize(d["text"]) or [""] for d in docs])
    if all("embedding" in d for d in docs):
        return np.asarray([d["embedding"] for d in docs], dtype=np.float32)
    return embed_texts([d["text"] for d in docs])


def cached_index(method: str, docs: list[dict[str, Any]]) -> Any:
    """The index of a corpus, built once per process: a static corpus is indexed on the first query only."""
    key = _corpus_key(method, docs)
    with _indexes_lock:
        if key in _indexes:
            _indexes.move_to_end(key)
            return _indexes[key]
    index = _build_index(method, docs)
    with _indexes_lock:
        _indexes[key] = index
        while len(_indexes) > _INDEX_LIMIT:
            _indexes.popitem(last=False)
    return index


def score_documents(method: str, docs: list[dict[str, Any]], query: str) -> np.ndarray:
    """One relevance score per document (cosine similarity for dense, BM25 score for bm25)."""
    index = cached_index(method, docs)
    if method == "bm25":
        return np.asarray(index.get_scores(tokenize(query)), dtype=np.float64)
    return index @ embed_texts([query])[0]


class RetrieverConfig(OperatorConfig):
    top_k: int = Field(default=3, ge=1, le=100, description="How many passages to return.")
    method: Literal["dense", "bm25"] = Field(
        default="dense",
        description="'dense': cosine similarity of MiniLM embeddings (reuses an embedder's vectors); 'bm25': keywords.",
    )
    min_score: float | None = Field(default=None, description="Drop passages scoring below this value.")


class Retriever(Operator):
    type_name = "retriever"
    category = "rag"
    label = "Retriever"
    description = "Indexes the documents (dense MiniLM or BM25, cached per corpus) and returns the top_k for the query."
    Config = RetrieverConfig
    inputs = {
        "documents": Port(DataType.DOCUMENTS, description="The corpus to search."),
        "query": Port(DataType.TEXT, description="What to search for."),
    }
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        docs, query = inputs["documents"], inputs["query"]
        if not docs:
            ctx.log("empty corpus: nothing to retrieve")
            return []
        scores = score_documents(self.config.method, docs, query)
        order = np.argsort(-scores, kind="stable")[: self.config.top_k]
        hits = []
        for i in order:
            if self.config.min_score is not None and scores[i] < self.config.min_score:
                continue
            doc = {k: v for k, v in docs[i].items() if k != "embedding"}
            doc["score"] = round(float(scores[i]), 6)
            doc["metadata"] = dict(doc.get("metadata", {}), retriever=self.config.method)
            hits.append(doc)
        ctx.log(f"{self.config.method} search over {len(docs)} passage(s): kept {len(hits)}")
        return hits
