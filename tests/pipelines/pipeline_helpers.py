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


TEXT = {"id": "q", "type": "text_input"}
UPPER = {"id": "t", "type": "text_template", "config": {"template": "Q: $text"}}

# Validation case → (pipeline, a fragment its error message must contain).
VALIDATION_CASES = {
    "empty_pipeline": (make_pipeline([], []), "has no nodes"),
    "unknown_type": (make_pipeline([TEXT, {"id": "x", "type": "python_exec"}], []), "Node 'x' has unknown type 'python_exec'"),
    "dangling_connection": (make_pipeline([TEXT, UPPER], [["q", "t"], ["t", "ghost"]]), "target node 'ghost', which does not exist"),
    "duplicate_node": (make_pipeline([TEXT, dict(TEXT)], []), "Two nodes share the id 'q'"),
    "duplicate_connection": (
        make_pipeline([TEXT, {"id": "j", "type": "join_text"}], [["q", "j"], ["q", "j"]]),
        "Connection 'q.output → j' appears twice",
    ),
    "cycle": (
        make_pipeline(
            [TEXT, UPPER, {"id": "u", "type": "text_template", "config": {"template": "$text!"}},
             {"id": "j", "type": "join_text"}],
            [["q", "j"], ["u", "j"], {"source": "j", "target": "t"}, ["t", "u"]],
        ),
        "cycle (",
    ),
    "invalid_config": (
        make_pipeline([TEXT, {"id": "ret", "type": "retriever", "config": {"top_k": "many"}},
                       {"id": "d", "type": "json_source", "config": {"data": "[]"}}],
                      [{"source": "d", "target": "ret", "target_port": "documents"},
                       {"source": "q", "target": "ret", "target_port": "query"}]),
        "Node 'ret' (retriever) has an invalid config: 'top_k': Input should be a valid integer",
    ),
    "incompatible_ports": (
        make_pipeline([TEXT, {"id": "g", "type": "generator"}], [{"source": "q", "target": "g", "target_port": "prompt"}]),
        "node 'q' produces text but input 'prompt' of node 'g' expects messages",
    ),
    "missing_input": (make_pipeline([TEXT, {"id": "c", "type": "chunker"}], []), "Input 'documents' of node 'c'"),
    "unknown_port": (
        make_pipeline([TEXT, {"id": "r", "type": "retriever"}], [{"source": "q", "target": "r", "target_port": "nope"}]),
        "node 'r' (retriever) has no input 'nope'",
    ),
}
