"""State: JSON round trips, the per-agent/policy split, restart continuity, cheap equality."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from agentmedic.engine import AgentState, CycleResult, PolicyState, evaluate
from agentmedic.engine.state import STATE_VERSION
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    Sim,
    agent,
    fleet,
    policy,
    rule,
    samples,
)


def _busy_sim() -> Sim:
    """A policy that exercises every part of the state: rules in every phase, a disabled
    and a downgraded agent, a budget stage, suppressions, notices and the action ledger."""
    spec = policy(
        rule("errors", actions=["scaleToZero"], for_="1m", recoverFor="1m"),
        rule(
            "slow",
            *[{"metric": "latency_p95_ms", "op": ">", "value": 5000, "window": "5m"}],
            actions=["switchModel"],
        ),
        budget={
            "limitUSD": 50,
            "scope": "policy",
            "soft": {"atPercent": 80, "actions": [{"notify": {"channels": ["finance"]}}]},
        },
        guardrails={"maxActionsPerHour": 3, "cooldown": "10m"},
        no_data={"after": "1m", "channels": ["data"]},
    )
    return Sim(spec, fleet(10))


def _script(sim: Sim, steps: int, first: int = 0) -> list[CycleResult]:
    out = []
    for i in range(first, first + steps):
        per: dict[str, Any] = {
            "a0": SICK,
            "a1": {"latency_p95_ms": 9000.0},
            "a2": {"error_rate": None},
            "a3": SICK if i % 4 < 2 else {},
            "a4": {"spend": 45.0},
        }
        out.append(sim.step(**per))
    return out


def _jsonable(state: PolicyState) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state.to_dict()))
    return loaded


def test_state_survives_a_json_round_trip_exactly() -> None:
    sim = _busy_sim()
    _script(sim, 6)
    state = sim.state
    assert state is not None
    assert state.agents
    assert state.actions
    assert state.notices
    assert state.budget
    restored = PolicyState.from_dict(_jsonable(state))
    assert restored == state
    assert restored.to_dict() == state.to_dict()


def test_state_reassembles_from_the_policy_part_and_the_per_agent_parts() -> None:
    sim = _busy_sim()
    _script(sim, 6)
    state = sim.state
    assert state is not None
    policy_part = json.loads(json.dumps(state.policy_to_dict()))
    agent_parts = {
        agent(name.split("/")[1]): json.loads(json.dumps(part))
        for name, part in state.agents_to_dict().items()
    }
    assert PolicyState.from_parts(policy_part, agent_parts) == state
    assert all(part["v"] == STATE_VERSION for part in agent_parts.values())


def test_a_restarted_operator_continues_exactly_where_it_was() -> None:
    uninterrupted, restarted = _busy_sim(), _busy_sim()
    a = _script(uninterrupted, 12)
    b = _script(restarted, 5)
    assert restarted.state is not None
    restarted.state = PolicyState.from_dict(_jsonable(restarted.state))
    b += _script(restarted, 7, first=5)
    assert [o.decisions for o in a] == [o.decisions for o in b]
    assert [o.notifications for o in a] == [o.notifications for o in b]
    assert uninterrupted.state == restarted.state


def test_losing_the_policy_part_keeps_every_agent_as_it_was() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(10))
    sim.step(a0=SICK)
    sim.step(a0={"error_rate": None})
    assert sim.state is not None
    parts = {a: s.to_dict() for a, s in sim.state.agents.items()}
    sim.state = PolicyState.from_parts(None, parts)
    o = sim.step(a0={"error_rate": None})
    assert not o.decisions
    assert o.counts.disabled == 1


def test_state_of_an_unknown_version_reads_as_empty() -> None:
    assert AgentState.from_dict({"v": STATE_VERSION + 1, "noDataSince": "x"}).empty
    assert PolicyState.from_parts({"v": 0, "actions": "garbage"}, {}) == PolicyState()


def test_steady_state_reuses_every_agent_state_and_compares_equal_cheaply() -> None:
    sim = _busy_sim()
    _script(sim, 8)
    prior = sim.state
    assert prior is not None
    data = samples(sim.spec, sim.now, sim.agents, per_agent={"a2": {"error_rate": None}})
    sim.now += timedelta(seconds=30)
    first = evaluate(sim.input, data, prior, sim.now)
    second = evaluate(sim.input, data, first.state, sim.now)
    assert not second.state.changed_agents(first.state)
    assert not second.state.policy_changed(first.state)
    assert second.state == first.state
    assert all(second.state.agents[a] is s for a, s in first.state.agents.items())


def test_changed_agents_names_only_the_agents_whose_state_changed() -> None:
    sim = Sim(policy(rule("r", for_="1m")), fleet(10))
    sim.step()
    before = sim.state
    assert before is not None
    sim.step(a3=SICK)
    assert sim.state is not None
    assert sim.state.changed_agents(before) == {agent("a3")}
    assert not sim.state.policy_changed(before)


def test_the_action_ledger_forgets_actions_after_an_hour() -> None:
    sim = Sim(policy(rule("r", actions=["promptOptimization"])), fleet(10))
    sim.step(a0=SICK)
    assert sim.state is not None
    assert len(sim.state.actions) == 1
    sim.step(after=timedelta(minutes=61))
    assert sim.state.actions == ()


def test_evaluate_refuses_a_naive_now() -> None:
    import pytest

    spec = policy(rule("r"))
    sim = Sim(spec, fleet(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(sim.input, {}, None, T0.replace(tzinfo=None))
