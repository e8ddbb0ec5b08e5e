"""The API models walked beside their CRD schema, for the reference pages.

:func:`model_docs` lists every model reachable from a kind's model (by default
AgentPolicy's) with its fields: the wire name, the type, the default, the validation the
CRD schema (:func:`~agentmedic.api.crd.crd_manifest`) enforces and the description (the attribute
docstring, the text ``kubectl explain`` shows). :func:`admission_rules` collects the CEL
rules of the schema. Pure: no I/O.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo

from agentmedic.api.crd import crd_kind, crd_manifest
from agentmedic.api.durations import DURATION_PATTERN, DurationBounds, format_duration

__all__ = ["FieldDoc", "ModelDoc", "admission_rules", "model_docs"]


@dataclass(frozen=True)
class FieldDoc:
    """One field of one model, as the reference shows it."""

    name: str
    """The wire name (camelCase alias)."""
    type: str
    """Markdown: ``string``, ``duration``, ``list of [Condition](#condition)``."""
    required: bool
    default: str | None
    """Markdown (a code span), or None when there is no default to state."""
    validation: tuple[str, ...]
    """Markdown fragments: ``> 0``, ``one of `a`, `b```, ``pattern `...```."""
    description: str


@dataclass
class ModelDoc:
    """One model: where it appears, its fields, its example and its admission rules."""

    model: type[BaseModel]
    paths: list[str]
    """Every path at which the model appears; the first is where it is documented."""
    fields: list[FieldDoc] = field(default_factory=list)
    rules: list[dict[str, str]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return _anchor(self.model)


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _root_schema(kind: str = "AgentPolicy") -> dict[str, Any]:
    manifest = crd_manifest(kind)
    schema: dict[str, Any] = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def model_docs(
    kind: str = "AgentPolicy",
    *,
    into: dict[type[BaseModel], ModelDoc] | None = None,
    skip: frozenset[type[BaseModel]] = frozenset(),
) -> list[ModelDoc]:
    """Every model reachable from ``kind``'s model, depth first, spec before status.

    ``into`` collects several kinds' models in one walk (a model shared by two kinds is
    documented once, where it is met first); models in ``skip`` are neither documented
    nor walked into (a page links them to where they are documented)."""
    docs: dict[type[BaseModel], ModelDoc] = {} if into is None else into
    _walk(crd_kind(kind).model, "", _root_schema(kind), docs, skip)
    return list(docs.values())


def _walk(
    model: type[BaseModel],
    path: str,
    node: Mapping[str, Any],
    docs: dict[type[BaseModel], ModelDoc],
    skip: frozenset[type[BaseModel]] = frozenset(),
) -> None:
    if model in skip:
        return
    if model in docs:
        docs[model].paths.append(path)
        return
    doc = ModelDoc(model, [path], rules=list(node.get("x-kubernetes-validations", [])))
    docs[model] = doc
    required = set(node.get("required", []))
    properties: Mapping[str, Any] = node.get("properties", {})
    nested: list[tuple[type[BaseModel], str, Mapping[str, Any]]] = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        prop: Mapping[str, Any] = properties.get(wire, {})
        if not path and wire == "metadata":
            prop = {"type": "object"}
        doc.fields.append(_field_doc(wire, info, prop, wire in required))
        inner, item_node, suffix = _nested_model(info.annotation, prop)
        if inner is not None:
            child = f"{path}.{wire}" if path else wire
            nested.append((inner, child + suffix, item_node))
    for inner, child, item_node in nested:
        _walk(inner, child, item_node, docs, skip)


def _nested_model(
    annotation: Any, node: Mapping[str, Any]
) -> tuple[type[BaseModel] | None, Mapping[str, Any], str]:
    """The model a field holds (directly or as list items), its schema node, and ``[]``."""
    inner = _strip_optional(annotation)
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        if _is_model(item):
            return item, node.get("items", {}), "[]"
        return None, {}, ""
    if _is_model(inner):
        return inner, node, ""
    return None, {}, ""


def _is_model(tp: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_duration(info: FieldInfo) -> bool:
    return any(
        isinstance(m, WithJsonSchema)
        and isinstance(m.json_schema, dict)
        and m.json_schema.get("pattern") == DURATION_PATTERN
        for m in info.metadata
    )


def _field_doc(name: str, info: FieldInfo, node: Mapping[str, Any], required: bool) -> FieldDoc:
    duration = _is_duration(info)
    bounds = [
        f"`{format_duration(m.low())}` to `{format_duration(m.maximum)}`"
        for m in info.metadata
        if isinstance(m, DurationBounds)
    ]
    return FieldDoc(
        name=name,
        type="duration" if duration else _type(info.annotation),
        required=required,
        default=None if required else _default(info),
        validation=(*_validation(node, duration=duration, required=required), *bounds),
        description=" ".join((info.description or "").split()),
    )


def _type(annotation: Any) -> str:
    tp = _strip_optional(annotation)
    if typing.get_origin(tp) is Annotated:  # a bounded str: its bounds are in Validation
        return _type(typing.get_args(tp)[0])
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type(item)}"
    if origin is dict:
        _key, value = typing.get_args(tp)
        return "object (free-form)" if value is Any else f"map of string to {_type(value)}"
    if origin is Literal:
        return "string"
    if _is_model(tp):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "string"
    names: dict[Any, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        datetime: "timestamp (RFC 3339)",
        timedelta: "duration",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default(info: FieldInfo) -> str | None:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see its fields"
        return f"`{_yaml_scalar(value)}`"
    value = info.default
    if value is None:
        return None
    return f"`{_yaml_scalar(value)}`"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, BaseModel):  # written as its set fields, in flow style
        shown = value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in shown.items()) + "}"
    if isinstance(value, list):
        return "[]" if not value else "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if value == "":
        return '""'
    return str(value)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _validation(node: Mapping[str, Any], *, duration: bool, required: bool) -> Iterator[str]:
    if required:
        yield "required"
    if "enum" in node:
        yield "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "pattern" in node and not duration:
        yield f"pattern `{node['pattern']}`"
    if "minimum" in node:
        strict = node.get("exclusiveMinimum") is True
        yield f"`{'>' if strict else '>='} {_number(node['minimum'])}`"
    if "maximum" in node:
        strict = node.get("exclusiveMaximum") is True
        yield f"`{'<' if strict else '<='} {_number(node['maximum'])}`"
    low, high = node.get("minLength"), node.get("maxLength")
    if duration:  # the duration's own bounds say more than its length
        low = high = None
    if low is not None and high is not None:
        yield f"{low} to {high} characters"
    elif low is not None:
        yield f"at least {low} character{'s' if low != 1 else ''}"
    elif high is not None:
        yield f"at most {high} characters"
    if "maxProperties" in node:
        yield f"at most {node['maxProperties']} entries"
    if "minItems" in node:
        n = node["minItems"]
        yield f"at least {n} item{'s' if n != 1 else ''}"
    if "maxItems" in node:
        yield f"at most {node['maxItems']} items"
    items = node.get("items")
    if isinstance(items, Mapping) and "properties" not in items:
        inner = list(_validation(items, duration=False, required=False))
        if inner:
            yield "each item: " + "; ".join(inner)


def admission_rules(kind: str = "AgentPolicy") -> list[tuple[str, str, list[str]]]:
    """(message, CEL rule, schema paths) for every ``x-kubernetes-validations`` in the CRD
    of ``kind``."""
    found: dict[tuple[str, str], list[str]] = {}

    def visit(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        for rule in node.get("x-kubernetes-validations", []):
            found.setdefault((rule["message"], rule["rule"]), []).append(path)
        for key, child in node.get("properties", {}).items():
            visit(child, f"{path}.{key}" if path else key)
        if "items" in node:
            visit(node["items"], path + "[]")

    visit(_root_schema(kind), "")
    return [(message, rule, paths) for (message, rule), paths in found.items()]
