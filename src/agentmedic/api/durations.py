"""Durations as people write them in policies: ``30s``, ``5m``, ``1h30m``, ``1d``, ``2w``.

Two forms, both valid PromQL durations so that a window renders into a query unchanged:

- hours, minutes, seconds and milliseconds, largest first, each at most once (``1h30m``,
  ``90s``, ``1s500ms``), as Go and Prometheus write them;
- whole days or whole weeks alone (``1d``, ``7d``, ``2w``).

``1d12h`` is refused (write ``36h``): with the day forms standing alone, the API server
can check a duration's bounds with CEL's ``duration()``, which knows no days, exactly as
the models check them. Each number has at most six digits, so no duration overflows.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import core_schema

__all__ = [
    "DURATION_MAX_LENGTH",
    "DURATION_PATTERN",
    "TIME_COMPRESSION_ENV",
    "Duration",
    "DurationBounds",
    "duration_bounds",
    "duration_bounds_cel",
    "format_duration",
    "parse_duration",
    "time_compression",
]

_UNITS: dict[str, timedelta] = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_N = "[0-9]{1,6}"
DURATION_PATTERN = rf"^(({_N}h)?({_N}m)?({_N}s)?({_N}ms)?|{_N}d|{_N}w)$"
DURATION_MAX_LENGTH = 32
"""Longest duration text: ``999999h999999m999999s999999ms`` has 29 characters."""
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_WHOLE = re.compile(DURATION_PATTERN)
_HINT = (
    "write a number and a unit, e.g. 30s, 5m, 1h30m, 1d "
    "(units: ms, s, m, h, d, w; largest first; days and weeks stand alone)"
)


def parse_duration(text: str) -> timedelta:
    """Parse ``"1h30m"`` into a :class:`timedelta`; raise ``ValueError`` with a hint."""
    cleaned = text.strip()
    if not cleaned or not _WHOLE.match(cleaned):
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise ValueError(f"{shown!r} is not a duration; {_HINT}")
    total = timedelta()
    for number, unit in _PART.findall(cleaned):
        total += int(number) * _UNITS[unit]
    return total


def format_duration(value: timedelta) -> str:
    """The form :func:`parse_duration` reads back: ``1d`` for whole days, else ``26h3m``."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    if ms % 86_400_000 == 0:
        return f"{ms // 86_400_000}d"
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
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


_SCHEMA = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "minLength": 2,
    "maxLength": DURATION_MAX_LENGTH,
}

Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json-unless-none"),
    WithJsonSchema(_SCHEMA),
]
"""A duration written as ``30s``, ``5m``, ``1h``, ``1d`` (units ms, s, m, h, d, w)."""


def _count_upto(high: int, *, zero: bool) -> str:
    """A regex (no anchors) for the decimal numbers from 0 or 1 (``zero``) to ``high``."""
    digits = str(high)
    options = []
    for length in range(1, len(digits)):
        first = "[0-9]" if length == 1 and zero else "[1-9]"
        options.append(first + "[0-9]" * (length - 1))
    for i, char in enumerate(digits):
        lowest = 1 if i == 0 and (len(digits) > 1 or not zero) else 0
        if int(char) - 1 >= lowest:
            rest = "[0-9]" * (len(digits) - i - 1)
            options.append(f"{digits[:i]}[{lowest}-{int(char) - 1}]{rest}")
    options.append(digits)
    return "0*(" + "|".join(options) + ")"


def duration_bounds_cel(minimum: timedelta, maximum: timedelta) -> dict[str, str]:
    """The CEL rule refusing at admission what :func:`bounded_duration` refuses.

    CEL's ``duration()`` reads the hour-to-millisecond form; whole days and weeks are
    counted by a regex over their number.
    """
    forms = []
    for unit, size in (("d", timedelta(days=1)), ("w", timedelta(weeks=1))):
        lowest, highest = -(-minimum // size), maximum // size
        if lowest > 1:
            raise ValueError("a minimum above one day is not expressible in this rule")
        if highest >= lowest:
            forms.append(f"^{_count_upto(highest, zero=lowest == 0)}{unit}$")
    days_rule = f"self.matches('{'|'.join(forms)}')" if forms else "false"
    low, high = int(minimum.total_seconds() * 1000), int(maximum.total_seconds() * 1000)
    return {
        "rule": f"self.matches('^[0-9]+[dw]$') ? {days_rule} : "
        f"(duration(self) >= duration('{low}ms') && duration(self) <= duration('{high}ms'))",
        "message": _bounds_text(minimum, maximum),
    }


def _bounds_text(minimum: timedelta, maximum: timedelta) -> str:
    return f"must be between {format_duration(minimum)} and {format_duration(maximum)}"


TIME_COMPRESSION_ENV = "AGENTMEDIC_TIME_COMPRESSION"
"""Divides the minimum interval and window, for the sandbox and the tests that run a
policy's hours in minutes (``agentmedic demo`` sets it to its speed-up). Read when a policy
is validated and when the CRD is rendered; never set it for a real cluster."""


def time_compression() -> float:
    """The factor of :data:`TIME_COMPRESSION_ENV` (1 when unset or not a number >= 1)."""
    try:
        factor = float(os.environ.get(TIME_COMPRESSION_ENV, "1"))
    except ValueError:
        return 1.0
    return factor if math.isfinite(factor) and factor >= 1 else 1.0


@dataclass(frozen=True)
class DurationBounds:
    """Annotation bounding a :data:`Duration` in the model and, as CEL, in the CRD."""

    minimum: timedelta
    maximum: timedelta
    compressible: bool

    def low(self) -> timedelta:
        if not self.compressible:
            return self.minimum
        return timedelta(milliseconds=round(self.minimum / time_compression() / _MS))

    def check(self, value: timedelta) -> timedelta:
        low = self.low()
        if not low <= value <= self.maximum:
            raise ValueError(f"is {format_duration(value)}; it {_bounds_text(low, self.maximum)}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        rule = duration_bounds_cel(self.low(), self.maximum)
        return {**_SCHEMA, "x-kubernetes-validations": [rule]}


_MS = timedelta(milliseconds=1)


def duration_bounds(minimum: timedelta, maximum: timedelta, *, compressible: bool = False) -> Any:
    """An annotation bounding a :data:`Duration`, checked by the model and, through the same
    bounds in CEL, by the API server: ``Annotated[Duration, duration_bounds(lo, hi)]``.
    A ``compressible`` minimum is divided by :func:`time_compression`."""
    return DurationBounds(minimum, maximum, compressible)
