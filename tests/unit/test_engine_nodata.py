"""The no-data stance: missing data is neither health nor sickness unless the policy says so."""

from __future__ import annotations

from datetime import timedelta

from agentmedic.engine import NO_DATA_RULE, AgentStatus, DecisionReason
from tests.unit.test_engine_builders import (
    SICK,
    Sim,
    agent,
    cond,
    fleet,
    kinds,
    policy,
    rule,
)

GONE = {"error_rate": None}
FEW = {"executions": 2.0}


def test_keep_holds_every_rule_and_says_nothing_without_channels() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(10))
    outcomes = [sim.step(a0=GONE, after=timedelta(minutes=5)) for _ in range(6)]
    assert all(not o.decisions and not o.notifications for o in outcomes)
    assert outcomes[-1].agents[agent("a0")] == AgentStatus.NO_DATA


def test_channels_are_told_once_data_has_been_missing_for_after_and_when_it_returns() -> None:
    spec = policy(rule("r"), no_data={"after": "2m", "channels": ["data"]})
    sim = Sim(spec, fleet(10))
    before = [sim.step(a0=GONE) for _ in range(4)]  # 0 .. 1m30s
    assert all(not o.notifications for o in before)
    late = sim.step(a0=GONE)  # 2m
    (n,) = late.notifications
    assert (n.agent, n.rule, n.state, n.channels) == (
        agent("a0"),
        NO_DATA_RULE,
        "firing",
        ("data",),
    )
    assert "no (or too little) data for over 2m" in n.summary
    assert not sim.step(a0=GONE).notifications
    back = sim.step()
    assert [(n.state, n.reason_code) for n in back.notifications] == [
        ("resolved", DecisionReason.DATA_RETURNED)
    ]


def test_too_few_executions_count_as_missing_data() -> None:
    spec = policy(rule("r", cond(minSamples=10)), no_data={"after": "1m", "channels": ["data"]})
    sim = Sim(spec, fleet(10))
    sim.steps(2, a0=FEW)
    assert [n.rule for n in sim.step(a0=FEW).notifications] == [NO_DATA_RULE]


def test_notify_mode_without_channels_tells_the_rules_channels() -> None:
    spec = policy(rule("r", notify=("oncall",)), no_data={"mode": "notify", "after": "30s"})
    sim = Sim(spec, fleet(10))
    sim.step(a0=GONE)
    (n,) = sim.step(a0=GONE).notifications
    assert n.channels == ("oncall",)


def test_breach_mode_counts_missing_data_as_a_breach_after_after_then_waits_for() -> None:
    spec = policy(
        rule("r", for_="1m", actions=["scaleToZero"]),
        no_data={"mode": "breach", "after": "2m"},
    )
    sim = Sim(spec, fleet(10))
    waited = [sim.step(a0=GONE) for _ in range(5)]  # 0 .. 2m: the breach starts at 2m
    assert all(not o.decisions for o in waited)
    assert waited[-1].agents[agent("a0")] == AgentStatus.PENDING
    sim.step(a0=GONE)
    o = sim.step(a0=GONE)  # 3m: the assumed breach has held for 1m
    assert kinds(o) == [("scaleToZero", "a0")]
    (cev,) = o.decisions[0].evidence.conditions
    assert cev.assumed_breach
    assert cev.observed is None
    assert o.decisions[0].evidence.holds()
    assert "counted as breaching" in o.decisions[0].reason


def test_breach_mode_is_not_applied_to_a_clear_all_rule() -> None:
    spec = policy(
        rule("r", cond("error_rate"), cond("latency_p95_ms", ">", 5000), actions=["scaleToZero"]),
        no_data={"mode": "breach", "after": "30s"},
    )
    sim = Sim(spec, fleet(10))
    outcomes = sim.steps(4, a0=GONE)  # latency is healthy: the AND cannot hold
    assert all(not o.decisions for o in outcomes)


def test_data_missing_across_the_fleet_is_one_message() -> None:
    spec = policy(rule("r"), no_data={"after": "1m", "channels": ["data"]})
    sim = Sim(spec, fleet(10))
    sim.steps(2, default=GONE)
    o = sim.step(default=GONE)
    (n,) = o.notifications
    assert (n.agent, n.rule) == (None, NO_DATA_RULE)
    assert "10 of 10 agents" in n.summary
    assert o.counts.no_data == 10
    assert not sim.step(default=GONE).notifications
    assert [(n.agent, n.state) for n in sim.step().notifications] == [(None, "resolved")]


def test_an_agent_breaching_with_data_is_not_masked_by_others_missing_data() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), no_data={"after": "1m", "channels": ["data"]})
    sim = Sim(spec, fleet(10))
    o = sim.step(a0=SICK, a1=GONE)
    assert kinds(o) == [("scaleToZero", "a0")]
