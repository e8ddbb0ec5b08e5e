"""Budgets: periods, the spend window, soft/hard stages, forecast, scope, the next period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.api.types import Budget
from agentmedic.engine import AgentStatus, DecisionReason, requirements
from agentmedic.engine.periods import budget_period, spend_window
from agentmedic.engine.requirements import burn_key, spend_key
from tests.unit.test_engine_builders import T0, Sim, agent, fleet, kinds, policy


def _budget(**kw: Any) -> Budget:
    return Budget.model_validate({"limitUSD": 50, **kw})


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "period", "now", "start", "end"),
    [
        ("day starts at 00:00 UTC", "day", d(2025, 3, 3, 12), d(2025, 3, 3), d(2025, 3, 4)),
        ("week starts on Monday", "week", d(2025, 3, 6, 9), d(2025, 3, 3), d(2025, 3, 10)),
        (
            "a Sunday belongs to the week of the Monday before",
            "week",
            d(2025, 3, 9, 23),
            d(2025, 3, 3),
            d(2025, 3, 10),
        ),
        ("month starts on the 1st", "month", d(2025, 2, 28, 23), d(2025, 2, 1), d(2025, 3, 1)),
        (
            "December's month ends in January",
            "month",
            d(2025, 12, 31),
            d(2025, 12, 1),
            d(2026, 1, 1),
        ),
        (
            "a rolling duration ends now",
            "24h",
            d(2025, 3, 3, 12),
            d(2025, 3, 2, 12),
            d(2025, 3, 3, 12),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and " " in x else "",
)
def test_budget_periods(
    case: str, period: str, now: datetime, start: datetime, end: datetime
) -> None:
    p = budget_period(_budget(period=period), now)
    assert (p.start, p.end) == (start, end), case
    assert p.rolling == (period not in ("day", "week", "month"))


def test_period_in_another_time_zone_is_still_the_utc_calendar_day() -> None:
    from zoneinfo import ZoneInfo

    now = datetime(2025, 3, 4, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 23:30 UTC on the 3rd
    assert budget_period(_budget(), now).start == d(2025, 3, 3)


def test_spend_window_is_the_elapsed_period_rounded_up_to_whole_seconds() -> None:
    b = _budget()
    assert spend_window(b, d(2025, 3, 3, 12)) == timedelta(hours=12)
    assert spend_window(b, d(2025, 3, 3, 0, 0, 1).replace(microsecond=1)) == timedelta(seconds=2)
    assert spend_window(b, d(2025, 3, 3)) == timedelta(seconds=1), "never a zero window"
    assert spend_window(_budget(period="7d"), d(2025, 3, 3)) == timedelta(days=7)


def test_requirements_ask_for_spend_so_far_and_the_recent_burn() -> None:
    spec = policy(budget={"limitUSD": 50, "hard": {"actions": []}, "forecastWindow": "30m"})
    keys = requirements(spec, T0)
    assert {(k.metric, k.window) for k in keys} >= {
        ("cost_usd", timedelta(hours=12)),
        ("cost_usd", timedelta(minutes=30)),
    }
    assert spend_key(spec, T0 + timedelta(seconds=30)) != spend_key(spec, T0)
    assert burn_key(spec) in keys


# ---------------------------------------------------------------------------- stages


def _spec(**budget: Any) -> Any:
    doc = {
        "limitUSD": 50,
        "soft": {
            "atPercent": 80,
            "actions": [{"switchModel": {}}, {"notify": {"channels": ["finance"]}}],
        },
        "hard": {"actions": [{"scaleToZero": {}}, {"notify": {"channels": ["finance"]}}]},
        **budget,
    }
    return policy(budget=doc, guardrails={"maxActionsPerHour": 100})


def test_soft_limit_switches_the_agent_one_tier_cheaper_once_per_period() -> None:
    sim = Sim(_spec(), fleet(4))
    o = sim.step(a0={"spend": 41.0})
    (dec,) = o.decisions
    assert (dec.kind.value, dec.rule, dec.to_model, dec.reason_code) == (
        "switchModel",
        "budget.soft",
        "gpt-4o-mini",
        DecisionReason.BUDGET_SOFT_LIMIT,
    )
    assert dec.evidence.holds()
    assert dec.evidence.conditions[0].threshold == 40
    (n,) = o.notifications
    assert (n.channels, n.rule, n.agent) == (("finance",), "budget.soft", agent("a0"))
    assert n.undo == "agentmedic restore deployment/a0 -n agents"
    assert all(not x.decisions for x in sim.steps(5, a0={"spend": 45.0}))


def test_hard_limit_scales_to_zero() -> None:
    sim = Sim(_spec(), fleet(4))
    o = sim.step(a0={"spend": 50.0})
    assert kinds(o) == [("scaleToZero", "a0")]
    assert o.decisions[0].reason_code == DecisionReason.BUDGET_HARD_LIMIT
    assert {n.rule for n in o.notifications} == {"budget.soft", "budget.hard"}
    assert o.agents[agent("a0")] == AgentStatus.DISABLED


def test_hard_after_soft_disables_the_downgraded_agent() -> None:
    sim = Sim(_spec(), fleet(4))
    sim.step(a0={"spend": 41.0})
    assert kinds(sim.step(a0={"spend": 51.0})) == [("scaleToZero", "a0")]


def test_forecast_fires_the_soft_stage_early_with_the_crossing_time() -> None:
    soft = {"atPercent": 80, "forecast": True, "actions": [{"notify": {"channels": ["finance"]}}]}
    sim = Sim(_spec(soft=soft), fleet(4))
    # 12:00, 20 USD so far, 5 USD in the last hour: 20 + 5 * 12 h = 80 by midnight.
    o = sim.step(a0={"spend": 20.0, "burn": 5.0})
    assert o.spend is not None
    assert o.spend.forecast_usd == pytest.approx(80.0)
    assert o.spend.crosses_at == T0 + timedelta(hours=6)
    (n,) = o.notifications
    assert n.rule == "budget.soft"
    assert n.summary.endswith(
        "cost_usd_forecast[1h] = $80.00 >= $50.00; "
        "projected to reach $50.00 at 2025-03-03T18:00:00Z"
    )
    assert n.evidence is not None
    assert n.evidence.holds()


def test_no_crossing_time_when_the_limit_is_not_reached_this_period() -> None:
    o = Sim(_spec(), fleet(4)).step(a0={"spend": 20.0, "burn": 1.0})
    assert o.spend is not None
    assert o.spend.crosses_at is None
    assert o.spend.forecast_usd == pytest.approx(32.0)


def test_spend_report_sums_the_agents_in_agent_scope() -> None:
    o = Sim(_spec(), fleet(3)).step(a0={"spend": 10.0}, a1={"spend": 5.0}, a2={"spend": None})
    assert o.spend is not None
    assert (o.spend.usd, o.spend.limit_usd, o.spend.period_start) == (15.0, 50, d(2025, 3, 3))
    assert o.spend.per_agent == {agent("a0"): 10.0, agent("a1"): 5.0}
    status = o.spend.to_status()
    assert status.usd == 15.0


def test_missing_spend_is_no_verdict_and_no_action() -> None:
    o = Sim(_spec(), fleet(4)).step(a0={"spend": None})
    assert not o.decisions


def test_policy_scope_sums_the_fleet_and_acts_on_every_agent_biggest_spender_first() -> None:
    sim = Sim(_spec(scope="policy"), fleet(3))
    o = sim.step(a0={"spend": 10.0}, a1={"spend": 25.0}, a2={"spend": 6.0})  # 41 of 50
    assert [(d.kind.value, d.agent.name) for d in o.decisions] == [
        ("switchModel", "a1"),
        ("switchModel", "a0"),
        ("switchModel", "a2"),
    ]
    assert {d.episode.split(":")[1] for d in o.decisions} == {"agents/a0", "agents/a1", "agents/a2"}
    (n,) = o.notifications
    assert (n.agent, n.rule, n.state) == (None, "budget.soft", "firing")
    assert "applies to all 3 agents" in n.summary


# ---------------------------------------------------------------------------- next period


def test_a_new_period_restores_what_the_budget_changed() -> None:
    sim = Sim(_spec(), fleet(4))
    sim.step(a0={"spend": 41.0}, a1={"spend": 55.0})
    sim.step(a0={"spend": 42.0}, a1={"spend": 55.0})
    assert (sim.workload("a0").model, sim.workload("a1").replicas) == ("gpt-4o-mini", 0)
    midnight = sim.step(after=timedelta(hours=12))  # 00:00:30 on Tuesday
    restores = [(d.kind.value, d.agent.name, d.reason_code) for d in midnight.decisions]
    assert restores == [
        ("restore", "a0", DecisionReason.BUDGET_PERIOD_ENDED),
        ("restore", "a1", DecisionReason.BUDGET_PERIOD_ENDED),
    ]
    assert (sim.workload("a0").model, sim.workload("a0").downgraded) == ("gpt-4o", None)
    assert (sim.workload("a1").replicas, sim.workload("a1").disabled) == (2, None)
    resolved = {(n.agent.name if n.agent else None, n.rule) for n in midnight.notifications}
    assert resolved == {("a0", "budget.soft"), ("a1", "budget.soft"), ("a1", "budget.hard")}
    assert all(n.reason_code == DecisionReason.PERIOD_ENDED for n in midnight.notifications)
    after = sim.step()
    assert not after.decisions
    assert after.counts.healthy == 4


def test_on_new_period_keep_leaves_the_changes_for_a_person() -> None:
    sim = Sim(_spec(onNewPeriod="keep"), fleet(4))
    sim.steps(2, a1={"spend": 55.0})
    midnight = sim.step(after=timedelta(hours=12))
    assert not midnight.decisions
    assert midnight.agents[agent("a1")] == AgentStatus.DISABLED


def test_rolling_period_ends_when_spend_falls_back_below_the_threshold() -> None:
    sim = Sim(_spec(period="24h"), fleet(4))
    sim.steps(2, a0={"spend": 41.0})
    assert sim.workload("a0").model == "gpt-4o-mini"
    assert not sim.step(a0={"spend": 41.0}).decisions
    o = sim.step(a0={"spend": 30.0})
    assert [(d.kind.value, d.reason_code) for d in o.decisions] == [
        ("restore", DecisionReason.BUDGET_PERIOD_ENDED)
    ]
    assert sim.workload("a0").model == "gpt-4o"


def test_rolling_stage_does_not_flap_when_spend_jitters_at_the_threshold() -> None:
    """Soft is at 40 (80% of 50): a firing stage holds until spend is below 36 (90% of it)."""
    sim = Sim(_spec(period="24h"), fleet(4))
    sim.steps(2, a0={"spend": 40.5})
    assert sim.workload("a0").model == "gpt-4o-mini"
    for spend in (39.9, 38.0, 36.5):
        assert not sim.step(a0={"spend": spend}).decisions, spend
    assert sim.workload("a0").model == "gpt-4o-mini"
    o = sim.step(a0={"spend": 35.0})
    assert [d.reason_code for d in o.decisions] == [DecisionReason.BUDGET_PERIOD_ENDED]


def test_budget_changes_wait_for_quiet_hours_to_end() -> None:
    doc = {"limitUSD": 50, "hard": {"actions": [{"scaleToZero": {}}]}}
    spec = policy(budget=doc, guardrails={"quietHours": [{"start": "11:00", "end": "12:01"}]})
    sim = Sim(spec, fleet(4))
    assert [d.suppressed_by for d in sim.step(a0={"spend": 60.0}).decisions] == ["QuietHours"]
    sim.step(a0={"spend": 60.0})
    assert kinds(sim.step(a0={"spend": 60.0})) == [("scaleToZero", "a0")]


def test_a_rolling_stage_whose_memory_was_lost_after_it_acted_does_not_step_down_again() -> None:
    # The operator switched a0's model and was killed before it saved the engine's memory:
    # the next cycle starts from the memory before, but the workload's record shows the
    # stage's switch within the window, so it is the same episode and it is done.
    sim = Sim(_spec(period="24h"), fleet(4))
    (first,) = sim.step(a0={"spend": 41.0}).decisions
    assert (first.kind.value, first.to_model) == ("switchModel", "gpt-4o-mini")
    assert sim.workload("a0").model == "gpt-4o-mini"
    sim.state = None  # the memory of that cycle never reached the API server
    o = sim.step(a0={"spend": 41.0})
    assert not o.decisions
    assert sim.workload("a0").model == "gpt-4o-mini"
    assert o.state.agents[agent("a0")].rules["budget.soft"].episode == first.episode
