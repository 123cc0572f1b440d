"""Operator config forms from their JSON schemas (``GET /api/operators``): which widget each field gets, and how a
form value becomes a config value. Pure functions: the Pipelines tab renders the widgets with ``gr.render``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ui import strings

# Long free-text fields get a multi-line box.
_LONG_TEXT = {"template", "user_template", "system_prompt", "content", "data", "text"}


@dataclass
class FieldSpec:
    """One form field: its name, the widget kind (text, textarea, number, integer, checkbox, choice, json)."""

    name: str
    kind: str
    label: str
    description: str = ""
    required: bool = False
    nullable: bool = False
    default: Any = None
    choices: list[Any] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` into ``$defs`` (pydantic puts enums there)."""
    ref = prop.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return {**schema.get("$defs", {}).get(ref.split("/")[-1], {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def fields(schema: dict[str, Any]) -> list[FieldSpec]:
    """The form fields of an operator config schema, in schema order."""
    required = set(schema.get("required", []))
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = _resolve(schema, prop)
        nullable = False
        options = prop.get("anyOf") or prop.get("oneOf")
        if options:
            kinds = [_resolve(schema, o) for o in options]
            nullable = any(k.get("type") == "null" for k in kinds)
            concrete = [k for k in kinds if k.get("type") != "null"]
            prop = {**(concrete[0] if len(concrete) == 1 else {"type": "json"}), **{
                k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")}}
        typ = prop.get("type")
        if "enum" in prop:
            kind = "choice"
        elif typ == "boolean":
            kind = "checkbox"
        elif typ == "integer":
            kind = "integer"
        elif typ == "number":
            kind = "number"
        elif typ == "string":
            kind = "textarea" if name in _LONG_TEXT or (prop.get("maxLength") or 0) > 2000 else "text"
        else:
            kind = "json"
        out.append(FieldSpec(
            name=name, kind=kind, label=prop.get("title") or name.replace("_", " ").capitalize(),
            description=prop.get("description", ""), required=name in required, nullable=nullable,
            default=prop.get("default"), choices=list(prop.get("enum", [])),
            minimum=prop.get("minimum"), maximum=prop.get("maximum"),
        ))
    return out


def initial_value(spec: FieldSpec, config: dict[str, Any]) -> Any:
    """What the widget shows: the node's value, else the schema default."""
    value = config.get(spec.name, spec.default)
    if spec.kind in ("text", "textarea"):
        return "" if value is None else str(value)
    if spec.kind == "json":
        import json

        return "" if value is None else json.dumps(value)
    return value


def to_config(specs: list[FieldSpec], values: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """Form values → the node's config (only fields that differ from the default are kept) and the problems found.

    An empty optional field means "not set" (the operator's default applies); numbers are checked against the
    schema's bounds here so the user hears about them before a run."""
    import json

    config: dict[str, Any] = {}
    problems = []
    for spec, value in zip(specs, values, strict=True):
        if value is None or (isinstance(value, str) and value.strip() == "" and spec.kind != "checkbox"):
            if spec.required:
                problems.append(strings.PL_FIELD_REQUIRED.format(field=spec.label))
            continue
        if spec.kind == "integer":
            if float(value) != int(float(value)):
                problems.append(strings.PL_FIELD_WHOLE.format(field=spec.label))
                continue
            value = int(float(value))
        elif spec.kind == "number":
            value = float(value)
        elif spec.kind == "json":
            try:
                value = json.loads(value)
            except ValueError:
                problems.append(strings.PL_FIELD_JSON.format(field=spec.label))
                continue
        if spec.kind in ("integer", "number"):
            if spec.minimum is not None and value < spec.minimum:
                problems.append(strings.PL_FIELD_MIN.format(field=spec.label, minimum=spec.minimum))
                continue
            if spec.maximum is not None and value > spec.maximum:
                problems.append(strings.PL_FIELD_MAX.format(field=spec.label, maximum=spec.maximum))
                continue
        if value != spec.default:
            config[spec.name] = value
    return config, problems
