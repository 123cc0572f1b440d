"""Join: union of several document lists (e.g. a dense and a BM25 retriever), without duplicates."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext


class MergeDocumentsConfig(OperatorConfig):
    top_k: int | None = Field(default=None, ge=1, le=1000, description="Keep only this many (best score first).")


class MergeDocuments(Operator):
    type_name = "merge_documents"
    category = "join"
    label = "Merge documents"
    description = "Joins branches: merges every connected document list, one copy per id, noting which branches found it."
    Config = MergeDocumentsConfig
    inputs = {"documents": Port(DataType.DOCUMENTS, multiple=True, description="Connect two or more document lists.")}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for branch, (source, docs) in enumerate(inputs["documents"]):
            for doc in docs:
                seen = merged.get(doc["id"])
                if seen is None:
                    seen = merged[doc["id"]] = dict(doc, metadata=dict(doc.get("metadata", {}), found_by=[]))
                seen["metadata"]["found_by"].append(source)
                if doc.get("score") is not None and (seen.get("score") is None or doc["score"] > seen["score"]):
                    seen["score"] = doc["score"]
        result = list(merged.values())
        if self.config.top_k is not None:
            result.sort(key=lambda d: d.get("score") or 0.0, reverse=True)
            result = result[: self.config.top_k]
        ctx.log(f"merged {len(inputs['documents'])} branch(es) into {len(result)} unique document(s)")
        return result
