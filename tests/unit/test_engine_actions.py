"""Actions: strength and precedence, one change per agent per cycle, cooldown, the hourly
rate limit, idempotence, changes that never landed, model tiers, prompt optimization."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentmedic.api.types import Severity
from agentmedic.engine import (
    AgentInput,
    AgentStatus,
    Decision,
    DecisionKind,
    DecisionReason,
    apply_decisions,
    evaluate,
    strongest_per_agent,
)
from agentmedic.engine.conditions import Evidence
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    Sim,
    agent,
    cond,
    fleet,
    kinds,
    policy,
    rule,
    samples,
)


def test_strongest_action_of_a_rule_goes_first_and_makes_the_weaker_moot() -> None:
    sim = Sim(policy(rule("r", actions=["promptOptimization", "scaleToZero"])), fleet(4))
    assert kinds(sim.step(a0=SICK)) == [("scaleToZero", "a0")]
    assert not sim.step(a0=SICK).decisions


def test_one_workload_change_per_agent_per_cycle_across_rules() -> None:
    spec = policy(
        rule("errors", cond("error_rate", ">", 0.15), actions=["promptOptimization"]),
        rule("slow", cond("latency_p95_ms", ">", 5000), actions=["switchModel"]),
    )
    sim = Sim(spec, fleet(4))
    first = sim.step(a0={"error_rate": 0.5, "latency_p95_ms": 9000})
    assert kinds(first) == [("switchModel", "a0")]
    second = sim.step(a0={"error_rate": 0.5, "latency_p95_ms": 9000})
    assert kinds(second) == [("promptOptimization", "a0")]
    assert not sim.step(a0={"error_rate": 0.5, "latency_p95_ms": 9000}).decisions


def test_scale_to_zero_from_one_rule_beats_a_switch_from_another() -> None:
    spec = policy(
        rule("slow", cond("latency_p95_ms", ">", 5000), actions=["switchModel"]),
        rule("errors", cond("error_rate", ">", 0.15), actions=["scaleToZero"]),
    )
    sim = Sim(spec, fleet(4))
    o = sim.step(a0={"error_rate": 0.5, "latency_p95_ms": 9000})
    assert [(d.kind.value, d.rule) for d in o.decisions] == [("scaleToZero", "errors")]
    assert sim.workload("a0").model == "gpt-4o"


def test_rule_with_switch_and_prompt_optimization_does_both_one_cycle_apart() -> None:
    sim = Sim(policy(rule("r", actions=["promptOptimization", "switchModel"])), fleet(4))
    assert kinds(sim.step(a0=SICK)) == [("switchModel", "a0")]
    o = sim.step(a0=SICK)
    assert kinds(o) == [("promptOptimization", "a0")]
    assert o.decisions[0].prompt_optimization is not None
    assert o.decisions[0].prompt_optimization.from_cron_job == "optimizer"


def test_decisions_are_ranked_by_strength_then_severity_then_badness() -> None:
    spec = policy(
        rule("mild", cond("error_rate", ">", 0.15), actions=["promptOptimization"]),
        rule("bad", cond("latency_p95_ms", ">", 5000), actions=["scaleToZero"], severity="low"),
        rule("worse", cond("success_rate", "<", 0.5), actions=["scaleToZero"], severity="critical"),
    )
    sim = Sim(spec, fleet(4))
    o = sim.step(
        a0={"error_rate": 0.5},
        a1={"latency_p95_ms": 6000},
        a2={"latency_p95_ms": 60000},
        a3={"success_rate": 0.1},
    )
    assert [(d.rule, d.agent.name) for d in o.decisions] == [
        ("worse", "a3"),
        ("bad", "a2"),
        ("bad", "a1"),
        ("mild", "a0"),
    ]


# ---------------------------------------------------------------------------- cooldown


def test_cooldown_stops_a_second_episode_of_the_same_rule_on_the_same_agent() -> None:
    spec = policy(rule("r", actions=["promptOptimization"]), guardrails={"cooldown": "10m"})
    sim = Sim(spec, fleet(4))
    assert kinds(sim.step(a0=SICK)) == [("promptOptimization", "a0")]
    sim.step()  # resolves
    again = sim.step(a0=SICK)
    assert [(d.suppressed_by, d.applies) for d in again.decisions] == [
        (DecisionReason.COOLDOWN, False)
    ]
    assert "cooldown 10m" in again.decisions[0].reason
    quiet = [sim.step(a0=SICK) for _ in range(10)]
    assert all(not o.decisions for o in quiet), "a suppression is reported once"
    later = sim.step(a0=SICK, after=timedelta(minutes=5))
    assert kinds(later) == [("promptOptimization", "a0")]


def test_cooldown_is_per_rule_another_rule_may_act() -> None:
    spec = policy(
        rule("a", cond("error_rate", ">", 0.15), actions=["promptOptimization"]),
        rule("b", cond("latency_p95_ms", ">", 5000), actions=["switchModel"]),
        guardrails={"cooldown": "1h"},
    )
    sim = Sim(spec, fleet(4))
    sim.step(a0=SICK)
    assert kinds(sim.step(a0={"error_rate": 0.5, "latency_p95_ms": 6000})) == [
        ("switchModel", "a0")
    ]


# ---------------------------------------------------------------------------- rate limit


def test_max_actions_per_hour_suppresses_the_excess_until_the_hour_has_passed() -> None:
    spec = policy(rule("r", actions=["promptOptimization"]), guardrails={"maxActionsPerHour": 2})
    sim = Sim(spec, fleet(10))
    o = sim.step(a0=SICK, a1=SICK, a2=SICK)
    assert [(d.agent.name, d.suppressed_by) for d in o.decisions] == [
        ("a0", None),
        ("a1", None),
        ("a2", DecisionReason.RATE_LIMITED),
    ]
    assert not sim.step(a0=SICK, a1=SICK, a2=SICK).decisions
    later = sim.step(a0=SICK, a1=SICK, a2=SICK, after=timedelta(hours=1))
    assert kinds(later) == [("promptOptimization", "a2")]


def test_the_worst_agent_gets_the_last_allowed_action() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxActionsPerHour": 1})
    o = Sim(spec, fleet(4)).step(a0={"error_rate": 0.2}, a1={"error_rate": 0.9})
    assert kinds(o) == [("scaleToZero", "a1")]


# ---------------------------------------------------------------------------- idempotence


def test_same_inputs_after_the_action_was_applied_yield_no_new_decision() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero", "switchModel"])), fleet(4))
    o = sim.step(a0=SICK)
    assert kinds(o) == [("scaleToZero", "a0")]
    data = samples(sim.spec, sim.now, sim.agents, per_agent={"a0": SICK})
    again = evaluate(sim.input, data, o.state, sim.now)
    assert again.decisions == []
    assert again.notifications == []
    assert again.state.agent(agent("a0")).disabled.confirmed  # type: ignore[union-attr]
    third = evaluate(sim.input, data, again.state, sim.now)
    assert (third.decisions, third.notifications) == ([], [])
    assert third.state == again.state
    assert not third.state.changed_agents(again.state)


def test_a_change_never_seen_on_the_workload_is_decided_again_with_the_same_episode() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxActionsPerHour": 1})
    sim = Sim(spec, fleet(4), apply=False)
    first = sim.step(a0=SICK).decisions[0]
    assert sim.step(a0=SICK).agents[agent("a0")] == AgentStatus.DISABLED  # awaiting the record
    retry = sim.step(a0=SICK).decisions  # two intervals later
    assert [(d.kind, d.episode, d.reason_code, d.applies) for d in retry] == [
        (DecisionKind.SCALE_TO_ZERO, first.episode, DecisionReason.NOT_YET_APPLIED, True)
    ]


def test_a_change_that_landed_late_is_adopted_not_repeated() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4), apply=False)
    d = sim.step(a0=SICK).decisions[0]
    sim.input = apply_decisions(sim.input, [d])  # the operator's record shows up a cycle late
    for _ in range(5):
        o = sim.step(a0=SICK)
        assert not o.decisions
        assert o.agents[agent("a0")] == AgentStatus.DISABLED


# ---------------------------------------------------------------------------- model tiers


@pytest.mark.parametrize(
    ("case", "current", "to", "expected_model", "reason"),
    [
        ("steps one tier cheaper", "gpt-4o", None, "gpt-4o-mini", None),
        ("steps from the middle tier to the cheapest", "gpt-4o-mini", None, "gpt-4.1-nano", None),
        ("moves to the requested tier", "gpt-4o", "gpt-4.1-nano", "gpt-4.1-nano", None),
        (
            "already cheapest: no change, escalate",
            "gpt-4.1-nano",
            None,
            None,
            DecisionReason.ALREADY_CHEAPEST,
        ),
        (
            "at the requested tier: no change",
            "gpt-4.1-nano",
            "gpt-4o-mini",
            None,
            DecisionReason.ALREADY_CHEAPEST,
        ),
        ("unknown current model: no change", None, None, None, DecisionReason.UNKNOWN_MODEL),
        (
            "model outside the tiers: no change",
            "claude-x",
            None,
            None,
            DecisionReason.UNKNOWN_MODEL,
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and " " in x else "",
)
def test_switch_model(
    case: str, current: str | None, to: str | None, expected_model: str | None, reason: str | None
) -> None:
    action = {"switchModel": {"to": to}} if to else "switchModel"
    sim = Sim(policy(rule("r", actions=[action])), fleet(4, model=current))
    o = sim.step(a0=SICK)
    (d,) = o.decisions
    assert d.suppressed_by == reason, case
    assert d.to_model == expected_model
    if reason is None:
        assert sim.workload("a0").model == expected_model
        assert o.agents[agent("a0")] == AgentStatus.BREACHING
        assert o.notifications[0].undo == "agentmedic restore deployment/a0 -n agents"
    else:
        assert sim.workload("a0").model == current
        (n,) = o.notifications
        assert n.escalate
        assert (
            reason in (d.reason + n.summary)
            or "not switching" in d.reason
            or "escalate" in (d.reason + n.summary)
        )
        assert not sim.step(a0=SICK).decisions, "reported once per episode"


def test_unfeasible_switch_falls_through_to_the_next_action_of_the_rule() -> None:
    sim = Sim(
        policy(rule("r", actions=["switchModel", "promptOptimization"])), fleet(4, model=None)
    )
    o = sim.step(a0=SICK)
    assert [(d.kind.value, d.suppressed_by) for d in o.decisions] == [
        ("switchModel", DecisionReason.UNKNOWN_MODEL),
        ("promptOptimization", None),
    ]


def test_downgraded_agent_counts_as_downgraded_once_healthy() -> None:
    sim = Sim(policy(rule("r", actions=["switchModel"])), fleet(4))
    sim.step(a0=SICK)
    o = sim.step()
    assert o.agents[agent("a0")] == AgentStatus.DOWNGRADED
    assert o.counts.downgraded == 1
    assert sim.workload("a0").downgraded is not None
    assert sim.workload("a0").downgraded.previous_model == "gpt-4o"  # type: ignore[union-attr]


def test_second_episode_steps_one_more_tier_and_keeps_the_original_model() -> None:
    sim = Sim(policy(rule("r", actions=["switchModel"])), fleet(4))
    sim.step(a0=SICK)
    sim.step()
    d = sim.step(a0=SICK).decisions[0]
    assert (d.from_model, d.to_model) == ("gpt-4o-mini", "gpt-4.1-nano")
    assert sim.workload("a0").downgraded.previous_model == "gpt-4o"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- across policies


def _decision(agent_name: str, kind: DecisionKind, severity: Severity, **kw: object) -> Decision:
    return Decision(
        kind=kind,
        agent=agent(agent_name),
        workload=f"Deployment/{agent_name}",
        rule="r",
        severity=severity,
        episode=f"e-{agent_name}-{kind.value}",
        reason_code=DecisionReason.RULE_FIRING,
        reason="",
        evidence=Evidence("all", (), T0, timedelta(0), T0),
        at=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_strongest_per_agent_keeps_one_applicable_change_per_agent_across_policies() -> None:
    ds = [
        _decision("a0", DecisionKind.PROMPT_OPTIMIZATION, Severity.CRITICAL),
        _decision("a0", DecisionKind.SCALE_TO_ZERO, Severity.LOW),
        _decision("a0", DecisionKind.RESTORE, Severity.INFO),
        _decision("a1", DecisionKind.SWITCH_MODEL, Severity.LOW, dry_run=True),
        _decision("a1", DecisionKind.RESTORE, Severity.INFO),
        _decision("a2", DecisionKind.SCALE_TO_ZERO, Severity.HIGH, suppressed_by="Cooldown"),
    ]
    assert [(d.agent.name, d.kind.value) for d in strongest_per_agent(ds)] == [
        ("a0", "scaleToZero"),
        ("a1", "restore"),
    ]


def test_workload_changes_are_the_applicable_decisions_in_rank_order() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxActionsPerHour": 1})
    o = Sim(spec, fleet(4)).step(a0=SICK, a1={"error_rate": 0.9})
    assert [d.agent.name for d in o.decisions] == ["a1", "a0"]
    assert [d.agent.name for d in o.workload_changes] == ["a1"]


def test_workload_name_may_differ_from_the_agent_name_and_undo_names_the_kind() -> None:
    agents = {agent("bot"): AgentInput(kind="StatefulSet", name="bot-sts", replicas=3, model=None)}
    o = Sim(policy(rule("r", actions=["scaleToZero"])), agents).step(bot=SICK)
    assert o.decisions[0].workload == "StatefulSet/bot-sts"
    assert o.decisions[0].undo == "agentmedic restore statefulset/bot-sts -n agents"
