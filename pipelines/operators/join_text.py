"""Join: concatenate the values of several branches into one text."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext


def as_text(value: Any) -> str:
    """A readable text for any port value: documents give their texts, metrics 'name=value'."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, dict) and "text" in v for v in value):
        return "\n\n".join(v["text"] for v in value)
    if isinstance(value, list) and all(isinstance(v, dict) and "content" in v for v in value):
        return "\n".join(f"{v.get('role', 'user')}: {v['content']}" for v in value)
    if isinstance(value, dict) and {"name", "value"} <= value.keys():
        return f"{value['name']}={value['value']}"
    return json.dumps(value, ensure_ascii=False, default=str)


class JoinTextConfig(OperatorConfig):
    separator: str = Field(default="\n", max_length=100, description="Put between the joined values.")
    label_branches: bool = Field(default=False, description="Prefix each value with the id of the node it came from.")


class JoinText(Operator):
    type_name = "join_text"
    category = "join"
    label = "Join text"
    description = "Joins branches: waits for every connected input and concatenates them, in connection order."
    Config = JoinTextConfig
    inputs = {"texts": Port(DataType.ANY, multiple=True, description="Connect two or more branches.")}
    output = DataType.TEXT

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> str:
        parts = [
            f"{source}: {as_text(value)}" if self.config.label_branches else as_text(value)
            for source, value in inputs["texts"]
        ]
        ctx.log(f"joined {len(parts)} branch(es)")
        return self.config.separator.join(parts)
