"""replay and apply_decisions: the engine over history, with and without applying."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine import (
    AgentInput,
    DecisionKind,
    apply_decisions,
    compile_plan,
    evaluate,
    evaluate_planned,
    replay,
    requirements,
)
from agentmedic.engine.series import Samples, SeriesKey
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    Sim,
    agent,
    cond,
    fleet,
    policy,
    policy_input,
    rule,
    samples,
)


def _timeline(spec: AgentPolicySpec, steps: int, sick: set[str]) -> list[tuple[datetime, Samples]]:
    names = [agent(f"a{i}") for i in range(4)]
    return [
        (
            T0 + timedelta(seconds=30 * i),
            samples(
                spec,
                T0 + timedelta(seconds=30 * i),
                names,
                per_agent={name: SICK for name in sick},
            ),
        )
        for i in range(steps)
    ]


def test_replay_matches_stepping_evaluate_by_hand_and_feeds_the_effects_forward() -> None:
    spec = policy(rule("r", for_="1m", actions=["scaleToZero"]))
    entries = replay(policy_input(spec, fleet(4)), _timeline(spec, 6, {"a1"}))
    sim = Sim(spec, fleet(4))
    by_hand = [sim.step(a1=SICK) for _ in range(6)]
    assert [e.decisions for e in entries] == [o.decisions for o in by_hand]
    assert [e.notifications for e in entries] == [o.notifications for o in by_hand]
    assert [e.time for e in entries] == [T0 + timedelta(seconds=30 * i) for i in range(6)]
    assert [e.counts.disabled for e in entries] == [0, 0, 1, 1, 1, 1]


def test_replay_without_apply_decides_an_unapplied_change_again_every_two_intervals() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]))
    entries = replay(policy_input(spec, fleet(4)), _timeline(spec, 5, {"a1"}), apply=False)
    assert [len(e.decisions) for e in entries] == [1, 0, 1, 0, 1]
    assert len({d.episode for e in entries for d in e.decisions}) == 1


def test_replay_continues_from_an_initial_state() -> None:
    spec = policy(rule("r", for_="1m", actions=["scaleToZero"]))
    timeline = _timeline(spec, 6, {"a1"})
    whole = replay(policy_input(spec, fleet(4)), timeline)
    first = replay(policy_input(spec, fleet(4)), timeline[:1])
    state = evaluate(policy_input(spec, fleet(4)), timeline[0][1], None, T0).state
    rest = replay(policy_input(spec, fleet(4)), timeline[1:], initial_state=state)
    assert [e.decisions for e in first + rest] == [e.decisions for e in whole]


def test_apply_decisions_records_what_restore_needs() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), recovery={"mode": "auto", "healthyFor": "1m"})
    sim = Sim(spec, {agent("a0"): AgentInput(name="a0", replicas=3, model="gpt-4o")})
    (down,) = sim.step(a0=SICK).decisions
    w = sim.workload("a0")
    assert (w.replicas, w.disabled is not None) == (0, True)
    assert w.disabled is not None
    assert (w.disabled.previous_replicas, w.disabled.episode) == (3, down.episode)
    sim.step(a0={"error_rate": None})
    (up,) = sim.step(a0={"error_rate": None}, after=timedelta(minutes=5)).decisions
    assert up.kind == DecisionKind.RESTORE
    assert (sim.workload("a0").replicas, sim.workload("a0").disabled) == (3, None)


def test_apply_decisions_ignores_suppressed_and_dry_run_decisions() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"dryRun": True})
    pi = policy_input(spec, fleet(4))
    outcome = evaluate(pi, samples(spec, T0, list(pi.agents), per_agent={"a0": SICK}), None, T0)
    assert outcome.decisions
    assert apply_decisions(pi, outcome.decisions) is pi


def test_requirements_cover_every_condition_and_the_executions_behind_min_samples() -> None:
    spec = policy(
        rule("a", cond("error_rate", window="5m", minSamples=20), cond("latency_p95_ms")),
        rule(
            "b",
            {
                "query": "sum by (agent) (rate(x_total{ {{agents}} }[{{window}}]))",
                "op": ">",
                "value": 1,
                "window": "10m",
            },
            match="any",
        ),
    )
    keys = requirements(spec, T0)
    assert keys == {
        SeriesKey("error_rate", None, timedelta(minutes=5)),
        SeriesKey("executions", None, timedelta(minutes=5)),
        SeriesKey("latency_p95_ms", None, timedelta(minutes=5)),
        SeriesKey(
            None,
            "sum by (agent) (rate(x_total{ {{agents}} }[{{window}}]))",
            timedelta(minutes=10),
        ),
    }


def test_a_plan_compiled_once_decides_what_evaluate_decides_every_cycle() -> None:
    spec = policy(rule("r", for_="1m", actions=["scaleToZero"]))
    p = policy_input(spec, fleet(6))
    plan = compile_plan(spec)
    once = every = None
    for i in range(6):
        now = T0 + i * spec.interval
        data = samples(spec, now, list(p.agents), per_agent={"a1": SICK})
        a = evaluate_planned(plan, p, data, once.state if once else None, now)
        b = evaluate(p, data, every.state if every else None, now)
        assert (a.decisions, a.notifications, a.agents, a.state) == (
            b.decisions,
            b.notifications,
            b.agents,
            b.state,
        )
        once, every = a, b
        p = apply_decisions(p, a.decisions)
    assert once is not None
    assert once.counts.disabled == 1, "the plan-compiled cycles did act"


def test_a_plan_of_another_spec_is_refused_in_one_line() -> None:
    p = policy_input(policy(rule("r")), fleet(2))
    other = compile_plan(policy(rule("s")))
    with pytest.raises(ValueError, match=r"^the plan was compiled from another spec"):
        evaluate_planned(other, p, {}, None, T0)
