"""Source: the text the pipeline is run with (or one field of it), or a fixed text."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, RunContext


class TextInputConfig(OperatorConfig):
    field: str = Field(
        default="text",
        min_length=1,
        description="When the run input is a JSON object (a batch row), the key to read, e.g. 'question'.",
    )
    text: str | None = Field(default=None, description="A fixed text; when set, the run input is ignored.")


class TextInput(Operator):
    type_name = "text_input"
    category = "source"
    label = "Text input"
    description = "Emits the run's input text (or one field of a JSON input, as in a batch row), or a fixed text."
    Config = TextInputConfig
    inputs = {}
    output = DataType.TEXT

    @property
    def reads_input(self) -> bool:
        return self.config.text is None

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> str:
        if self.config.text is not None:
            return self.config.text
        value = ctx.pipeline_input
        if value is None:
            raise ValueError("this pipeline needs an input text, but the run was given none")
        if isinstance(value, dict):
            if self.config.field not in value:
                fields = ", ".join(sorted(map(str, value))) or "none"
                raise ValueError(f"the input has no field {self.config.field!r} (its fields: {fields})")
            value = value[self.config.field]
        if value is None:
            raise ValueError(f"the input field {self.config.field!r} is empty")
        return value if isinstance(value, str) else str(value)
