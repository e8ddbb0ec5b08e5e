"""The chargeback's pure parts: periods, the exact increase, grouping, prices, rendering."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmedic.cli.main import main
from agentmedic.instrument.prices import ModelPrice
from agentmedic.metrics.pricing import PriceBook
from agentmedic.report.cost import (
    CENT,
    CostQuery,
    Samples,
    build_report,
    explicit_period,
    increase,
    parse_period,
)
from agentmedic.report.cost_render import to_csv, to_json_dict

# -- periods ------------------------------------------------------------------------------------


def test_a_month_in_utc_is_from_its_first_midnight_to_the_next_months() -> None:
    p = parse_period("2026-11")
    assert (p.start, p.end) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_december_ends_at_the_next_years_first_midnight() -> None:
    p = parse_period("2026-12")
    assert p.end == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_berlin_month_starts_at_the_previous_days_23_00_utc() -> None:
    p = parse_period("2026-11", "Europe/Berlin")
    assert p.start.astimezone(UTC) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert p.start.isoformat() == "2026-11-01T00:00:00+01:00"


def test_a_new_york_november_crossing_the_dst_end_lasts_one_hour_more_than_30_days() -> None:
    p = parse_period("2026-11", "America/New_York")
    assert p.start.isoformat() == "2026-11-01T00:00:00-04:00"
    assert p.end.isoformat() == "2026-12-01T00:00:00-05:00"
    # Aware datetimes of one zone subtract as wall clocks: compare instants in UTC.
    assert p.end.astimezone(UTC) - p.start.astimezone(UTC) == timedelta(days=30, hours=1)
    assert p.end_ms - p.start_ms == (30 * 24 + 1) * 3_600_000


def test_an_iso_week_starts_on_its_monday() -> None:
    p = parse_period("2026-W45")
    assert p.start == datetime(2026, 11, 2, tzinfo=UTC)
    assert p.end - p.start == timedelta(days=7)


def test_a_day_in_a_spring_forward_zone_has_23_hours() -> None:
    p = parse_period("2026-03-29", "Europe/Berlin")
    assert p.end_ms - p.start_ms == 23 * 3_600_000


def test_a_local_midnight_skipped_by_dst_starts_the_day_at_its_first_existing_instant() -> None:
    # Chile springs forward at midnight: 2026-09-06 00:00 does not exist in Santiago.
    p = parse_period("2026-09-06", "America/Santiago")
    assert p.start.astimezone(UTC) == datetime(2026, 9, 6, 4, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-13", "2025-W53", "2026-02-30", "november", "2026/11"])
def test_a_malformed_period_names_the_flag_and_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"--period .* write 2026-11 \(a month\)"):
        parse_period(text)


def test_an_unknown_time_zone_names_the_flag() -> None:
    with pytest.raises(ValueError, match=r"--time-zone 'Mars/Olympus' is not a known time zone"):
        parse_period("2026-11", "Mars/Olympus")


def test_explicit_dates_are_local_midnights_and_to_is_exclusive() -> None:
    p = explicit_period("2026-11-01", "2026-11-16T12:00", "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    assert p.start == datetime(2026, 11, 1, tzinfo=berlin)
    assert p.end == datetime(2026, 11, 16, 12, tzinfo=berlin)
    q = explicit_period("2026-11-01T00:00:00Z", "2026-11-02T00:00:00+00:00", "Europe/Berlin")
    assert q.start.astimezone(UTC) == datetime(2026, 11, 1, tzinfo=UTC)


def test_to_before_from_is_refused() -> None:
    with pytest.raises(ValueError, match="--to must be after --from"):
        explicit_period("2026-11-02", "2026-11-01")


# -- the exact increase -------------------------------------------------------------------------


def test_increase_is_last_minus_the_sample_before_the_period() -> None:
    points = [(0, 5.0), (10, 7.0), (20, 9.0), (30, 12.0)]
    assert increase(points, 10, 30, previous=5.0) == (4.0, False)


def test_a_drop_is_a_reset_and_counts_the_new_value() -> None:
    points = [(10, 8.0), (20, 2.0), (30, 5.0)]
    assert increase(points, 10, 40, previous=6.0) == (2.0 + 2.0 + 3.0, False)


def test_a_series_without_an_earlier_sample_counts_its_first_value_from_zero() -> None:
    assert increase([(10, 3.0), (20, 4.0)], 0, 100, previous=None) == (4.0, True)


def test_samples_at_or_after_the_end_do_not_count() -> None:
    assert increase([(10, 3.0), (100, 50.0)], 0, 100, previous=1.0) == (2.0, False)


counters = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=1000)), min_size=1, max_size=60
)


def _series(steps: list[tuple[bool, int]]) -> tuple[list[tuple[int, float]], list[int]]:
    """Counter samples 10 ms apart from (restart?, amount) steps, and the amounts spent.

    A restart starts the counter again at the amount; it is only taken where it makes the
    counter drop, since a restart to a higher value is indistinguishable from spend and
    no rule could see it.
    """
    points, value = [], 0
    for i, (restart, amount) in enumerate(steps):
        value = amount if restart and amount < value else value + amount
        points.append((i * 10, float(value)))
    return points, [a for _, a in steps]


@given(counters)
def test_increase_recovers_the_amounts_spent_whatever_the_resets(
    steps: list[tuple[bool, int]],
) -> None:
    points, amounts = _series(steps)
    got, born = increase(points, 0, len(points) * 10, previous=None)
    assert got == sum(amounts)
    assert born


@given(counters, st.data())
def test_adjacent_periods_add_up_to_the_period_they_cover(
    steps: list[tuple[bool, int]], data: st.DataObject
) -> None:
    points, _ = _series(steps)
    end = len(points) * 10
    middle = data.draw(st.integers(min_value=0, max_value=end))
    first, _ = increase(points, 0, middle, previous=None)
    before = [v for t, v in points if t < middle]
    second, _ = increase(points, middle, end, previous=before[-1] if before else None)
    whole, _ = increase(points, 0, end, previous=None)
    assert first + second == whole


# -- queries ------------------------------------------------------------------------------------


def test_each_metric_is_read_in_whole_fleet_chunks_never_per_agent() -> None:
    q = CostQuery(period=parse_period("2026-11"), source="both", namespace='te"am')
    requests = q.requests()
    chunks = 30 * 4
    assert len(requests) == 2 * (1 + chunks)
    texts = {text for _, text, _ in requests}
    assert 'agent_cost_usd_total{agent!="", namespace="te\\"am"}[6h1s]' in texts
    assert any(t.startswith('last_over_time(agent_tokens_total{agent!=""') for t in texts)
    ends = sorted(at for metric, text, at in requests if "[6h1s]" in text and "cost" in metric)
    assert ends[-1] == datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)
    assert ends[0] == datetime(2026, 11, 1, 5, 59, 59, 999000, tzinfo=UTC)


def test_a_team_label_that_is_not_a_label_name_is_refused_before_any_request() -> None:
    q = CostQuery(period=parse_period("2026-11"), team_label="team-name")
    with pytest.raises(ValueError, match="--team-label 'team-name' is not a valid"):
        q.requests()


# -- the report ---------------------------------------------------------------------------------

NOV = parse_period("2026-11")
S = NOV.start_ms
PRICES = PriceBook({"m": ModelPrice(input=2.0, output=8.0, cached_input=0.5)})


def _samples() -> Samples:
    s = Samples(queries=3)
    cost = "agent_cost_usd_total"
    tokens = "agent_tokens_total"
    for agent, team, values in (
        ("a", "x", (1.0, 1.1, 1.3)),
        ("b", "x", (0.0, 0.2)),
        ("c", "y", (5.0, 1.0)),
    ):
        labels = {"agent": agent, "team": team, "model": "m"}
        s.add_points(cost, labels, [((S + i * 60_000) / 1000, v) for i, v in enumerate(values)])
        s.add_previous(cost, labels, values[0])
    for kind, value in (("input", 1_000_000.0), ("cached_input", 200_000.0), ("output", 50_000.0)):
        labels = {"agent": "a", "team": "x", "model": "m", "type": kind}
        s.add_points(tokens, labels, [(S / 1000, 0.0), (S / 1000 + 60, value)])
    return s


def test_groups_add_up_to_the_total_exactly() -> None:
    report = build_report(_samples(), CostQuery(period=NOV), prices=PRICES)
    by = {r.key: r.reported_usd for r in report.groups}
    # c: a reset from 5.0 to 1.0 counts 1.0; a: 0.3; b: 0.2.
    assert by == {("x",): Decimal("0.500000"), ("y",): Decimal("1.000000")}
    assert report.total_reported_usd == Decimal("1.500000") == sum(by.values())
    assert report.resets == 1


def test_tokens_are_priced_with_the_cached_part_of_input_at_the_cached_price() -> None:
    q = CostQuery(period=NOV, source="tokens", by=("agent",))
    report = build_report(_samples(), q, prices=PRICES)
    (row,) = report.groups
    # 0.8M x $2 + 0.2M x $0.50 + 0.05M x $8
    assert row.tokens_usd == Decimal("2.100000")
    assert row.tokens == {"input": 1_000_000, "output": 50_000, "cached_input": 200_000}


def test_source_both_flags_a_group_whose_figures_differ_beyond_the_threshold() -> None:
    q = CostQuery(period=NOV, source="both", by=("agent",))
    report = build_report(_samples(), q, prices=PRICES, threshold=0.05)
    rows = {r.key: r for r in report.groups}
    assert rows[("a",)].disagreement == pytest.approx(2.1 / 0.3 - 1)
    assert rows[("a",)].flagged
    assert rows[("b",)].disagreement is not None
    assert rows[("b",)].disagreement < 0
    assert rows[("b",)].flagged  # tokens 0 against 0.2 reported


def test_an_unpriced_model_is_named_and_not_compared() -> None:
    q = CostQuery(period=NOV, source="both", by=("agent",))
    report = build_report(_samples(), q, prices=PriceBook({}))
    row = next(r for r in report.groups if r.key == ("a",))
    assert row.unpriced_models == ("m",)
    assert row.disagreement is None
    assert not row.flagged
    assert report.unpriced_models == ("m",)


def test_csv_and_json_carry_the_same_total_and_the_rule() -> None:
    q = CostQuery(period=NOV, by=("team", "agent"))
    report = build_report(_samples(), q, prices=PRICES)
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["team", "agent", "reported_usd"]
    assert rows[-1] == ["TOTAL", "", "1.500000"]
    assert sum(Decimal(r[2]) for r in rows[1:-1]) == Decimal(rows[-1][2])
    data = to_json_dict(report)
    json.dumps(data)
    assert data["total"]["reportedUSD"] == "1.500000"
    assert data["groups"][0]["key"] == {"team": "y", "agent": "c"}
    assert "later sample" in data["rule"]
    assert data["period"] == {
        "label": "2026-11",
        "timeZone": "UTC",
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-12-01T00:00:00+00:00",
    }


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-11", "--from", "2026-11-01"], "--period or --from/--to, not both"),
        ([], "give --period 2026-11"),
        (["--period", "2026-11", "--by", "team,cost"], "--by 'team,cost': use team"),
        (["--period", "2026-11", "--lookback", "soon"], "--lookback 'soon' is not a duration"),
        (["--period", "2026-11", "--time-zone", "Nowhere/Land"], "--time-zone 'Nowhere/Land'"),
        (["--period", "2026-11", "--prices", "/nonexistent.yaml"], "--prices /nonexistent.yaml"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["report", "cost", "--prometheus", "http://127.0.0.1:9", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_price_file_with_a_bad_entry_is_refused_with_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.json"
    path.write_text('{"m": {"input": 1}}')
    code = main(
        ["report", "cost", "--prometheus", "http://x", "--period", "2026-11", "--prices", str(path)]
    )
    assert code == 2
    assert "missing 'output'" in capsys.readouterr().err


def test_a_period_that_has_not_ended_says_its_figures_are_to_date() -> None:
    q = CostQuery(period=NOV)
    during = build_report(_samples(), q, prices=PRICES, now=datetime(2026, 11, 20, tzinfo=UTC))
    after = build_report(_samples(), q, prices=PRICES, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert any("to date, not final" in w for w in to_json_dict(during)["warnings"])
    assert not any("to date" in w for w in to_json_dict(after)["warnings"])


class _Backend:
    """Answers the report's queries from samples in memory, with a range selector's left
    edge closed (Prometheus 2) or open (Prometheus 3)."""

    def __init__(self, points: list[tuple[int, float]], *, left_closed: bool) -> None:
        self.points = points
        self.left_closed = left_closed
        self.queries: list[str] = []

    async def query(self, text: str, at: datetime) -> Any:
        from agentmedic.api.durations import parse_duration
        from agentmedic.metrics import QueryResult, RangeSeries, Sample

        self.queries.append(text)
        t = round(at.timestamp() * 1000)
        window = round(parse_duration(text.rsplit("[", 1)[1].split("]")[0]).total_seconds() * 1000)
        inside = [
            (ts, v)
            for ts, v in self.points
            if (t - window <= ts if self.left_closed else t - window < ts) and ts <= t
        ]
        labels = {"agent": "a", "team": "x", "model": "m"}
        if text.startswith("last_over_time("):
            samples = (Sample(labels, inside[-1][1]),) if inside else ()
            return QueryResult("vector", samples=samples)
        pts = tuple((ts / 1000, v) for ts, v in inside)
        return QueryResult("matrix", series=(RangeSeries(labels, pts),) if pts else ())

    async def query_range(self, *args: Any) -> Any:
        raise AssertionError("the report reads raw samples with instant queries only")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("left_closed", [True, False])
def test_samples_on_chunk_edges_count_once_whatever_the_backends_range_semantics(
    left_closed: bool,
) -> None:
    import asyncio

    from agentmedic.report.cost import gather

    day = parse_period("2026-11-03")
    q = CostQuery(period=day, chunk=timedelta(hours=1))
    start = day.start_ms
    hour = 3_600_000
    # A sample on every chunk edge (and one at the period's end, which is the next day's).
    points = [(start - hour, 10.0)] + [(start + i * hour, 10.0 + i + 1) for i in range(25)]
    backend = _Backend(points, left_closed=left_closed)
    samples = asyncio.run(gather(backend, q))
    report = build_report(samples, q, prices=PRICES)
    assert report.total_reported_usd == Decimal(24)
    assert len(backend.queries) == 1 + 24


def test_rounding_to_the_cent_keeps_rows_adding_up_to_the_printed_total() -> None:
    s = Samples(queries=1)
    # 0.005, 0.015 and 0.025 round half to even to 0.00, 0.02 and 0.02: the total printed
    # is their sum, 0.04, not the exact sum 0.045 rounded.
    for agent, value in (("a", 0.005), ("b", 0.015), ("c", 0.025)):
        labels = {"agent": agent, "team": agent, "model": "m"}
        s.add_points("agent_cost_usd_total", labels, [(S / 1000, 0.0), (S / 1000 + 60, value)])
        s.add_previous("agent_cost_usd_total", labels, 0.0)
    report = build_report(s, CostQuery(period=NOV), prices=PRICES, quantum=CENT)
    cents = {r.key[0]: r.reported_usd for r in report.groups}
    assert cents == {"a": Decimal("0.00"), "b": Decimal("0.02"), "c": Decimal("0.02")}
    assert report.total_reported_usd == Decimal("0.04") == sum(cents.values())
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[-1] == ["TOTAL", "0.04"]
    assert "0.01 USD" in to_json_dict(report)["rule"]
