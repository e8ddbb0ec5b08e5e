"""An agent whose metrics came back undefined (NaN) is held by the engine itself.

``AgentInput.metrics_unknown`` says the answer was good but gave the agent no number (a
ratio over an empty window): the agent is not judged, gets no noData stance and no change
of any kind (restores included), and its rule state is kept; it counts as no data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta

import pytest

from agentmedic.engine import AgentStatus, CycleResult, DecisionReason, evaluate
from tests.unit.test_engine_builders import (
    SICK,
    Sim,
    agent,
    fleet,
    kinds,
    policy,
    rule,
    samples,
)

GONE: dict[str, float | None] = {"error_rate": None}
"""The series is absent from the answer (as a NaN value is left out of the samples)."""


class UnknownSim(Sim):
    """Sim whose step marks the named agents' metrics as unknown this cycle."""

    def unknown_step(
        self,
        unknown: set[str],
        *,
        after: timedelta | None = None,
        **per_agent: Mapping[str, float | None],
    ) -> CycleResult:
        self.now += after if after is not None else self.spec.interval
        ids = {agent(n) for n in unknown}
        agents = {
            a: dataclasses.replace(w, metrics_unknown=a in ids)
            for a, w in self.input.agents.items()
        }
        view = dataclasses.replace(self.input, agents=agents)
        data = samples(self.spec, self.now, self.agents, per_agent=per_agent)
        outcome = evaluate(view, data, self.state, self.now)
        self.state = outcome.state
        self.history.append(outcome)
        return outcome


def test_an_unknown_agent_gets_no_nodata_breach_while_an_absent_one_does() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        no_data={"mode": "breach", "after": "30s"},
        guardrails={"maxDisabledPercent": 100, "systemicPercent": 100},
    )
    sim = UnknownSim(spec, fleet(10))
    sim.step()
    for _ in range(4):
        sim.unknown_step({"a0"}, a0=GONE, a1=GONE)
    decided = {name for o in sim.history for _, name in kinds(o)}
    assert decided == {"a1"}, "only the genuinely absent agent meets noData: breach"
    last = sim.history[-1]
    assert last.agents[agent("a0")] == AgentStatus.NO_DATA
    assert not any(d.agent == agent("a0") for o in sim.history for d in o.decisions)


def test_an_unknown_agent_gets_no_nodata_message() -> None:
    spec = policy(rule("r"), no_data={"mode": "notify", "after": "30s", "channels": ["data"]})
    sim = UnknownSim(spec, fleet(10))
    sim.step()
    outs = [sim.unknown_step({"a0"}, a0=GONE) for _ in range(4)]
    assert not [n for o in outs for n in o.notifications], "no data message for an unknown agent"
    outs = [sim.step(a0=GONE) for _ in range(3)]
    assert [n.agent for o in outs for n in o.notifications] == [agent("a0")], (
        "the same agent, genuinely absent, does get one"
    )


def test_an_unknown_agent_keeps_its_pending_rule_and_resumes_it_when_numbers_return() -> None:
    spec = policy(rule("r", for_="2m", actions=["scaleToZero"]))
    sim = UnknownSim(spec, fleet(10))
    sim.step(a0=SICK)  # pending from T0
    assert sim.state is not None
    pending = sim.state.agents[agent("a0")].rules["r"]
    for _ in range(2):
        out = sim.unknown_step({"a0"}, a0=SICK)
        assert not out.decisions, "not judged, even on the values it was given"
        assert sim.state.agents[agent("a0")].rules["r"] == pending, "held, not advanced"
    out = sim.step(a0=SICK)  # 1m30s after the breach began: not yet 2m
    assert not out.decisions
    out = sim.step(a0=SICK, after=timedelta(seconds=30))
    assert kinds(out) == [("scaleToZero", "a0")], "the breach kept its start across the hold"


