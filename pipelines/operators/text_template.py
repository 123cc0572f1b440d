"""Transform: put a text into a fixed template (``$text`` placeholders; no code, no attribute access)."""

from __future__ import annotations

from string import Template
from typing import Any

from pydantic import Field, field_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext


class TextTemplateConfig(OperatorConfig):
    template: str = Field(
        min_length=1,
        max_length=20_000,
        description="Text with '$text' where the input goes (write '$$' for a literal dollar sign).",
    )

    @field_validator("template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        # string.Template only substitutes names; checking them here turns a typo into a config error.
        names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(value)} - {None}
        unknown = names - {"text"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; only $text is available")
        return value


class TextTemplate(Operator):
    type_name = "text_template"
    category = "transform"
    label = "Text template"
    description = "Wraps the input text in a template, e.g. 'Translate to French: $text'."
    Config = TextTemplateConfig
    inputs = {"text": Port(DataType.TEXT, description="The text to insert.")}
    output = DataType.TEXT

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> str:
        return Template(self.config.template).substitute(text=inputs["text"])
