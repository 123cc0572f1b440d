"""Ready-made pipelines shipped as JSON: RAG Q&A over the docs, chat with memory, summarize a file."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.models import VisualPipeline

_DIR = Path(__file__).parent


def template_names() -> list[str]:
    """Names of the shipped templates (file names without '.json')."""
    return sorted(p.stem for p in _DIR.glob("*.json"))


def load_template(name: str) -> VisualPipeline:
    """A fresh, unsaved pipeline from the template ``name``; ``KeyError`` for an unknown name."""
    if name not in template_names():
        raise KeyError(name)
    return VisualPipeline.model_validate(json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8")))


def list_templates() -> list[dict[str, str]]:
    """Name, title and description of every template (what the palette's template menu shows)."""
    out = []
    for name in template_names():
        pipeline = load_template(name)
        out.append({"name": name, "title": pipeline.name, "description": pipeline.description})
    return out
