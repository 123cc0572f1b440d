"""Evaluator: is the answer right — exact match, or the reference contained in the answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from pipelines.operators.text_metrics import normalize


class AccuracyEvaluatorConfig(OperatorConfig):
    mode: Literal["exact", "contains"] = Field(
        default="contains",
        description="'exact': normalised texts are equal; 'contains': the normalised reference appears in the answer.",
    )


class AccuracyEvaluator(Operator):
    type_name = "accuracy_evaluator"
    category = "evaluator"
    label = "Accuracy"
    description = "1.0 when the prediction matches the reference (exact or contains, after normalisation), else 0.0."
    Config = AccuracyEvaluatorConfig
    inputs = {
        "prediction": Port(DataType.TEXT, description="The generated answer."),
        "reference": Port(DataType.TEXT, description="The expected answer."),
    }
    output = DataType.METRIC

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        pred, ref = normalize(inputs["prediction"]), normalize(inputs["reference"])
        # Padding with spaces matches whole words only: "paris" is not found in "parisian".
        correct = pred == ref if self.config.mode == "exact" else f" {ref} " in f" {pred} "
        return {"name": "accuracy", "value": 1.0 if correct else 0.0, "mode": self.config.mode}
