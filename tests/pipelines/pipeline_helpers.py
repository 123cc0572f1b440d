"""Helpers shared by the pipeline tests."""

from __future__ import annotations

from typing import Any

from pipelines import PipelineBuilder, PipelineRunner, VisualPipeline
from pipelines.operators.base import OperatorEnv


def make_pipeline(nodes: list[dict[str, Any]], connections: list[Any], name: str = "test") -> VisualPipeline:
    return VisualPipeline.model_validate({"name": name, "nodes": nodes, "connections": connections})


def run(pipeline: VisualPipeline, env: OperatorEnv, value: Any = None):
    return PipelineRunner(PipelineBuilder(env=env).build(pipeline)).run(value)


def hybrid_rag_pipeline() -> VisualPipeline:
    """A diamond over the bundled docs: one question, a dense and a BM25 retriever, one merge."""
    return make_pipeline(
        [
            {"id": "question", "type": "text_input", "config": {"field": "question"}},
            {"id": "docs", "type": "file_source", "config": {"folder": "docs", "path": "*.md"}},
            {"id": "chunks", "type": "chunker", "config": {"chunk_size": 400, "overlap": 40}},
            {"id": "dense", "type": "retriever", "config": {"top_k": 2, "method": "dense"}},
            {"id": "bm25", "type": "retriever", "config": {"top_k": 2, "method": "bm25"}},
            {"id": "merge", "type": "merge_documents"},
        ],
        [
            ["docs", "chunks"],
            {"source": "chunks", "target": "dense", "target_port": "documents"},
            {"source": "chunks", "target": "bm25", "target_port": "documents"},
            {"source": "question", "target": "dense", "target_port": "query"},
            {"source": "question", "target": "bm25", "target_port": "query"},
            ["dense", "merge"],
            ["bm25", "merge"],
        ],
        name="hybrid retrieval",
    )
