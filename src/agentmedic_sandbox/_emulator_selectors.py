"""Label and field selectors, parsed and matched as the API server does.

Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
``!k``, ``k>n``, ``k<n``, joined by commas (all must hold). ``!=`` and ``notin`` also match
objects without the label. Field selectors: ``path=v``, ``path==v``, ``path!=v`` over the
fields a resource supports (see ``_emulator_resources``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FieldSelector", "LabelSelector", "SelectorError", "field_value"]


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 Bad Request."""


_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        (bound,) = self.values
        return number > int(bound) if self.op == "gt" else number < int(bound)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP = re.compile(r"^(?P<key>[^=!<>\s]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^=!<>\s]*)$")


class LabelSelector:
    """A parsed label selector; ``matches(labels)`` tells whether an object is selected."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.requirements: list[_Requirement] = []
        for part in _split_top_level(text or ""):
            self.requirements.append(self._parse_requirement(part))

    @staticmethod
    def _parse_requirement(part: str) -> _Requirement:
        if match := _SET.match(part):
            key = match["key"]
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(
                    f"{part!r}: for 'in' and 'notin', the values set can't be empty"
                )
            requirement = _Requirement(key, match["op"], values)
        elif part.startswith("!"):
            requirement = _Requirement(part[1:].strip(), "!", frozenset())
        elif match := _CMP.match(part):
            op = {"==": "=", "=": "=", "!=": "!=", ">": "gt", "<": "lt"}[match["op"]]
            value = match["value"]
            if op in ("gt", "lt") and not value.lstrip("-").isdigit():
                raise SelectorError(
                    f"{part!r}: for 'Gt', 'Lt' operators, the value must be an integer"
                )
            requirement = _Requirement(match["key"], op, frozenset({value}))
        elif re.fullmatch(r"\S+", part):
            requirement = _Requirement(part, "exists", frozenset())
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
        if not _KEY.match(requirement.key):
            raise SelectorError(f"invalid label key {requirement.key!r}")
        return requirement

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object carrying ``labels`` is selected."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @classmethod
    def from_label_selector(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Build from a structured ``LabelSelector`` (``matchLabels``/``matchExpressions``)."""
        parts = [f"{k}={v}" for k, v in ((selector or {}).get("matchLabels") or {}).items()]
        for expr in (selector or {}).get("matchExpressions") or []:
            op = expr.get("operator")
            values = ",".join(expr.get("values") or [])
            key = expr.get("key")
            if op == "In":
                parts.append(f"{key} in ({values})")
            elif op == "NotIn":
                parts.append(f"{key} notin ({values})")
            elif op == "Exists":
                parts.append(str(key))
            elif op == "DoesNotExist":
                parts.append(f"!{key}")
        return cls(",".join(parts))


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """The string form of the field at a dotted ``path``, as field selectors compare it."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _unescape_split(text: str, separators: str) -> list[str]:
    """Split on unescaped separators, keeping escapes (``\\,`` ``\\=`` ``\\\\``) for later."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class FieldSelector:
    """A parsed field selector; ``fields`` lists the paths it reads."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.terms: list[tuple[str, bool, str]] = []  # (path, equal?, value)
        for part in _unescape_split(text or "", ","):
            part = part.strip()
            if not part:
                continue
            match = re.match(r"^(?P<path>[^=!]+?)\s*(?P<op>==|=|!=)(?P<value>.*)$", part)
            if not match:
                raise SelectorError(f"invalid field selector: {part!r}")
            self.terms.append(
                (match["path"].strip(), match["op"] != "!=", _unescape(match["value"].strip()))
            )

    @property
    def fields(self) -> list[str]:
        """The field paths the selector compares."""
        return [path for path, _, _ in self.terms]

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is selected."""
        for path, equal, value in self.terms:
            actual = field_value(obj, path) or ""
            if (actual == value) != equal:
                return False
        return True
