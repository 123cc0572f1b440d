"""RAG: re-order retrieved passages by their similarity to the query and keep the best."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.embedder import embed_texts
from pipelines.operators.retriever import tokenize


class RerankerConfig(OperatorConfig):
    top_k: int = Field(default=3, ge=1, le=100, description="How many passages to keep after re-ranking.")
    method: Literal["embedding", "overlap"] = Field(
        default="embedding",
        description="'embedding': MiniLM cosine similarity of query and passage; 'overlap': share of query words "
        "found in the passage.",
    )


class Reranker(Operator):
    type_name = "reranker"
    category = "rag"
    label = "Reranker"
    description = "Scores each candidate passage against the query again and keeps the top_k best."
    Config = RerankerConfig
    inputs = {
        "documents": Port(DataType.DOCUMENTS, description="Candidate passages (e.g. from retrievers)."),
        "query": Port(DataType.TEXT, description="The query they answer."),
    }
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        docs, query = inputs["documents"], inputs["query"]
        if not docs:
            return []
        if self.config.method == "embedding":
            vectors = embed_texts([d["text"] for d in docs])
            scores = vectors @ embed_texts([query])[0]
        else:
            wanted = set(tokenize(query))
            scores = np.asarray(
                [len(wanted & set(tokenize(d["text"]))) / max(len(wanted), 1) for d in docs], dtype=np.float64
            )
        order = np.argsort(-scores, kind="stable")[: self.config.top_k]
        ranked = []
        for i in order:
            doc = {k: v for k, v in docs[i].items() if k != "embedding"}
            doc["metadata"] = dict(doc.get("metadata", {}), first_stage_score=doc.get("score"))
            doc["score"] = round(float(scores[i]), 6)
            ranked.append(doc)
        ctx.log(f"re-ranked {len(docs)} passage(s) by {self.config.method}, kept {len(ranked)}")
        return ranked