def test_a_firing_rule_of_an_unknown_agent_neither_resolves_nor_acts() -> None:
    spec = policy(rule("r", actions=["promptOptimization"]))
    sim = UnknownSim(spec, fleet(10))
    assert kinds(sim.step(a0=SICK)) == [("promptOptimization", "a0")]
    assert sim.state is not None
    firing = sim.state.agents[agent("a0")].rules["r"]
    for _ in range(5):
        out = sim.unknown_step({"a0"})  # healthy values, but not to be trusted
        assert not out.decisions
        assert not out.notifications, "no resolved message: the episode is held open"
        assert sim.state.agents[agent("a0")].rules["r"] == firing
    back = sim.step()
    assert [(n.state, n.reason_code) for n in back.notifications] == [
        ("resolved", DecisionReason.RESOLVED)
    ]


def test_an_unknown_agent_is_not_restored_until_a_cycle_has_its_numbers() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]), recovery={"mode": "auto", "healthyFor": "10m"}
    )
    sim = UnknownSim(spec, fleet(4))
    assert kinds(sim.step(a0=SICK)) == [("scaleToZero", "a0")]
    out = sim.unknown_step({"a0"}, after=timedelta(minutes=10), a0=GONE)
    assert not out.decisions, "the restore waits for a cycle with numbers"
    assert sim.state is not None
    mark = sim.state.agents[agent("a0")].disabled
    assert mark is not None
    assert mark.restoring_at is None, "nothing decided, nothing remembered as decided"
    (d,) = sim.step(a0=GONE).decisions
    assert (d.kind.value, d.reason_code) == ("restore", DecisionReason.AUTO_RECOVERY)


def test_unknown_agents_do_not_count_toward_a_systemic_outage() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        guardrails={"systemicPercent": 50, "systemicMinAgents": 4, "maxDisabledPercent": 100},
    )
    sim = UnknownSim(spec, fleet(10))
    sim.step()
    # 4 of the 6 judged agents breach: systemic among those judged.
    out = sim.unknown_step({"a6", "a7", "a8", "a9"}, a0=SICK, a1=SICK, a2=SICK, a3=SICK)
    assert not kinds(out), "a fleet-wide breach pages instead of disabling"
    assert any(n.reason_code == DecisionReason.SYSTEMIC_OUTAGE for n in out.notifications)
    assert out.counts.no_data == 4


@pytest.mark.parametrize("mode", ["keep", "breach", "notify"])
def test_unknown_and_the_zero_replica_view_agree_on_judgement_and_state(mode: str) -> None:
    """The explicit input decides what the operator's old view (replicas=0, the agent's
    decisions dropped) decided, for every noData mode."""
    spec = policy(
        rule("r", for_="1m", actions=["scaleToZero"]),
        no_data={"mode": mode, "after": "30s", "channels": ["data"]},
        guardrails={"maxDisabledPercent": 100, "systemicPercent": 100},
    )
    new, old = UnknownSim(spec, fleet(6)), Sim(spec, fleet(6))
    script: list[tuple[set[str], dict[str, Mapping[str, float | None]]]] = [
        (set(), {"a0": SICK}),
        ({"a0"}, {"a1": GONE}),
        ({"a0", "a2"}, {"a1": GONE, "a3": SICK}),
        ({"a2"}, {"a0": SICK, "a3": SICK}),
        (set(), {"a0": SICK, "a3": SICK}),
        (set(), {}),
    ]
    for unknown, per_agent in script:
        got = new.unknown_step(unknown, **per_agent)
        ids = {agent(n) for n in unknown}
        old.now += spec.interval
        view = dataclasses.replace(
            old.input,
            agents={
                a: dataclasses.replace(w, replicas=0) if a in ids else w
                for a, w in old.input.agents.items()
            },
        )
        data = samples(spec, old.now, old.agents, per_agent=per_agent)
        want = evaluate(view, data, old.state, old.now)
        old.state = want.state
        assert [(d.kind, d.agent) for d in got.decisions] == [
            (d.kind, d.agent) for d in want.decisions if d.agent not in ids
        ]
        assert [(n.state, n.episode) for n in got.notifications] == [
            (n.state, n.episode) for n in want.notifications
        ]
        assert got.agents == want.agents
        assert got.state == want.state
