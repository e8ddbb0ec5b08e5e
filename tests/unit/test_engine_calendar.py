"""Calendar periods in a time zone (engine/calendar.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.calendar import calendar_period


def test_a_berlin_month_starts_at_23_00_utc_the_day_before() -> None:
    start, end = calendar_period("month", "Europe/Berlin", datetime(2026, 11, 15, tzinfo=UTC))
    assert start.astimezone(UTC) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 11, 30, 23, tzinfo=UTC)


def test_the_last_utc_hour_of_october_is_in_berlins_november() -> None:
    start, _ = calendar_period("month", "Europe/Berlin", datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    assert start == datetime(2026, 10, 31, 23, tzinfo=UTC)  # Berlin's November 1st
    start, _ = calendar_period("month", "UTC", datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    assert start == datetime(2026, 10, 1, tzinfo=UTC)


def test_a_new_york_november_is_one_hour_longer_than_30_days() -> None:
    start, end = calendar_period("month", "America/New_York", datetime(2026, 11, 2, tzinfo=UTC))
    assert end - start == timedelta(days=30, hours=1)


def test_december_ends_at_next_years_first_midnight() -> None:
    _, end = calendar_period("month", "UTC", datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert end == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_week_starts_on_monday_and_a_day_at_midnight() -> None:
    at = datetime(2026, 11, 19, 12, tzinfo=UTC)  # a Thursday
    assert calendar_period("week", "UTC", at) == (
        datetime(2026, 11, 16, tzinfo=UTC),
        datetime(2026, 11, 23, tzinfo=UTC),
    )
    assert calendar_period("day", "UTC", at)[0] == datetime(2026, 11, 19, tzinfo=UTC)


def test_a_skipped_midnight_starts_the_day_at_its_first_existing_instant() -> None:
    # Santiago moved its clocks from 00:00 to 01:00 on 2026-09-06.
    start, end = calendar_period("day", "America/Santiago", datetime(2026, 9, 6, 12, tzinfo=UTC))
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)  # 01:00 at -03:00
    assert end - start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("kind", "zone", "says"),
    [("quarter", "UTC", "day, week or month"), ("month", "Mars/Olympus", "'Mars/Olympus'")],
)
def test_bad_periods_and_zones_are_named(kind: str, zone: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        calendar_period(kind, zone, datetime(2026, 11, 1, tzinfo=UTC))
