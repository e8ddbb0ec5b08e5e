"""Structural-schema validation and pruning of custom resources, as the API server does it.

Given a CRD version's ``openAPIV3Schema`` this checks types, ``required``, ``enum``,
``pattern``, ``format: date-time``, length/size/number bounds, ``anyOf`` and the
uniqueness of ``x-kubernetes-list-type: map|set`` lists; it prunes fields the schema does
not declare (unless ``x-kubernetes-preserve-unknown-fields``) and drops ``null`` values of
non-nullable fields. When the object is structurally valid, the CEL rules of
``x-kubernetes-validations`` are evaluated with cel-python (transition rules that use
``oldSelf`` are skipped). Messages follow the API server's wording so that a test asserting on
a field path holds against both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

__all__ = ["Cause", "validate_and_prune"]


@dataclass(frozen=True)
class Cause:
    """One field error, as in a Status's ``details.causes``."""

    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    message: str  # the full "field: Kind: detail" text

    def as_dict(self) -> dict[str, str]:
        """The Status cause object: its message without the field, which is beside it."""
        message = self.message.removeprefix(f"{self.field}: ")
        return {"reason": self.reason, "message": message, "field": self.field}


_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else _go_value(value)


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_date_time(value: str) -> bool:
    if not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value
    ):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class _Validator:
    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def fail(self, path: str, reason: str, detail: str) -> None:
        self.causes.append(Cause(path, reason, f"{path}: {detail}"))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.fail(path, "FieldValueInvalid", f"Invalid value: {_fmt(value)}: {detail}")

    def node(self, value: Any, schema: dict[str, Any], path: str) -> Any:
        """Validate ``value``; return it pruned (or ``_DROP`` to remove it from its parent)."""
        if value is None:
            if schema.get("nullable"):
                return None
            return _DROP
        expected = schema.get("type")
        if expected and not self._type_ok(value, expected):
            where = path or "body"
            self.invalid(
                path,
                _json_type(value),
                f"{where} in body must be of type {expected}: {_fmt(_json_type(value))}",
            )
            return value
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(_fmt(v) for v in schema["enum"])
            self.fail(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {_fmt(value)}: supported values: {supported}",
            )
        if isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, schema, path)
        if "anyOf" in schema:
            before = len(self.causes)
            passing = 0
            for option in schema["anyOf"]:
                probe = _Validator()
                probe.node(value, {**option, "x-kubernetes-preserve-unknown-fields": True}, path)
                passing += not probe.causes
            if not passing and len(self.causes) == before:
                self.invalid(path, value, "must validate at least one schema (anyOf)")
        if isinstance(value, dict):
            return self._object(value, schema, path)
        if isinstance(value, list):
            return self._array(value, schema, path)
        return value

    @staticmethod
    def _type_ok(value: Any, expected: str) -> bool:
        if expected == "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
        if expected == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        return _json_type(value) == expected

    def _string(self, value: str, schema: dict[str, Any], path: str) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            self.invalid(
                path, value, f"{path} in body should be at least {schema['minLength']} chars long"
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.fail(
                path,
                "FieldValueTooLong",
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            self.invalid(path, value, f"{path} in body should match '{schema['pattern']}'")
        if schema.get("format") == "date-time" and not _is_date_time(value):
            self.invalid(path, value, f"{path} in body must be of type date-time: {_fmt(value)}")

    def _number(self, value: float, schema: dict[str, Any], path: str) -> None:
        minimum = schema.get("minimum")
        exclusive_min = schema.get("exclusiveMinimum")
        if isinstance(exclusive_min, int | float) and not isinstance(exclusive_min, bool):
            minimum, exclusive_min = exclusive_min, True  # JSON-schema 2020 spelling
        if minimum is not None:
            if exclusive_min and value <= minimum:
                self.invalid(path, value, f"{path} in body should be greater than {minimum}")
            elif not exclusive_min and value < minimum:
                self.invalid(
                    path, value, f"{path} in body should be greater than or equal to {minimum}"
                )
        maximum = schema.get("maximum")
        exclusive_max = schema.get("exclusiveMaximum")
        if isinstance(exclusive_max, int | float) and not isinstance(exclusive_max, bool):
            maximum, exclusive_max = exclusive_max, True
        if maximum is not None:
            if exclusive_max and value >= maximum:
                self.invalid(path, value, f"{path} in body should be less than {maximum}")
            elif not exclusive_max and value > maximum:
                self.invalid(
                    path, value, f"{path} in body should be less than or equal to {maximum}"
                )

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in properties:
                pruned = self.node(item, properties[key], sub)
            elif isinstance(extra, dict):
                pruned = self.node(item, extra, f"{path}[{key}]")
            elif preserve or extra is True:
                pruned = item
            else:
                continue  # pruned: unknown fields are dropped silently, as by the API server
            if pruned is not _DROP:
                result[key] = pruned
        for key in schema.get("required") or []:
            if key not in result:
                self.fail(f"{path}.{key}" if path else key, "FieldValueRequired", "Required value")
        if "minProperties" in schema and len(result) < schema["minProperties"]:
            self.invalid(
                path,
                value,
                f"{path} in body should have at least {schema['minProperties']} properties",
            )
        if "maxProperties" in schema and len(result) > schema["maxProperties"]:
            self.fail(
                path,
                "FieldValueTooMany",
                f"Too many: {len(result)}: must have at most {schema['maxProperties']} items",
            )
        return result

    def _array(self, value: list[Any], schema: dict[str, Any], path: str) -> list[Any]:
        items = schema.get("items")
        result: list[Any] = []
        for index, item in enumerate(value):
            pruned = self.node(item, items, f"{path}[{index}]") if isinstance(items, dict) else item
            result.append(None if pruned is _DROP else pruned)
        if "minItems" in schema and len(result) < schema["minItems"]:
            self.invalid(
                path, len(result), f"{path} in body should have at least {schema['minItems']} items"
            )
        if "maxItems" in schema and len(result) > schema["maxItems"]:
            self.fail(
                path,
                "FieldValueTooMany",
                f"Too many: {len(result)}: must have at most {schema['maxItems']} items",
            )
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[str] = set()
            for index, item in enumerate(result):
                if not isinstance(item, dict):
                    continue
                identity = json.dumps([item.get(k) for k in keys])
                if identity in seen:
                    ident = {k: item.get(k) for k in keys}
                    self.fail(
                        f"{path}[{index}]",
                        "FieldValueDuplicate",
                        f"Duplicate value: {json.dumps(ident, separators=(',', ':'))}",
                    )
                seen.add(identity)
        elif list_type == "set":
            seen_values: list[Any] = []
            for index, item in enumerate(result):
                if item in seen_values:
                    self.fail(
                        f"{path}[{index}]", "FieldValueDuplicate", f"Duplicate value: {_fmt(item)}"
                    )
                seen_values.append(item)
        return result


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP: Any = _Drop()


@lru_cache(maxsize=256)
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_causes(value: Any, schema: dict[str, Any], path: str, old: Any) -> list[Cause]:
    """Evaluate every CEL rule in ``schema`` over ``value``, depth first, skipping subtrees
    equal to ``old`` (validation ratcheting, on by default since Kubernetes 1.30)."""
    from celpy.adapter import json_to_cel

    causes: list[Cause] = []
    if value is None or (old is not _DROP and value == old):
        return causes
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule.get("rule", "")
        if "oldSelf" in text:
            continue  # transition rules need the old object; not evaluated
        field = path + (rule.get("fieldPath") or "")
        try:
            result = _cel_program(text).evaluate({"self": json_to_cel(value)})
            failed = isinstance(result, Exception) or not bool(result)
        except Exception:  # an evaluation error fails the rule, as in the API server
            failed = True
        if failed:
            message = rule.get("message") or f"failed rule: {text}"
            causes.append(
                Cause(
                    field,
                    rule.get("reason") or "FieldValueInvalid",
                    f"{field}: Invalid value: {_fmt(_json_type(value))}: {message}",
                )
            )
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            before = old_map.get(key, _DROP)
            if key in properties:
                sub = f"{path}.{key}" if path else key
                causes += _cel_causes(item, properties[key], sub, before)
            elif isinstance(extra, dict):
                causes += _cel_causes(item, extra, f"{path}[{key}]", before)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            causes += _cel_causes(item, schema["items"], f"{path}[{index}]", _DROP)
    return causes


def validate_and_prune(
    obj: dict[str, Any], schema: dict[str, Any], old: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Cause]]:
    """Validate a custom resource against its version's ``openAPIV3Schema``.

    Returns the object with undeclared fields pruned, and the field errors (empty when
    valid). ``metadata`` is left to the caller (the API server validates it as ObjectMeta).
    ``old`` is the stored object on updates: CEL rules are not re-run on unchanged parts.
    """
    validator = _Validator()
    metadata = obj.get("metadata")
    body = {k: v for k, v in obj.items() if k != "metadata"}
    top = dict(schema)
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}
    # apiVersion and kind are always kept, whatever the schema says.
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    top["properties"] = props
    pruned = validator.node(body, top, "")
    result: dict[str, Any] = pruned if isinstance(pruned, dict) else {}
    if not validator.causes:
        before = {k: v for k, v in old.items() if k != "metadata"} if old is not None else _DROP
        body_now = {k: v for k, v in result.items() if k != "metadata"}
        return _with_metadata(result, metadata), _cel_causes(body_now, top, "", before)
    return _with_metadata(result, metadata), validator.causes


def _with_metadata(result: dict[str, Any], metadata: Any) -> dict[str, Any]:
    if metadata is not None:
        result["metadata"] = metadata
    return result
