"""Transform: split documents into passages that fit a retriever and a small model's context."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext, once_per_process


class ChunkerConfig(OperatorConfig):
    chunk_size: int = Field(default=600, ge=50, le=20_000, description="Largest chunk, in characters.")
    overlap: int = Field(default=80, ge=0, le=5_000, description="Characters repeated between neighbouring chunks.")
    mode: Literal["markdown", "text"] = Field(
        default="markdown",
        description="'markdown' splits at headings, paragraphs and list items first; 'text' at paragraphs/sentences.",
    )

    @model_validator(mode="after")
    def _overlap_smaller(self) -> "ChunkerConfig":
        if self.overlap >= self.chunk_size:
            raise ValueError("overlap must be smaller than chunk_size")
        return self


def _splitter(mode: str, size: int, overlap: int):
    # semantic-text-splitter (Rust) splits at the largest semantic unit that fits, which keeps a heading with its
    # paragraph far better than fixed windows, and it is fast enough to chunk on every run.
    from semantic_text_splitter import MarkdownSplitter, TextSplitter

    cls = MarkdownSplitter if mode == "markdown" else TextSplitter
    return once_per_process(f"splitter:{mode}:{size}:{overlap}", lambda: cls(size, overlap=overlap))


class Chunker(Operator):
    type_name = "chunker"
    category = "transform"
    label = "Chunker"
    description = "Splits each document into passages of at most chunk_size characters, keeping its metadata."
    Config = ChunkerConfig
    inputs = {"documents": Port(DataType.DOCUMENTS, description="Documents to split.")}
    output = DataType.DOCUMENTS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
        splitter = _splitter(self.config.mode, self.config.chunk_size, self.config.overlap)
        chunks = []
        for doc in inputs["documents"]:
            for index, piece in enumerate(splitter.chunks(doc["text"])):
                metadata = dict(doc.get("metadata", {}), parent=doc["id"], chunk=index)
                chunks.append({"id": f"{doc['id']}#{index}", "text": piece, "metadata": metadata})
        ctx.log(f"{len(inputs['documents'])} document(s) → {len(chunks)} chunk(s)")
        return chunks
