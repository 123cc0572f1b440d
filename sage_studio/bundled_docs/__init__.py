"""The studio's own documentation, shipped inside the package.

It is what the RAG template answers questions about and what the "docs sample" fine-tuning dataset is made from,
so both work offline on a fresh install.
"""

from __future__ import annotations

from pathlib import Path


def docs_dir() -> Path:
    return Path(__file__).parent


def load_docs() -> list[tuple[str, str]]:
    """(file name, markdown text) for every bundled document, in a stable order."""
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(docs_dir().glob("*.md"))]
