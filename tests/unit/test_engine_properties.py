"""Property tests: invariants of the engine over generated policies and timelines.

Each test states its invariant in its docstring. Timelines are small (a few agents, up to
12 cycles) and example counts modest, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine import (
    AgentStatus,
    CycleResult,
    Decision,
    DecisionKind,
    PolicyInput,
    PolicyState,
    apply_decisions,
    evaluate,
)
from agentmedic.engine.conditions import BREACH, CLEAR, UNKNOWN
from agentmedic.engine.series import AgentId, SeriesKey
from tests.unit.test_engine_builders import T0, agent, fleet, policy, policy_input, samples

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ERROR_RATES = [None, 0.02, 0.1, 0.2, 0.6, 0.95]
EXECUTIONS = [None, 0.0, 5.0, 30.0, 200.0]


@dataclass
class Scenario:
    spec: AgentPolicySpec
    n: int
    times: list[datetime]
    values: list[dict[str, dict[str, float | None]]]
    """Per step, per agent name: error_rate and executions."""

    @property
    def min_samples(self) -> int | None:
        return self.spec.rules[0].all_of[0].min_samples

    def inp(self) -> PolicyInput:
        return policy_input(self.spec, fleet(self.n))

    def data(self, i: int) -> dict[AgentId, dict[SeriesKey, float | None]]:
        agents = [agent(f"a{k}") for k in range(self.n)]
        return samples(self.spec, self.times[i], agents, {}, self.values[i])

    def raw(self, i: int, name: str) -> int:
        """The comparison at step i as an oracle would do it from the raw values."""
        v = self.values[i][name]
        ms = self.min_samples
        if ms is not None and (v["executions"] is None or v["executions"] < ms):
            return UNKNOWN
        if v["error_rate"] is None:
            return UNKNOWN
        return BREACH if v["error_rate"] > 0.15 else CLEAR


@st.composite
def scenarios(draw: st.DrawFn, **overrides: Any) -> Scenario:
    n = draw(st.integers(3, 6))
    steps = draw(st.integers(2, 12))
    actions = draw(
        st.lists(
            st.sampled_from(["scaleToZero", "switchModel", "promptOptimization"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    condition: dict[str, Any] = {"metric": "error_rate", "op": ">", "value": 0.15, "window": "5m"}
    if draw(st.booleans()):
        condition["minSamples"] = draw(st.sampled_from([10, 50]))
    rule_doc = {
        "name": "r",
        "all": [condition],
        "for": draw(st.sampled_from(["0s", "30s", "1m", "2m"])),
        "actions": [
            {a: {}} if a != "promptOptimization" else {a: {"fromCronJob": "o"}} for a in actions
        ]
        + [{"notify": {"channels": ["oncall"]}}],
    }
    guardrails = {
        "cooldown": draw(st.sampled_from(["0s", "1m", "5m"])),
        "maxDisabledPercent": draw(st.sampled_from([0, 25, 50, 100])),
        "maxActionsPerHour": draw(st.sampled_from([1, 3, 100])),
        "systemicPercent": draw(st.sampled_from([50, 60, 100])),
        "systemicMinAgents": draw(st.sampled_from([3, 5])),
        "dryRun": False,
    }
    guardrails.update(overrides.pop("guardrails", {}))
    recovery = {"mode": draw(st.sampled_from(["manual", "auto"])), "healthyFor": "1m"}
    spec = policy(rule_doc, guardrails=guardrails, recovery=recovery, **overrides)
    gaps = draw(st.lists(st.sampled_from([30, 30, 30, 60, 300]), min_size=steps, max_size=steps))
    times = [T0 + timedelta(seconds=sum(gaps[:i])) for i in range(steps)]
    values = [
        {
            f"a{k}": {
                "error_rate": draw(st.sampled_from(ERROR_RATES)),
                "executions": draw(st.sampled_from(EXECUTIONS)),
            }
            for k in range(n)
        }
        for _ in range(steps)
    ]
    return Scenario(spec, n, times, values)


def run(s: Scenario) -> list[tuple[PolicyInput, CycleResult]]:
    """Step the scenario like the operator; return the input each step saw and its outcome."""
    inp, state = s.inp(), None
    out = []
    for i, now in enumerate(s.times):
        outcome = evaluate(inp, s.data(i), state, now)
        out.append((inp, outcome))
        state = outcome.state
        inp = apply_decisions(inp, outcome.decisions)
    return out


def remediations(outcome: CycleResult) -> list[Decision]:
    return [d for d in outcome.decisions if d.kind != DecisionKind.RESTORE]


@PROPERTY
@given(scenarios())
def test_no_action_without_enough_samples(s: Scenario) -> None:
    """A decision for an agent at step i needs minSamples executions at step i."""
    for i, (_, outcome) in enumerate(run(s)):
        for d in remediations(outcome):
            assert s.raw(i, d.agent.name) == BREACH
            (cev,) = d.evidence.conditions
            if s.min_samples is not None:
                assert cev.executions is not None
                assert cev.executions >= s.min_samples


@PROPERTY
@given(scenarios())
def test_no_action_before_for_has_elapsed(s: Scenario) -> None:
    """A decision at t rests on a breach that began at least `for` before t, and the agent,
    while running, had no clear evaluation since that breach began."""
    for_ = s.spec.rules[0].for_
    steps = run(s)
    for i, (_, outcome) in enumerate(steps):
        for d in remediations(outcome):
            start = d.evidence.held_since
            assert start is not None
            assert d.at - start >= for_
            assert start in s.times[: i + 1]
            for j in range(i + 1):
                running = steps[j][0].agents[d.agent].disabled is None
                if s.times[j] >= start and running:
                    assert s.raw(j, d.agent.name) != CLEAR


@PROPERTY
@given(scenarios())
def test_never_more_than_max_disabled_percent_disabled(s: Scenario) -> None:
    """After every cycle, at most floor(n * maxDisabledPercent / 100) agents are disabled."""
    cap = math.floor(s.n * s.spec.guardrails.max_disabled_percent / 100)
    inp = s.inp()
    for i, (_, outcome) in enumerate(run(s)):
        inp = apply_decisions(inp, outcome.decisions)
        assert sum(1 for w in inp.agents.values() if w.disabled is not None) <= cap
        assert outcome.counts.disabled <= cap, i


@PROPERTY
@given(scenarios())
def test_systemic_breaches_disable_nobody(s: Scenario) -> None:
    """In a cycle where at least systemicPercent of at least systemicMinAgents running
    agents breach the rule, the rule changes no agent."""
    g = s.spec.guardrails
    for i, (inp, outcome) in enumerate(run(s)):
        running = [a for a, w in inp.agents.items() if w.disabled is None]
        hits = sum(1 for a in running if s.raw(i, a.name) == BREACH)
        if len(running) >= g.systemic_min_agents and hits * 100 >= g.systemic_percent * len(
            running
        ):
            assert not [d for d in remediations(outcome) if d.applies]


@PROPERTY
@given(scenarios())
def test_same_inputs_after_applying_yield_no_new_action(s: Scenario) -> None:
    """Evaluating a cycle again, with its decisions applied and its state, decides nothing
    and leaves the state as it is."""
    inp, state = s.inp(), None
    for i, now in enumerate(s.times):
        data = s.data(i)
        outcome = evaluate(inp, data, state, now)
        inp = apply_decisions(inp, outcome.decisions)
        again = evaluate(inp, data, outcome.state, now)
        assert [d for d in again.decisions if d.applies] == []
        assert not [n for n in again.notifications if n.state == "firing"]
        third = evaluate(inp, data, again.state, now)
        assert third.state == again.state
        state = again.state


@PROPERTY
@given(scenarios())
def test_cooldown_respected(s: Scenario) -> None:
    """Two changes by the same rule on the same agent in different episodes are at least
    guardrails.cooldown apart."""
    cooldown = s.spec.guardrails.cooldown
    last: dict[str, Decision] = {}
    for _, outcome in run(s):
        for d in remediations(outcome):
            if not d.applies:
                continue
            prev = last.get(d.agent.name)
            if prev is not None and prev.episode != d.episode:
                assert d.at - prev.at >= cooldown
            last[d.agent.name] = d


@PROPERTY
@given(scenarios(guardrails={"dryRun": True}))
def test_dry_run_changes_nothing(s: Scenario) -> None:
    """In dry run every decision is marked so, no workload changes, and no agent shows as
    disabled or downgraded."""
    before = s.inp()
    for inp, outcome in run(s):
        assert inp.agents == before.agents
        assert all(d.dry_run and not d.applies for d in outcome.decisions)
        assert apply_decisions(inp, outcome.decisions) is inp
        assert AgentStatus.DISABLED not in outcome.agents.values()
        assert AgentStatus.DOWNGRADED not in outcome.agents.values()


@PROPERTY
@given(scenarios())
def test_every_decision_carries_evidence_that_reproduces_it(s: Scenario) -> None:
    """Re-deriving each decision's verdict from its evidence alone gives the decision (the
    comparison holds and has held long enough), and the evidence matches the samples."""
    for i, (_, outcome) in enumerate(run(s)):
        for d in outcome.decisions:
            assert d.evidence.holds(), d.reason
            assert d.evidence.at == s.times[i]
            if d.kind == DecisionKind.RESTORE:
                continue
            (cev,) = d.evidence.conditions
            assert cev.observed == s.values[i][d.agent.name]["error_rate"]
            assert cev.verdict() == BREACH


@settings(max_examples=25, deadline=None)
@given(scenarios())
def test_state_round_trips_through_json_at_every_step(s: Scenario) -> None:
    """The state after any cycle reads back equal from its JSON form."""
    for _, outcome in run(s):
        loaded = PolicyState.from_dict(json.loads(json.dumps(outcome.state.to_dict())))
        assert loaded == outcome.state
