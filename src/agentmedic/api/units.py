"""Numbers in people's units: the one place that turns a measured value into text.

Every reader of agentmedic's evidence (status, Events, notifications, the CLI, the
backtest plots, the demo) sees values rendered by these functions, so the same value
reads the same everywhere:

============================  ==============================  ==========================
kind                          metrics                         reads as
============================  ==============================  ==========================
latency (milliseconds)        ``latency_p95_ms`` …            ``25.7s``, ``850ms``
ratio (0..1)                  ``success_rate``, ``error_rate``  ``30%``, ``2.5%``
money (USD)                   ``cost_usd`` …                  ``$12.40``
count                         ``executions``, ``tokens`` …    ``149``, ``1,501``
anything else (raw PromQL)                                    ``0.4058``, ``25,690``
============================  ==============================  ==========================

Ratios are always shown as percentages, thresholds included (``success_rate 30% < 70%``);
windows and other durations as a policy writes them (``5m``, never ``300s``); timestamps
in UTC to the second (``2026-12-03T08:29:19Z``). No value is ever shown in exponent form
within the range a metric can reasonably take.

:func:`format_comparison` renders an observed value and its threshold together: the
threshold exactly as written (``10.05s``, not ``10.1s``), and the observed value with
as many more digits as it takes not to read equal to a threshold it differs from (a
p95 of 9,996 ms against ``10s`` reads ``9.996s``, not ``10s``).

Pure functions of their arguments; no I/O.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from agentmedic.api.durations import format_duration
from agentmedic.api.metric_names import BUILTIN_METRICS

__all__ = [
    "Unit",
    "format_comparison",
    "format_count",
    "format_latency_ms",
    "format_number",
    "format_percent",
    "format_threshold",
    "format_timestamp",
    "format_usd",
    "format_value",
    "format_window",
    "unit_of",
]

# How many more digits format_comparison may add before it gives up telling two close
# values apart (they then read equal, which is honest at that precision).
_MAX_EXTRA_DIGITS: Final = 4


class Unit(StrEnum):
    """How a metric's values read."""

    MILLISECONDS = "ms"
    RATIO = "ratio"
    USD = "usd"
    COUNT = "count"
    NUMBER = "number"


_BY_CATALOG_UNIT: Final = {
    "ms": Unit.MILLISECONDS,
    "ratio 0..1": Unit.RATIO,
    "USD": Unit.USD,
    "executions": Unit.COUNT,
    "tokens": Unit.COUNT,
}

# Series the engine names that are not conditions' metrics (budget evidence).
_EXTRA: Final = {"cost_usd_forecast": Unit.USD}


def unit_of(metric: str | None) -> Unit:
    """The unit of a built-in metric (or of a budget's figure); NUMBER for a raw query."""
    if metric is None:
        return Unit.NUMBER
    if metric in _EXTRA:
        return _EXTRA[metric]
    builtin = BUILTIN_METRICS.get(metric)
    if builtin is None:
        return Unit.NUMBER
    return _BY_CATALOG_UNIT.get(builtin.unit, Unit.NUMBER)


def _fixed(value: float, decimals: int) -> str:
    """``value`` with at most ``decimals`` decimals, trailing zeros dropped, no ``-0``."""
    text = f"{value:,.{max(decimals, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _exact_decimals(value: float, start: int, limit: int = 6) -> int:
    """The fewest decimals (from ``start``) at which ``value`` reads back exactly."""
    for decimals in range(start, limit + 1):
        if math.isclose(round(value, decimals), value, rel_tol=1e-9, abs_tol=1e-12):
            return decimals
    return limit


