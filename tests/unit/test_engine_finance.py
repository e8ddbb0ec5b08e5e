"""Finance's budgets in the engine: periods in a time zone, figures, stages, verdicts, and
their precedence against a policy's own budget inside the policy's cycle."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentmedic.api.budget import ClusterAgentBudgetSpec, StageResponse
from agentmedic.engine import DecisionKind, DecisionReason
from agentmedic.engine.finance import (
    AgentSpendFigures,
    BudgetRef,
    BudgetVerdict,
    evaluate_budget,
    is_external_rule,
)
from agentmedic.engine.periods import describe_period, period_of
from agentmedic.engine.series import AgentId
from tests.unit.test_engine_builders import HEALTHY, NS, Sim, agent, fleet, policy

TEAM = BudgetRef("ClusterAgentBudget", "", "team-payments")
OWN = BudgetRef("AgentBudget", NS, "ceiling")


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def spec(**kw: Any) -> ClusterAgentBudgetSpec:
    return ClusterAgentBudgetSpec.model_validate({"limitUSD": 500, **kw})


def stages(*triples: tuple[str, float, str]) -> list[dict[str, Any]]:
    return [{"name": n, "atPercent": p, "response": r} for n, p, r in triples]


# ---------------------------------------------------------------------- periods


def test_a_month_in_berlin_starts_at_local_midnight() -> None:
    p = period_of("month", "Europe/Berlin", d(2026, 11, 30, 23, 30))  # 00:30 on Dec 1 in Berlin
    assert (p.start, p.end) == (d(2026, 11, 30, 23), d(2026, 12, 31, 23))
    assert describe_period("month", "Europe/Berlin", p) == "December 2026 (Europe/Berlin)"
    before = period_of("month", "Europe/Berlin", d(2026, 11, 30, 22, 59))
    assert before.start == d(2026, 10, 31, 23), "still November in Berlin"
    assert before.end == p.start


def test_the_day_the_clocks_change_is_23_hours_long() -> None:
    p = period_of("day", "Europe/Berlin", d(2026, 3, 29, 12))
    assert p.length == timedelta(hours=23)
    assert p.start == d(2026, 3, 28, 23)


def test_a_week_starts_on_monday_in_the_zone_and_utc_is_unchanged() -> None:
    p = period_of("week", "America/New_York", d(2026, 12, 7, 3))  # Sunday 22:00 in New York
    assert p.start == d(2026, 11, 30, 5)
    assert period_of("month", "UTC", d(2026, 12, 3)).start == d(2026, 12, 1)
    rolling = period_of("24h", "Europe/Berlin", d(2026, 12, 3))
    assert rolling.rolling
    assert rolling.length == timedelta(hours=24)


# ---------------------------------------------------------------------- figures


def test_total_budget_figures_and_evidence_in_peoples_units() -> None:
    now = d(2026, 12, 16, 11)  # 12:00 in Berlin, 15.5 of 31 days elapsed
    s = spec(timeZone="Europe/Berlin", forecastWindow="6h")
    spend = {
        AgentId("a", "x"): AgentSpendFigures(300.0, 6.0),
        AgentId("b", "y"): AgentSpendFigures(112.3, 0.0),
    }
    ev = evaluate_budget(TEAM, s, spend, now)
    assert ev.spent is not None
    assert abs(ev.spent - 412.3) < 1e-9
    assert ev.burn_per_hour == 1.0
    # 15.5 days left at $1/h: 412.30 + 372 = 784.30
    assert ev.forecast is not None
    assert abs(ev.forecast - 784.3) < 1e-6
    assert ev.stage == "warn"
    assert [a.name for a, _ in ev.top] == ["x", "y"]
    v = ev.verdicts[AgentId("b", "y")]
    assert v.stage == "warn"
    assert v.response == StageResponse.NOTIFY
    assert v.evidence == (
        "ClusterAgentBudget team-payments (total): $412.30 of $500.00 (82 %) in "
        "December 2026 (Europe/Berlin); forecast $784.30; stage warn (notify)"
    )
    assert v.as_evidence(v.period_start, now).holds()


def test_per_agent_budget_judges_each_agent_alone() -> None:
    s = spec(appliesTo="perAgent", limitUSD=100, stages=stages(("stop", 100, "stop")))
    spend = {
        AgentId("a", "big"): AgentSpendFigures(120.0, 0.0),
        AgentId("a", "small"): AgentSpendFigures(90.0, 0.0),
    }
    ev = evaluate_budget(TEAM, s, spend, d(2026, 12, 16))
    assert ev.verdicts[AgentId("a", "big")].response == StageResponse.STOP
    assert ev.verdicts[AgentId("a", "small")].stage is None
    assert ev.stage == "stop", "the furthest stage reached by any agent"
    assert ev.spent == 210.0
    total = evaluate_budget(
        TEAM, spec(limitUSD=200, stages=stages(("stop", 100, "stop"))), spend, d(2026, 12, 16)
    )
    assert all(v.response == StageResponse.STOP for v in total.verdicts.values()), (
        "total: the sum reaches the limit, every agent gets the verdict"
    )


def test_forecast_stage_and_the_strictest_reached_stage_decides() -> None:
    s = spec(
        limitUSD=100,
        forecastWindow="1h",
        stages=[
            {"name": "early", "atPercent": 100, "onForecast": True, "response": "downgrade"},
            {"name": "late", "atPercent": 150, "response": "notify"},
        ],
    )
    now = d(2026, 12, 31, 22)  # 2h before a UTC month ends
    ev = evaluate_budget(TEAM, s, {AgentId("a", "x"): AgentSpendFigures(60.0, 30.0)}, now)
    v = ev.verdicts[AgentId("a", "x")]
    assert ev.forecast == 120.0
    assert v.stage == "early"
    assert v.response == StageResponse.DOWNGRADE
    assert [c.metric for c in v.conditions] == ["cost_usd", "cost_usd_forecast"]
    later = evaluate_budget(TEAM, s, {AgentId("a", "x"): AgentSpendFigures(160.0, 0.0)}, now)
    assert later.stage == "late", "status shows the furthest stage"
    assert later.verdicts[AgentId("a", "x")].stage == "early", "the strictest response decides"


def test_rolling_stage_is_held_until_spend_falls_below_ninety_percent() -> None:
    s = spec(period="24h", limitUSD=100, stages=stages(("stop", 100, "stop")))
    x = AgentId("a", "x")
    first = evaluate_budget(TEAM, s, {x: AgentSpendFigures(101.0, 0.0)}, d(2026, 12, 3))
    assert first.stage == "stop"
    held = evaluate_budget(
        TEAM, s, {x: AgentSpendFigures(95.0, 0.0)}, d(2026, 12, 3, 1), first.reached
    )
    assert held.stage == "stop"
    assert held.verdicts[x].as_evidence(None, d(2026, 12, 3, 1)).holds()
    over = evaluate_budget(
        TEAM, s, {x: AgentSpendFigures(89.0, 0.0)}, d(2026, 12, 3, 2), held.reached
    )
    assert over.stage == ""
    fresh = evaluate_budget(TEAM, s, {x: AgentSpendFigures(95.0, 0.0)}, d(2026, 12, 3, 2))
    assert fresh.stage == "", "not held without the previous evaluation"


def test_agents_without_data_add_nothing_and_a_budget_without_data_reaches_nothing() -> None:
    s = spec(limitUSD=100)
    spend = {AgentId("a", "x"): AgentSpendFigures(None), AgentId("a", "y"): AgentSpendFigures(85.0)}
    ev = evaluate_budget(TEAM, s, spend, d(2026, 12, 3))
    assert ev.spent == 85.0
    assert ev.stage == "warn"
    assert ev.forecast is None, "no burn figure, no forecast"
    none = evaluate_budget(TEAM, s, {AgentId("a", "x"): AgentSpendFigures(None)}, d(2026, 12, 3))
    assert none.spent is None
    assert none.stage == ""
    assert none.verdicts[AgentId("a", "x")].stage is None


# ---------------------------------------------------------------------- inside a policy


def verdict(
    ref: BudgetRef, response: str | None, now: datetime, *, keep: bool = False, spent: float = 120
) -> BudgetVerdict:
    """What ``ref`` says of every agent: its stage ``limit`` reached with ``response``."""
    s = spec(
        limitUSD=100,
        onNewPeriod="keep" if keep else "restore",
        stages=stages(("limit", 100, response or "notify")),
    )
    v = evaluate_budget(ref, s, {agent("a0"): AgentSpendFigures(spent, 0.0)}, now).verdicts[
        agent("a0")
    ]
    return v if response is not None else dataclasses.replace(v, stage=None, response=None)


def give(sim: Sim, *verdicts: BudgetVerdict) -> None:
    sim.input = dataclasses.replace(
        sim.input,
        agents={a: dataclasses.replace(w, budgets=verdicts) for a, w in sim.input.agents.items()},
    )


def one_agent_sim(**kw: Any) -> Sim:
    return Sim(policy(**kw), agents={agent("a0"): fleet(1)[agent("a0")]}, start=d(2026, 12, 16))


def test_a_budget_stop_scales_the_agent_to_zero_and_the_reason_names_the_budget() -> None:
    sim = one_agent_sim()
    give(sim, verdict(TEAM, "stop", sim.now))
    out = sim.step()
    [dec] = out.workload_changes
    assert dec.kind == DecisionKind.SCALE_TO_ZERO
    assert dec.reason_code == DecisionReason.BUDGET_STAGE
    assert is_external_rule(dec.rule)
    assert TEAM.owns(dec.rule)
    assert "decided by ClusterAgentBudget team-payments (total): $120.00 of $100.00" in dec.reason
    assert dec.evidence.holds()
    assert dec.episode.endswith(f":{int(d(2026, 12, 1).timestamp())}"), "keyed by the period"
    give(sim, verdict(TEAM, "stop", sim.now + timedelta(seconds=30)))
    assert sim.step().workload_changes == [], "one change per episode"


def test_a_policy_budget_stop_beats_a_finance_downgrade_and_names_itself() -> None:
    sim = one_agent_sim(
        budget={"limitUSD": 50, "period": "month", "hard": {"actions": [{"scaleToZero": {}}]}},
    )
    give(sim, verdict(TEAM, "downgrade", sim.now))
    [dec] = sim.step({**HEALTHY, "spend": 120.0}).workload_changes
    assert dec.kind == DecisionKind.SCALE_TO_ZERO
    assert dec.rule == "budget.hard"


def test_two_budgets_asking_a_downgrade_move_the_agent_down_one_tier_only() -> None:
    sim = one_agent_sim()
    give(sim, verdict(TEAM, "downgrade", sim.now), verdict(OWN, "downgrade", sim.now))
    changes = [dec for out in sim.steps(4) for dec in out.workload_changes]
    assert [dec.kind for dec in changes] == [DecisionKind.SWITCH_MODEL]
    assert sim.workload("a0").model == "gpt-4o-mini"


def test_a_new_period_restores_what_the_budget_stopped_unless_keep() -> None:
    for keep in (False, True):
        sim = one_agent_sim()
        give(sim, verdict(TEAM, "stop", sim.now, keep=keep))
        sim.step()
        give(sim, verdict(TEAM, "stop", sim.now, keep=keep))
        sim.step()  # the record is observed: confirmed
        january = d(2027, 1, 1, 0, 5)
        give(sim, verdict(TEAM, None, january, keep=keep, spent=0.0))
        out = sim.step(after=january - sim.now)
        restores = [x for x in out.workload_changes if x.kind == DecisionKind.RESTORE]
        if keep:
            assert restores == []
            assert sim.workload("a0").replicas == 0
        else:
            [r] = restores
            assert r.reason_code == DecisionReason.BUDGET_PERIOD_ENDED
            assert sim.workload("a0").replicas == 2


def test_a_budget_that_no_longer_selects_the_agent_restores_nothing() -> None:
    sim = one_agent_sim()
    give(sim, verdict(TEAM, "stop", sim.now))
    sim.step()
    give(sim)
    out = sim.steps(3)
    assert all(o.workload_changes == [] for o in out)
    assert sim.workload("a0").replicas == 0


_RESPONSES = st.sampled_from(["notify", "downgrade", "stop"])
_KIND = {"stop": DecisionKind.SCALE_TO_ZERO, "downgrade": DecisionKind.SWITCH_MODEL}
_STRENGTH = {"notify": 0, "downgrade": 2, "stop": 3}


@settings(max_examples=60, deadline=None)
@given(
    responses=st.lists(_RESPONSES, min_size=1, max_size=4),
    own=st.sampled_from([None, "switchModel", "scaleToZero"]),
    order=st.randoms(use_true_random=False),
)
def test_the_strictest_response_wins_whatever_the_order(
    responses: list[str], own: str | None, order: Any
) -> None:
    now = d(2026, 12, 16)
    refs = [BudgetRef("AgentBudget", NS, f"b{i}") for i in range(len(responses))]
    verdicts = [verdict(r, resp, now) for r, resp in zip(refs, responses, strict=True)]
    order.shuffle(verdicts)
    budget = None
    if own is not None:
        budget = {"limitUSD": 50, "period": "month", "hard": {"actions": [{own: {}}]}}
    sim = one_agent_sim(budget=budget)
    give(sim, *verdicts)
    changes = sim.step({**HEALTHY, "spend": 120.0}).workload_changes
    best = max(_STRENGTH[r] for r in responses)
    own_strength = {None: 0, "switchModel": 2, "scaleToZero": 3}[own]
    if max(best, own_strength) == 0:
        assert changes == []
        return
    [dec] = changes
    assert (
        dec.kind
        == {3: DecisionKind.SCALE_TO_ZERO, 2: DecisionKind.SWITCH_MODEL}[max(best, own_strength)]
    )
    if own_strength >= best:
        assert dec.rule == "budget.hard", "on a tie the policy's own budget decides"
    else:
        winner = min(r for r, resp in zip(refs, responses, strict=True) if _STRENGTH[resp] == best)
        assert winner.owns(dec.rule), "between equal budgets the first by name"
        assert f"decided by {winner}" in dec.reason


def test_a_notify_stage_leaves_the_agents_alone() -> None:
    sim = one_agent_sim()
    give(sim, verdict(TEAM, "notify", sim.now))
    out = sim.step()
    assert out.decisions == []
    assert out.notifications == [], "the budget's own channels are told, not the policy's"
    assert sim.state is not None
    assert all(not is_external_rule(r) for s in sim.state.agents.values() for r in s.rules)


def test_before_the_budgets_are_known_their_stages_are_held() -> None:
    sim = one_agent_sim()
    give(sim, verdict(TEAM, "downgrade", sim.now))
    [dec] = sim.step().workload_changes
    give(sim)
    sim.input = dataclasses.replace(sim.input, budgets_known=False)  # an operator restarted
    assert sim.step().decisions == []
    assert sim.state is not None
    held = sim.state.agents[agent("a0")].rules[dec.rule]
    assert held.firing_since is not None, "held, not ended for want of verdicts"
    assert held.episode == dec.episode


_SPENDS = st.lists(
    st.one_of(st.none(), st.floats(min_value=0, max_value=500, allow_nan=False)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=80, deadline=None)
@given(spends=_SPENDS, limit=st.floats(min_value=1, max_value=1000, allow_nan=False))
def test_total_judges_the_sum_and_per_agent_judges_each_agent(
    spends: list[float | None], limit: float
) -> None:
    agents = {AgentId("a", f"b{i}"): AgentSpendFigures(s, 0.0) for i, s in enumerate(spends)}
    stops = stages(("stop", 100, "stop"))
    total = evaluate_budget(TEAM, spec(limitUSD=limit, stages=stops), agents, d(2026, 12, 16))
    each = evaluate_budget(
        TEAM, spec(limitUSD=limit, stages=stops, appliesTo="perAgent"), agents, d(2026, 12, 16)
    )
    known = [s for s in spends if s is not None]
    assert total.spent == each.spent
    if known:
        assert total.spent is not None
        assert abs(total.spent - sum(known)) < 1e-6
    over_total = bool(known) and sum(known) >= limit
    assert (total.stage == "stop") == over_total
    assert all((v.stage == "stop") == over_total for v in total.verdicts.values())
    for a, fig in agents.items():
        alone = fig.spent is not None and fig.spent >= limit
        assert (each.verdicts[a].stage == "stop") == alone
    assert (each.stage == "stop") == any(s is not None and s >= limit for s in spends)


def test_a_rolling_budget_restores_once_its_stop_is_no_longer_reached() -> None:
    sim = one_agent_sim()
    rolling = spec(period="24h", limitUSD=100, stages=stages(("stop", 100, "stop")))

    def say(spent: float) -> None:
        ev = evaluate_budget(TEAM, rolling, {agent("a0"): AgentSpendFigures(spent, 0.0)}, sim.now)
        give(sim, ev.verdicts[agent("a0")])

    say(120.0)
    [stop] = sim.step().workload_changes
    assert stop.kind == DecisionKind.SCALE_TO_ZERO
    say(120.0)
    assert sim.step().workload_changes == []  # observed, still over
    say(50.0)
    [back] = sim.step().workload_changes
    assert back.kind == DecisionKind.RESTORE
    assert back.reason_code == DecisionReason.BUDGET_PERIOD_ENDED
    assert sim.workload("a0").replicas == 2
