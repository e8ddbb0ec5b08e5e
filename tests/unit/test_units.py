"""Values in people's units: one formatting module for evidence, notifications, CLI and plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.api.types import Op
from agentmedic.api.units import (
    Unit,
    format_comparison,
    format_count,
    format_latency_ms,
    format_number,
    format_percent,
    format_timestamp,
    format_usd,
    format_value,
    format_window,
    unit_of,
)
from agentmedic.engine.conditions import ConditionEvidence
from agentmedic.engine.series import SeriesKey


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (25690.0, "25.7s"),
        (850.0, "850ms"),
        (10000.0, "10s"),
        (1500.0, "1.5s"),
        (999.6, "1s"),  # rounds up into seconds, never "1000ms"
        (3.25, "3.2ms"),
        (0.0, "0ms"),
        (125000.0, "125s"),
    ],
)
def test_latencies_read_as_seconds_or_milliseconds(ms: float, text: str) -> None:
    assert format_latency_ms(ms) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0.3, "30%"), (0.7, "70%"), (0.4058, "41%"), (0.025, "2.5%"), (0.0012, "0.12%"), (0, "0%")],
)
def test_ratios_read_as_percentages(ratio: float, text: str) -> None:
    assert format_percent(ratio) == text


@pytest.mark.parametrize(
    ("usd", "text"),
    [(12.4, "$12.40"), (16, "$16.00"), (1234.5, "$1,234.50"), (0.004, "$0.004"), (-3, "-$3.00")],
)
def test_money_reads_in_dollars_and_cents(usd: float, text: str) -> None:
    assert format_usd(usd) == text


def test_counts_are_whole_numbers_never_extrapolated_fractions() -> None:
    assert format_count(149.299) == "149"
    assert format_count(1501) == "1,501"
    assert format_count(0.4) == "0"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (25690.0, "25,690"),
        (0.4058, "0.4058"),
        (3.0, "3"),
        (3.14159, "3.142"),
        (2.5e-7, "2.500e-07"),
    ],
)
def test_other_numbers_have_four_significant_digits_and_no_exponent_in_range(
    value: float, text: str
) -> None:
    assert format_number(value) == text


def test_every_builtin_metric_has_a_unit_and_raw_queries_are_plain_numbers() -> None:
    assert unit_of("latency_p95_ms") is Unit.MILLISECONDS
    assert unit_of("tool_latency_p95_ms") is Unit.MILLISECONDS
    assert unit_of("success_rate") is Unit.RATIO
    assert unit_of("tool_error_rate") is Unit.RATIO
    assert unit_of("cost_usd") is Unit.USD
    assert unit_of("cost_usd_forecast") is Unit.USD
    assert unit_of("executions") is Unit.COUNT
    assert unit_of("tokens_per_execution") is Unit.COUNT
    assert unit_of(None) is Unit.NUMBER
    # A new built-in metric needs its catalog unit mapped here, or it reads as a plain number.
    assert {m for m in BUILTIN_METRICS if unit_of(m) is Unit.NUMBER} == set()


def test_values_never_read_in_exponent_form_and_missing_ones_say_so() -> None:
    assert format_value("latency_p95_ms", 2.569e04) == "25.7s"
    assert format_value(None, 2.569e04) == "25,690"
    assert format_value("success_rate", None) == "no data"
    assert format_value("cost_usd", float("nan")) == "NaN"
    assert format_value(None, float("inf")) == "+Inf"


@pytest.mark.parametrize(
    ("metric", "observed", "threshold", "shown"),
    [
        ("latency_p95_ms", 25690.0, 10000.0, ("25.7s", "10s")),
        # the threshold as written, not rounded to the display precision
        ("latency_p95_ms", 25690.0, 10050.0, ("25.7s", "10.05s")),
        # a value just under its threshold never reads equal to it
        ("latency_p95_ms", 9996.0, 10000.0, ("9.996s", "10s")),
        ("success_rate", 0.695, 0.7, ("69.5%", "70%")),
        ("cost_usd", 15.999, 16.0, ("$15.999", "$16.00")),
        ("cost_usd", 16.0, 16.0, ("$16.00", "$16.00")),
        ("executions", 100.4, 100.0, ("100.4", "100")),
        (None, 3.0001, 3.0, ("3.0001", "3")),
    ],
)
def test_a_comparison_shows_the_threshold_exactly_and_tells_close_values_apart(
    metric: str | None, observed: float, threshold: float, shown: tuple[str, str]
) -> None:
    assert format_comparison(metric, observed, threshold) == shown


def test_windows_read_as_written_and_timestamps_to_the_second() -> None:
    assert format_window(timedelta(minutes=5)) == "5m"
    assert format_window(timedelta(hours=1, minutes=30)) == "1h30m"
    moment = datetime(2026, 12, 3, 8, 29, 19, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-12-03T07:29:19Z"
    assert format_timestamp(datetime(2026, 12, 3, 8, 29, 19, 999999)) == "2026-12-03T08:29:19Z"


def test_the_issue_example_reads_in_peoples_units() -> None:
    """Issue #18: ``latency_p95_ms[5m] = 2.569e+04 > 10000 (n=149.299)``."""
    ev = ConditionEvidence(
        "latency_p95_ms", None, timedelta(minutes=5), Op.GT, 10000, 25690.0, executions=149.299
    )
    assert ev.describe() == "latency_p95_ms[5m] = 25.7s > 10s (n=149)"
    low = ConditionEvidence(
        "success_rate", None, timedelta(minutes=15), Op.LT, 0.7, 0.3, executions=60, min_samples=50
    )
    assert low.describe() == "success_rate[15m] = 30% < 70% (n=60)"


def test_too_few_executions_are_counted_down_not_rounded_up_to_min_samples() -> None:
    ev = ConditionEvidence(
        "error_rate", None, timedelta(minutes=5), Op.GT, 0.15, 0.5, executions=49.6, min_samples=50
    )
    assert ev.describe() == "error_rate[5m]: 49 executions, fewer than minSamples 50"


def test_a_series_names_its_window_as_a_policy_writes_it() -> None:
    """Backtest progress said ``executions[300s]`` for a 5m window."""
    assert str(SeriesKey("executions", None, timedelta(minutes=5))) == "executions[5m]"
    assert str(SeriesKey(None, "up", timedelta(hours=1))) == "query(up)[1h]"


def test_format_timestamp_of_an_aware_utc_time() -> None:
    assert format_timestamp(datetime(2025, 3, 3, 18, tzinfo=UTC)) == "2025-03-03T18:00:00Z"


def test_status_times_are_written_to_the_second() -> None:
    """``agentmedic status`` showed ``2026-12-03T08:40:05.969659Z``."""
    from agentmedic.api.types import AgentPolicyStatus, RecentAction

    at = datetime(2026, 12, 3, 8, 40, 5, 969659, tzinfo=UTC)
    action = RecentAction(
        time=at, agent="agents/a", rule="r", action="scaleToZero", outcome="Applied", reason="x"
    )
    status = AgentPolicyStatus(recent_actions=[action], last_evaluation_time=at)
    written = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written["recentActions"][0]["time"] == "2026-12-03T08:40:05Z"
    assert written["lastEvaluationTime"] == "2026-12-03T08:40:05Z"
    # Read back, it is the same second.
    again = AgentPolicyStatus.model_validate(written)
    assert again.recent_actions[0].time == at.replace(microsecond=0)