def _not_finite(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def format_latency_ms(ms: float, *, extra: int = 0) -> str:
    """A latency given in milliseconds: ``850ms`` below a second, ``25.7s`` from there.

    ``extra`` adds decimals (to tell two close values apart)."""
    special = _not_finite(ms)
    if special is not None:
        return special
    if abs(round(ms, extra)) < 1000:
        decimals = (1 if abs(ms) < 10 else 0) + extra
        return f"{_fixed(ms, decimals)}ms"
    seconds = ms / 1000
    decimals = (1 if abs(seconds) < 100 else 0) + extra
    return f"{_fixed(seconds, decimals)}s"


def format_percent(ratio: float, *, extra: int = 0) -> str:
    """A ratio of 0..1 as a percentage: ``30%``, ``2.5%``, ``0.12%``."""
    special = _not_finite(ratio)
    if special is not None:
        return special
    percent = ratio * 100
    if percent == 0:
        decimals = 0
    elif abs(percent) < 1:
        # Two significant digits for small shares: 0.12%, 0.005%.
        decimals = 1 - math.floor(math.log10(abs(percent)))
    elif abs(percent) < 10:
        decimals = 1
    else:
        decimals = 0
    return f"{_fixed(percent, decimals + extra)}%"


def format_usd(usd: float, *, extra: int = 0) -> str:
    """Money in US dollars, to the cent: ``$12.40``; below a cent, two significant digits."""
    special = _not_finite(usd)
    if special is not None:
        return special
    sign = "-" if usd < 0 else ""
    amount = abs(usd)
    if 0 < amount < 0.01:
        decimals = 1 - math.floor(math.log10(amount)) + extra
        return f"{sign}${_fixed(amount, decimals)}"
    text = f"{amount:,.{2 + extra}f}"
    # Cents always show; digits past them only when they say something.
    while extra > 0 and text.endswith("0"):
        text, extra = text[:-1], extra - 1
    return f"{sign}${text}"


def format_count(count: float, *, extra: int = 0) -> str:
    """A count as a whole number: ``149`` for the 149.299 that ``increase()`` extrapolates;
    ``1,501`` with a thousands separator."""
    special = _not_finite(count)
    if special is not None:
        return special
    return _fixed(count, extra)


def format_number(value: float, *, extra: int = 0) -> str:
    """Any other number (a raw query's value): four significant digits, never an exponent
    between 0.0001 and 10¹⁵, whole numbers from 10,000 on (``25,690``)."""
    special = _not_finite(value)
    if special is not None:
        return special
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 15 or magnitude < -4:
        return f"{value:.{3 + extra}e}"
    decimals = max(3 - magnitude, 0) + extra
    return _fixed(value, decimals)


_FORMATTERS: Final = {
    Unit.MILLISECONDS: format_latency_ms,
    Unit.RATIO: format_percent,
    Unit.USD: format_usd,
    Unit.COUNT: format_count,
    Unit.NUMBER: format_number,
}


def format_value(metric: str | None, value: float | None, *, extra: int = 0) -> str:
    """A value of ``metric`` in its unit; ``no data`` for None."""
    if value is None:
        return "no data"
    return _FORMATTERS[unit_of(metric)](value, extra=extra)


def format_threshold(metric: str | None, value: float) -> str:
    """A threshold (or any value set by a person) as written: as many digits as it has,
    in the metric's unit: ``10.05s``, ``70%``, ``$40.00``."""
    formatter = _FORMATTERS[unit_of(metric)]
    if _not_finite(value) is not None:
        return formatter(value)
    for extra in range(0, _MAX_EXTRA_DIGITS + 3):
        text = formatter(value, extra=extra)
        if formatter(value, extra=extra + 1) == text:
            return text
    return formatter(value, extra=_MAX_EXTRA_DIGITS + 2)


def format_comparison(metric: str | None, observed: float, threshold: float) -> tuple[str, str]:
    """``(observed, threshold)`` as text, the threshold exact and the observed value never
    reading equal to a threshold it differs from (within a few more digits)."""
    shown_threshold = format_threshold(metric, threshold)
    formatter = _FORMATTERS[unit_of(metric)]
    shown = formatter(observed)
    if observed != threshold and _not_finite(observed) is None:
        for extra in range(1, _MAX_EXTRA_DIGITS + 1):
            if shown != shown_threshold:
                break
            shown = formatter(observed, extra=extra)
    return shown, shown_threshold


def format_window(window: timedelta) -> str:
    """A window or other duration as a policy writes it: ``5m``, ``1h30m``, ``1d``."""
    return format_duration(window)


def format_timestamp(moment: datetime) -> str:
    """UTC to the second with a ``Z``: ``2026-12-03T08:29:19Z`` (naive times are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
