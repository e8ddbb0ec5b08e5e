"""Durations as people write them in policies: ``30s``, ``5m``, ``1h30m``, ``1d``.

Go-style compound durations with the units ``ms``, ``s``, ``m``, ``h``, ``d`` and
``w``. Prometheus range selectors accept the same units, so a window renders into
PromQL unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["DURATION_PATTERN", "Duration", "format_duration", "parse_duration"]

_UNITS: dict[str, timedelta] = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_WHOLE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> timedelta:
    """Parse ``"1h30m"`` into a :class:`timedelta`; raise ``ValueError`` with a hint."""
    cleaned = text.strip()
    if not _WHOLE.match(cleaned):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, e.g. 30s, 5m, 1h30m, 1d "
            "(units: ms, s, m, h, d, w)"
        )
    total = timedelta()
    for number, unit in _PART.findall(cleaned):
        total += int(number) * _UNITS[unit]
    return total


def format_duration(value: timedelta) -> str:
    """Render the shortest compound form, e.g. ``timedelta(minutes=90)`` → ``"1h30m"``."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _coerce(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f"{value!r} has no unit; write it as a duration such as {value}s or {value}m"
        )
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A duration written as ``30s``, ``5m``, ``1h``, ``1d`` (units ms, s, m, h, d, w)."""
