"""Evaluator: token F1 of an answer against a reference answer (SQuAD convention)."""

from __future__ import annotations

from typing import Any

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.text_metrics import token_f1


class F1EvaluatorConfig(OperatorConfig):
    pass


class F1Evaluator(Operator):
    type_name = "f1_evaluator"
    category = "evaluator"
    label = "F1"
    description = "Token-level F1 between the prediction and the reference (normalised as in SQuAD)."
    Config = F1EvaluatorConfig
    inputs = {
        "prediction": Port(DataType.TEXT, description="The generated answer."),
        "reference": Port(DataType.TEXT, description="The expected answer."),
    }
    output = DataType.METRIC

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        precision, recall, f1 = token_f1(inputs["prediction"], inputs["reference"])
        return {"name": "f1", "value": round(f1, 6), "precision": round(precision, 6), "recall": round(recall, 6)}
