"""Safe PromQL building: values that enter a query cannot change its meaning.

Agent names come from workload labels and policies, so they are data, never syntax. A
value enters a query in one of two places: a double-quoted string literal (escaped by
:func:`quote_string`, Go's rules, which PromQL uses) or, inside an ``=~`` matcher, an RE2
pattern (escaped by :func:`escape_regex` first, then quoted). Prometheus anchors regex
matchers at both ends (``^(?:...)$``), so ``agent=~"a|b"`` selects exactly ``a`` and ``b``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta

from agentmedic.api.durations import format_duration

__all__ = [
    "agent_matcher",
    "check_label_name",
    "duration",
    "escape_regex",
    "quote_string",
    "scope_matcher",
    "substitute",
]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Other control characters as \uXXXX: PromQL accepts most raw, but escaped they stay visible.
_STRING_TABLE = str.maketrans(
    {chr(c): f"\\u{c:04x}" for c in [*range(0x20), 0x7F]} | _STRING_ESCAPES
)
_REGEX_TABLE = str.maketrans({ch: "\\" + ch for ch in "\\.+*?()|[]{}^$"})


def quote_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal.

    Backslash, double quote and control characters are escaped; other characters, unicode
    included, stand for themselves. Raises ``ValueError`` for text that is not valid
    Unicode (lone surrogates), which Prometheus could not store anyway.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not valid Unicode text") from None
    return '"' + value.translate(_STRING_TABLE) + '"'


def escape_regex(value: str) -> str:
    """An RE2 pattern matching exactly ``value`` (Go's ``regexp.QuoteMeta``)."""
    return value.translate(_REGEX_TABLE)


def check_label_name(name: str, what: str = "label name") -> str:
    """Return ``name`` if it is a valid Prometheus label name, else raise ``ValueError``."""
    if not _LABEL_NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a valid Prometheus label name; use letters, digits and "
            "underscores, not starting with a digit"
        )
    return name


def scope_matcher(
    label: str, agents: Iterable[tuple[str, str]], namespace_label: str | None
) -> str:
    """What ``{{agents}}`` becomes in a raw query: the agents' label matcher and, unless the
    metrics carry no namespace (``namespace_label`` None), a matcher on their namespaces.

    ``agents`` are ``(namespace, name)`` pairs. Without the namespace matcher a policy in one
    namespace would read (and echo into its status) the series of same-named agents in
    every other namespace.
    """
    pairs = list(agents)
    matcher = agent_matcher(label, (name for _, name in pairs))
    if namespace_label is None:
        return matcher
    check_label_name(namespace_label, "namespace label")
    namespaces = sorted({namespace for namespace, _ in pairs})
    if "" in namespaces:
        raise ValueError("namespaces must not be empty")
    if len(namespaces) == 1:
        return f"{matcher}, {namespace_label}={quote_string(namespaces[0])}"
    alternatives = "|".join(escape_regex(n) for n in namespaces)
    return f"{matcher}, {namespace_label}=~{quote_string(alternatives)}"


def agent_matcher(label: str, names: Iterable[str]) -> str:
    """A label matcher selecting exactly the series whose ``label`` is one of ``names``.

    One name gives ``label="name"``; several give ``label=~"a|b"`` with each name
    regex-escaped. Names are sorted, so the same set always gives the same text (and the
    same query, which caches and dedups well).
    """
    check_label_name(label, "agent label")
    unique = sorted(set(names))
    if not unique:
        raise ValueError("an agent matcher needs at least one agent name")
    if "" in unique:
        # An empty alternative would also match series without the label.
        raise ValueError("agent names must not be empty")
    if len(unique) == 1:
        return f"{label}={quote_string(unique[0])}"
    return f"{label}=~{quote_string('|'.join(escape_regex(n) for n in unique))}"


def duration(value: timedelta) -> str:
    """A PromQL duration such as ``5m`` or ``1h30m`` (whole milliseconds, at least 1ms)."""
    if value.total_seconds() * 1000 < 1:
        raise ValueError(f"a PromQL duration must be at least 1ms, got {value}")
    return format_duration(value)


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; an unknown one raises ``ValueError`` naming it."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(f"{{{{{k}}}}}" for k in values)
            raise ValueError(f"unknown placeholder {{{{{name}}}}}; known: {known}")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)
