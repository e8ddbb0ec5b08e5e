"""Budgets replayed over history (backtest/budgets.py): periods, stages, forecasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from agentmedic.api.budget import AgentBudgetSpec, BudgetStage, ClusterAgentBudgetSpec
from agentmedic.backtest.budgets import (
    TOTAL,
    BudgetDoc,
    BudgetReplay,
    earliest_needed,
    replay_budget,
)
from agentmedic.backtest.columns import Grid
from agentmedic.engine.series import AgentId

HOUR = timedelta(hours=1)
A, B = AgentId("pay", "a"), AgentId("pay", "b")
SPEND_FROM = datetime(2026, 10, 30, tzinfo=UTC)


def _doc(**spec: object) -> BudgetDoc:
    base: dict[str, object] = {
        "limitUSD": 100,
        "stages": [BudgetStage(name="warn", at_percent=80), BudgetStage(name="limit")],
    }
    base.update(spec)
    return BudgetDoc("AgentBudget", "cap", "pay", AgentBudgetSpec.model_validate(base), "f.yaml")


def _run(
    doc: BudgetDoc, start: datetime, end: datetime, rates: dict[AgentId, float]
) -> BudgetReplay:
    """Each agent spends ``rate`` dollars every hour from SPEND_FROM on."""
    fetch_from = earliest_needed(doc, start)
    first = -(-(start - fetch_from) // HOUR)  # whole steps, rounded up
    grid = Grid(start - first * HOUR, end, HOUR)
    steps = {
        agent: [rate if t > SPEND_FROM else 0.0 for t in grid.times()]
        for agent, rate in rates.items()
    }
    return replay_budget(doc, grid, steps, first)


def _crossings(replay: BudgetReplay) -> list[tuple[str, datetime, str, bool]]:
    return [(c.stage.name, c.at, c.trigger, c.before_range) for c in replay.crossings]


def test_a_utc_month_boundary_restarts_the_spend_and_stages_cross_again() -> None:
    replay = _run(
        _doc(),
        datetime(2026, 10, 30, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
        {A: 1.0, B: 1.0},
    )
    # October: $2/h from Oct 30 00:00 reaches $80 at 40 h; $94 at Oct 31 23:00, never $100.
    # November: the step ending at Nov 1 00:00 is November's, so $80 39 h after it; $100
    # would come at Nov 3 01:00, after the range.
    assert _crossings(replay) == [
        ("warn", datetime(2026, 10, 31, 16, tzinfo=UTC), "spend", False),
        ("warn", datetime(2026, 11, 2, 15, tzinfo=UTC), "spend", False),
    ]
    line = replay.lines[AgentId("", TOTAL)]
    times = replay.times
    assert line[times.index(datetime(2026, 10, 31, 23, tzinfo=UTC))] == 94.0
    assert line[times.index(datetime(2026, 11, 1, tzinfo=UTC))] == 2.0
    october = replay.periods[0]
    assert (october.start, october.spend_usd, october.complete) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        94.0,
        True,
    )
    assert october.stages == ("warn",)
    november = replay.periods[1]
    assert (november.spend_usd, november.complete) == (2.0 * 49, False)


def test_a_berlin_month_starts_an_hour_earlier_in_utc() -> None:
    replay = _run(
        _doc(timeZone="Europe/Berlin"),
        datetime(2026, 10, 30, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
        {A: 2.0},
    )
    warns = [c.at for c in replay.crossings if c.stage.name == "warn"]
    # Berlin's November starts at Oct 31 23:00 UTC: $80 39 h after it.
    assert warns == [datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 2, 14, tzinfo=UTC)]


def test_a_forecast_stage_acts_before_the_spend_reaches_it() -> None:
    doc = _doc(
        stages=[BudgetStage(name="early", at_percent=100, on_forecast=True)],
        forecastWindow="6h",
    )
    start = datetime(2026, 11, 1, tzinfo=UTC)
    replay = _run(doc, start, datetime(2026, 11, 2, tzinfo=UTC), {A: 0.2})
    (crossing,) = replay.crossings
    # November's first step: $0.20 spent; the last 6 h burnt $1.20, i.e. $0.20/h over the
    # 720 hours left: $144.20 forecast, beyond $100 at once. Spend alone needs 500 hours.
    assert crossing.trigger == "forecast"
    assert crossing.at == start
    assert crossing.spend_usd == pytest.approx(0.2)
    assert crossing.forecast_usd == pytest.approx(0.2 + 0.2 * 720)
    assert crossing.limit_at == start + HOUR * (99.8 / 0.2)


def test_per_agent_budgets_replay_each_agent_on_its_own() -> None:
    replay = _run(
        _doc(appliesTo="perAgent"),
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
        {A: 4.0, B: 1.0},
    )
    agents = {(c.stage.name, c.agent) for c in replay.crossings}
    assert agents == {("warn", A), ("limit", A)}  # b spends $48 by Nov 3
    assert set(replay.lines) == {A, B}


def test_a_stage_reached_before_the_range_in_the_same_period_is_marked() -> None:
    doc = _doc(
        stages=[BudgetStage(name="early", at_percent=10), BudgetStage(name="warn", at_percent=80)]
    )
    replay = _run(
        doc, datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC), {A: 2.0}
    )
    # November's $10 at Nov 1 04:00, before the range; $80 at Nov 2 15:00, inside it.
    assert _crossings(replay) == [
        ("early", datetime(2026, 11, 1, 4, tzinfo=UTC), "spend", True),
        ("warn", datetime(2026, 11, 2, 15, tzinfo=UTC), "spend", False),
    ]


def test_a_rolling_budget_crosses_each_time_it_rises_back_above() -> None:
    doc = _doc(period="24h", stages=[BudgetStage(name="limit", at_percent=100)], limitUSD=20)
    grid = Grid(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC), HOUR)
    # $2/h on day 2 and day 4, nothing otherwise: the 24 h sum passes $20 twice.
    steps = {A: [2.0 if t.day in (2, 4) else 0.0 for t in grid.times()]}
    replay = replay_budget(doc, grid, steps, 0)
    assert [c.at for c in replay.crossings] == [
        datetime(2026, 11, 2, 9, tzinfo=UTC),  # the 10th $2 step of day 2
        datetime(2026, 11, 4, 9, tzinfo=UTC),
    ]


def test_a_cluster_budget_names_its_namespaces() -> None:
    spec = ClusterAgentBudgetSpec.model_validate({"limitUSD": 5, "namespaces": ["a", "b"]})
    doc = BudgetDoc("ClusterAgentBudget", "team", None, spec, "f.yaml")
    assert doc.namespaces == ("a", "b")
    assert doc.label == "ClusterAgentBudget team"
    start = datetime(2026, 11, 15, tzinfo=UTC)
    assert earliest_needed(doc, start) == datetime(2026, 11, 1, tzinfo=UTC)


# -- the spend per step, from raw counter values -------------------------------------------


def test_step_spend_is_the_difference_of_counter_values_with_resets_and_gaps() -> None:
    from agentmedic.backtest.budget_history import step_spend

    nan = float("nan")
    # baseline 5; +1; a gap (no sample) then +2 over the gap; a reset to 0.5; +0.5
    spend, born, resets = step_spend([5.0, 6.0, nan, 8.0, 0.5, 1.0])
    assert spend == [0.0, 1.0, 0.0, 2.0, 0.5, 0.5]
    assert (born, resets) == (False, 1)


def test_a_series_born_after_the_first_moment_counts_its_first_value() -> None:
    from agentmedic.backtest.budget_history import step_spend

    nan = float("nan")
    spend, born, resets = step_spend([nan, nan, 0.25, 1.0])
    assert spend == [0.0, 0.0, 0.25, 0.75]
    assert (born, resets) == (True, 0)


def test_the_fetch_grid_reaches_back_to_the_first_period_and_one_baseline_step() -> None:
    from agentmedic.backtest.budget_history import budget_grid

    start = datetime(2026, 11, 2, tzinfo=UTC)
    grid, first = budget_grid([_doc(timeZone="Europe/Berlin")], start, start + HOUR, HOUR)
    assert grid.at(first) == start
    assert grid.start == datetime(2026, 10, 31, 22, tzinfo=UTC)  # 23:00Z minus the baseline


# -- the panels drawn ----------------------------------------------------------------------


def test_each_crossing_is_a_named_marker_and_labels_never_overlap_in_a_row() -> None:
    from agentmedic.backtest.budget_history import BudgetRun
    from agentmedic.backtest.budget_report import budget_panels

    stages = [
        BudgetStage(name=f"s{p}", at_percent=p, response="notify" if p < 90 else "stop")
        for p in (10, 12, 14, 16, 50, 90, 100)
    ]
    doc = _doc(appliesTo="perAgent", stages=stages, limitUSD=50)
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    replay = _run(doc, start, end, {A: 2.0, B: 1.9})
    run = BudgetRun(start=start, end=end, step=HOUR, replays=[replay])
    (panel,) = budget_panels(run, chars_per_axis=150.0)
    assert len(panel.markers) == len(replay.crossings) == 14
    assert {m.kind for m in panel.markers} == {"budgetNotify", "budgetStop"}
    assert all(m.label.startswith(("s1", "s5", "s9")) for m in panel.markers)
    rows: dict[int, list[tuple[float, float]]] = {}
    for label in panel.labels:
        rows.setdefault(label.row, []).append((label.x, label.x + label.width))
        assert label.text.split(": ")[0] in {"a", "b", "a, b"}
    for spans in rows.values():
        spans.sort()
        assert all(left[1] <= right[0] for left, right in pairwise(spans))
    placed = sum(len(label.text.split(": ")[0].split(", ")) for label in panel.labels)
    assert placed + panel.unlabelled == len(panel.markers)
    assert [t for _, t in panel.thresholds][-1] == "s100 100% $50.00"
