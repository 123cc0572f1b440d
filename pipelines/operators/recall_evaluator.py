"""Evaluator: how much of the reference answer is covered by the prediction or by the retrieved passages."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.join_text import as_text
from pipelines.operators.text_metrics import tokens


class RecallEvaluatorConfig(OperatorConfig):
    pass


class RecallEvaluator(Operator):
    type_name = "recall_evaluator"
    category = "evaluator"
    label = "Recall"
    description = ("Share of the reference's tokens found in the prediction; connect retrieved documents to measure "
                   "context recall of a retriever.")
    Config = RecallEvaluatorConfig
    inputs = {
        "prediction": Port(DataType.ANY, description="A generated text, or retrieved documents."),
        "reference": Port(DataType.TEXT, description="The expected answer."),
    }
    output = DataType.METRIC

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        found = Counter(tokens(as_text(inputs["prediction"])))
        wanted = Counter(tokens(inputs["reference"]))
        total = sum(wanted.values())
        value = sum((found & wanted).values()) / total if total else 1.0
        return {"name": "recall", "value": round(value, 6), "reference_tokens": total}
