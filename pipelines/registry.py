"""``NodeRegistry``: the operator types a pipeline may use, and the palette the editor shows."""

from __future__ import annotations

from typing import Any

from pipelines.operators import BUILTIN_OPERATORS
from pipelines.operators.base import DataType, Operator, compatible

CATEGORY_ORDER = ("source", "transform", "rag", "join", "llm", "evaluator", "sink")


class NodeRegistry:
    """Maps operator type names to operator classes. Only registered classes can ever run: a pipeline names a
    type, never code, so a pipeline file cannot make the studio execute anything it did not ship."""

    def __init__(self, operators: tuple[type[Operator], ...] | list[type[Operator]] = ()):
        self._operators: dict[str, type[Operator]] = {}
        for op in operators:
            self.register(op)

    def register(self, operator: type[Operator]) -> None:
        """Add an operator class; its type name must be new."""
        for attr in ("type_name", "category", "label", "description"):
            if not getattr(operator, attr, None):
                raise ValueError(f"operator class {operator.__name__} has no {attr}")
        if operator.type_name in self._operators:
            raise ValueError(f"operator type {operator.type_name!r} is already registered")
        self._operators[operator.type_name] = operator

    def get(self, type_name: str) -> type[Operator] | None:
        return self._operators.get(type_name)

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._operators

    def types(self) -> list[str]:
        return sorted(self._operators)

    def describe(self, type_name: str) -> dict[str, Any]:
        """One palette entry: what the UI needs to draw the node and render its config form."""
        op = self._operators[type_name]
        return {
            "type": op.type_name,
            "label": op.label,
            "category": op.category,
            "description": op.description,
            "inputs": [
                {"name": name, "type": port.type.value, "required": port.required, "multiple": port.multiple,
                 "description": port.description, "accepts": accepted_types(port.type)}
                for name, port in op.inputs.items()
            ],
            "output": {"name": "output", "type": op.output.value},
            "config_schema": op.Config.model_json_schema(),
        }

    def palette(self) -> list[dict[str, Any]]:
        """Every operator, grouped by category in palette order."""
        def order(name: str) -> tuple[int, str]:
            category = self._operators[name].category
            rank = CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER)
            return rank, name

        return [self.describe(name) for name in sorted(self._operators, key=order)]


def accepted_types(accepted: DataType) -> list[str]:
    """The output types an input of type ``accepted`` takes, by the builder's own rule (``compatible``): the
    palette carries them so an editor refuses the wires the builder would refuse, without a copy of the rule."""
    return [t.value for t in DataType if compatible(t, accepted)]


def default_registry() -> NodeRegistry:
    """A registry holding every built-in operator."""
    return NodeRegistry(BUILTIN_OPERATORS)
