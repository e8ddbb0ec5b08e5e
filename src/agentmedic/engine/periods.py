"""Time arithmetic with time as a parameter: budget periods and quiet-hours windows.

Budget periods are calendar periods in UTC (a day from 00:00, a week from Monday
00:00, a month from the 1st) or a rolling duration ending now. Quiet hours are
wall-clock windows in an IANA time zone; a window whose end is earlier than its start
runs overnight into the next day, and ``days`` names the days on which it starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from agentmedic.api.durations import parse_duration
from agentmedic.api.types import Budget, QuietHours

__all__ = ["Period", "budget_period", "in_quiet_hours", "spend_window"]

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
    """The period ``now`` falls in."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if budget.period == "day":
        return Period(midnight, midnight + timedelta(days=1), rolling=False)
    if budget.period == "week":
        start = midnight - timedelta(days=now.weekday())
        return Period(start, start + timedelta(weeks=1), rolling=False)
    if budget.period == "month":
        start = midnight.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return Period(start, end, rolling=False)
    duration = parse_duration(budget.period)
    return Period(now - duration, now, rolling=True)


def spend_window(budget: Budget, now: datetime) -> timedelta:
    """The window ``cost_usd`` is queried over for spend so far: the elapsed part of the
    calendar period rounded up to whole seconds (at least 1s) so it renders in PromQL, or
    the rolling duration."""
    period = budget_period(budget, now)
    if period.rolling:
        return period.length
    elapsed = (now - period.start).total_seconds()
    return timedelta(seconds=max(1, math.ceil(elapsed)))


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
