"""Calendar periods in a time zone: the day, ISO week or month holding a moment (pure).

A period is the half-open interval ``[start, end)`` between two local midnights of an IANA
time zone: a Europe/Berlin November starts at 2026-10-31T23:00Z and ends at
2026-11-30T23:00Z; a New York November is an hour longer than 30 days (the clocks go back
on its first Sunday). A local midnight a DST change skips starts the period at the first
local time that exists after it. Finance's budgets (``period``, ``timeZone``) and the
budget backtest use it; the chargeback report has the same rule for its ``--period``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CALENDAR_PERIODS", "calendar_period", "local_midnight", "zone"]

CALENDAR_PERIODS = ("day", "week", "month")


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; ``ValueError`` naming it otherwise."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a known time zone; use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from None


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (aware, in ``tz``)."""
    naive = datetime(day.year, day.month, day.day, tzinfo=tz)
    # fromtimestamp of the round-tripped instant moves a skipped midnight to the first
    # local time that exists after it.
    return datetime.fromtimestamp(naive.timestamp(), tz)


def calendar_period(kind: str, time_zone: str, at: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of the ``day``, ``week`` (from Monday) or ``month`` holding ``at``
    in ``time_zone``, in UTC (Python subtracts two datetimes of one zone by their wall
    clocks, which would lose a DST hour)."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    tz = zone(time_zone)
    local = at.astimezone(tz).date()
    if kind == "day":
        first, following = local, local + timedelta(days=1)
    elif kind == "week":
        first = local - timedelta(days=local.weekday())
        following = first + timedelta(days=7)
    elif kind == "month":
        first = local.replace(day=1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    else:
        raise ValueError(f"a calendar period is day, week or month, not {kind!r}")
    return (
        local_midnight(first, tz).astimezone(UTC),
        local_midnight(following, tz).astimezone(UTC),
    )
