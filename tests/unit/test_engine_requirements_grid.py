"""``requirements_over``: a policy's needs over a backtest's time grid, in one answer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentmedic.engine import requirements, requirements_over
from agentmedic.engine.requirements import spend_key
from tests.unit.test_engine_builders import T0, cond, policy, rule

STEP = timedelta(hours=6)
TIMES = [T0 + i * STEP for i in range(4 * 9)]  # Monday noon to the next Wednesday morning


def _budget(period: str) -> dict[str, object]:
    return {"period": period, "limitUSD": 10, "hard": {"actions": [{"scaleToZero": {}}]}}


def test_without_a_budget_every_moment_needs_the_same_fixed_keys() -> None:
    spec = policy(rule("r", cond(min_samples=5)), rule("s", cond(metric="latency_p95_ms")))
    needs = requirements_over(spec, TIMES)
    assert not needs.calendar_spend
    assert set(needs.fixed) == requirements(spec, TIMES[0])
    assert list(needs.fixed) == sorted(needs.fixed, key=str)
    assert needs.spend_key(3) is None


def test_a_rolling_budget_s_spend_is_a_fixed_key() -> None:
    spec = policy(rule("r"), budget=_budget("24h"))
    needs = requirements_over(spec, TIMES)
    assert not needs.calendar_spend
    assert spend_key(spec, TIMES[5]) in needs.fixed
    assert needs.spend_key(5) == spend_key(spec, TIMES[5])
    assert all(set(needs.fixed) == requirements(spec, t) for t in TIMES)


@pytest.mark.parametrize(("period", "periods"), [("day", 10), ("week", 2)])
def test_a_calendar_budget_s_spend_changes_key_every_moment_within_its_periods(
    period: str, periods: int
) -> None:
    spec = policy(rule("r", cond(min_samples=5)), budget=_budget(period))
    needs = requirements_over(spec, TIMES)
    assert needs.calendar_spend
    for i, t in enumerate(TIMES):
        assert needs.spend_key(i) == spend_key(spec, t)
        assert set(needs.fixed) | {needs.spend_key(i)} == requirements(spec, t)
    assert len(needs.period_starts) == len(needs.period_ends) == periods
    assert needs.period_starts[0] == 0
    assert needs.period_ends[-1] == len(TIMES) - 1
    for start, end in zip(needs.period_starts[1:], needs.period_ends, strict=False):
        assert start == end + 1, "periods follow each other without a gap"


def test_an_empty_grid_needs_nothing() -> None:
    spec = policy(rule("r"), budget=_budget("day"))
    needs = requirements_over(spec, [])
    assert needs.fixed == ()
    assert not needs.calendar_spend
