"""Sink: print each value to standard output (the terminal, or the gateway's log) and pass it on."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.join_text import as_text


class PrintSinkConfig(OperatorConfig):
    prefix: str = Field(default="", max_length=200, description="Printed before the value.")


class PrintSink(Operator):
    type_name = "print_sink"
    category = "sink"
    label = "Print"
    description = "Prints the value to standard output and passes it on as the pipeline's result."
    Config = PrintSinkConfig
    inputs = {"value": Port(DataType.ANY, description="What to print.")}
    output = DataType.ANY
    cacheable = False

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> Any:
        text = f"{self.config.prefix}{as_text(inputs['value'])}"
        print(text, flush=True)
        ctx.log(f"printed {len(text)} characters")
        return inputs["value"]
