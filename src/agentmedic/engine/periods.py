"""Time arithmetic with time as a parameter: budget periods and quiet-hours windows.

Budget periods are calendar periods (a day from 00:00, a week from Monday 00:00, a month
from the 1st) in a time zone — UTC for a policy's ``spec.budget``, the budget's timeZone
for an AgentBudget — or a rolling duration ending now. A calendar period in a zone with
daylight saving time is 23 or 25 hours long on the day the clocks change. Quiet hours are
wall-clock windows in an IANA time zone; a window whose end is earlier than its start
runs overnight into the next day, and ``days`` names the days on which it starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from agentmedic.api.durations import parse_duration
from agentmedic.api.types import Budget, QuietHours

__all__ = [
    "Period",
    "budget_period",
    "describe_period",
    "elapsed_window",
    "in_quiet_hours",
    "period_of",
    "spend_window",
]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Period:
    """The budget period containing a moment."""

    start: datetime
    end: datetime
    rolling: bool
    """A rolling duration (start = now - duration, end = now) rather than a calendar period."""

    @property
    def length(self) -> timedelta:
        """end - start."""
        return self.end - self.start


def budget_period(budget: Budget, now: datetime) -> Period:
    """The period ``now`` falls in (a policy's budget: calendar periods in UTC)."""
    return period_of(budget.period, "UTC", now)


def period_of(period: str, time_zone: str, now: datetime) -> Period:
    """The period ``now`` falls in: ``day``, ``week`` or ``month`` starting at local
    midnight in ``time_zone`` (an IANA name), or a rolling duration ending ``now``. The
    bounds are UTC."""
    now = now.astimezone(UTC)
    if period not in ("day", "week", "month"):
        duration = parse_duration(period)
        return Period(now - duration, now, rolling=True)
    zone = _zone(time_zone)
    today = now.astimezone(zone).date()
    if period == "day":
        first, after = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(weeks=1)
    else:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return Period(_midnight(first, zone), _midnight(after, zone), rolling=False)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def elapsed_window(period: Period, now: datetime) -> timedelta:
    """The window a counter's increase is queried over for spend so far: the elapsed part
    of a calendar period rounded up to whole seconds (at least 1s) so it renders in
    PromQL, or the rolling duration."""
    if period.rolling:
        return period.length
    elapsed = (now - period.start).total_seconds()
    return timedelta(seconds=max(1, math.ceil(elapsed)))


def describe_period(period: str, time_zone: str, bounds: Period) -> str:
    """The period for people: ``December 2026 (Europe/Berlin)``, ``the week from
    2026-11-30 (UTC)``, ``2026-12-03 (UTC)``, or ``the last 24h``."""
    if bounds.rolling:
        return f"the last {period}"
    local = bounds.start.astimezone(_zone(time_zone))
    if period == "month":
        return f"{local:%B %Y} ({time_zone})"
    if period == "week":
        return f"the week from {local:%Y-%m-%d} ({time_zone})"
    return f"{local:%Y-%m-%d} ({time_zone})"


def spend_window(budget: Budget, now: datetime) -> timedelta:
    """The window ``cost_usd`` is queried over for spend so far: the elapsed part of the
    calendar period rounded up to whole seconds (at least 1s) so it renders in PromQL, or
    the rolling duration."""
    return elapsed_window(budget_period(budget, now), now)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_quiet_hours(windows: Sequence[QuietHours], now: datetime) -> bool:
    """True when ``now`` is inside any of the windows (in each window's time zone)."""
    for w in windows:
        local = now.astimezone(_zone(w.time_zone))
        minute = local.hour * 60 + local.minute
        start, end = _minutes(w.start), _minutes(w.end)
        today = _DAYS[local.weekday()]
        yesterday = _DAYS[(local.weekday() - 1) % 7]
        days = set(w.days)
        if start < end:
            if start <= minute < end and (not days or today in days):
                return True
        else:
            if minute >= start and (not days or today in days):
                return True
            if minute < end and (not days or yesterday in days):
                return True
    return False
