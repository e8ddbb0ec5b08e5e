"""Builders for engine tests: policies, fleets, samples and a stepping simulator.

Time is a parameter everywhere: ``T0`` is a Monday, 12:00 UTC, and :class:`Sim` advances
it by the policy's interval (or what a test asks) per step, feeding each step's state and
applied decisions into the next, as the operator does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.api.types import AgentPolicySpec
from agentmedic.api.validation import check_spec
from agentmedic.engine import (
    AgentId,
    AgentInput,
    CycleResult,
    PolicyInput,
    PolicyState,
    SeriesKey,
    apply_decisions,
    evaluate,
    requirements,
)
from agentmedic.engine.requirements import burn_key, spend_key

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday
NS = "agents"
UID = "uid-1"
TIERS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"]

HEALTHY: dict[str, float | None] = {
    "executions": 100.0,
    "error_rate": 0.01,
    "success_rate": 0.99,
    "latency_p95_ms": 1000.0,
    "tokens_per_execution": 1000.0,
    "spend": 0.0,
    "burn": 0.0,
}


def cond(
    metric: str = "error_rate", op: str = ">", value: float = 0.15, window: str = "5m", **extra: Any
) -> dict[str, Any]:
    """One condition; extra keys in camelCase (minSamples, recoverValue)."""
    return {"metric": metric, "op": op, "value": value, "window": window, **extra}


def rule(
    name: str = "r",
    *conditions: dict[str, Any],
    match: str = "all",
    for_: str = "0s",
    actions: Sequence[str | dict[str, Any]] = (),
    notify: Sequence[str] = ("oncall",),
    **extra: Any,
) -> dict[str, Any]:
    """A rule; ``actions`` by name (scaleToZero, switchModel, promptOptimization) or as dicts;
    a notify action on ``notify`` channels is added unless ``notify`` is empty."""
    acts: list[dict[str, Any]] = []
    for a in actions:
        if isinstance(a, dict):
            acts.append(a)
        elif a == "promptOptimization":
            acts.append({"promptOptimization": {"fromCronJob": "optimizer"}})
        else:
            acts.append({a: {}})
    if notify:
        acts.append({"notify": {"channels": list(notify)}})
    return {
        "name": name,
        match: list(conditions) or [cond()],
        "for": for_,
        "actions": acts,
        **extra,
    }


def policy(
    *rules: dict[str, Any],
    budget: dict[str, Any] | None = None,
    guardrails: dict[str, Any] | None = None,
    recovery: dict[str, Any] | None = None,
    no_data: dict[str, Any] | None = None,
    interval: str = "30s",
    model: bool = True,
) -> AgentPolicySpec:
    """A valid spec (the test fails if validation finds a problem)."""
    doc: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "agents"}},
        "interval": interval,
        "rules": list(rules),
        "guardrails": {"cooldown": "0s", "maxDisabledPercent": 100, **(guardrails or {})},
        "notifications": {
            "channels": [
                {"name": n, "slack": {"webhookSecretRef": {"name": n, "key": "url"}}}
                for n in ("oncall", "finance", "data")
            ]
        },
    }
    if model:
        doc["model"] = {"env": {"container": "agent", "name": "MODEL"}, "tiers": TIERS}
    if budget is not None:
        doc["budget"] = budget
    if recovery is not None:
        doc["recovery"] = recovery
    if no_data is not None:
        doc["noData"] = no_data
    spec = AgentPolicySpec.model_validate(doc)
    problems = check_spec(spec)
    assert not problems, problems
    return spec


def agent(name: str) -> AgentId:
    return AgentId(NS, name)


def fleet(n: int = 4, model: str | None = "gpt-4o", replicas: int = 2) -> dict[AgentId, AgentInput]:
    """Agents a0..a{n-1}, each a Deployment of the same name."""
    return {
        agent(f"a{i}"): AgentInput(kind="Deployment", name=f"a{i}", replicas=replicas, model=model)
        for i in range(n)
    }


def policy_input(spec: AgentPolicySpec, agents: Mapping[AgentId, AgentInput]) -> PolicyInput:
    return PolicyInput(spec, NS, "p", UID, dict(agents))


def samples(
    spec: AgentPolicySpec,
    now: datetime,
    agents: Sequence[AgentId],
    default: Mapping[str, float | None] = HEALTHY,
    per_agent: Mapping[str, Mapping[str, float | None]] | None = None,
) -> dict[AgentId, dict[SeriesKey, float | None]]:
    """The samples the policy asks for at ``now``, by metric name: every agent gets
    ``default`` updated with ``per_agent[name]``. ``spend`` and ``burn`` name the budget's
    two cost_usd series. A value of None (or a name absent) is no data."""
    keys = requirements(spec, now)
    spent, burn = spend_key(spec, now), burn_key(spec)
    out: dict[AgentId, dict[SeriesKey, float | None]] = {}
    for a in agents:
        values = {**default, **((per_agent or {}).get(a.name, {}))}
        row: dict[SeriesKey, float | None] = {}
        for k in keys:
            name = "spend" if k == spent else "burn" if k == burn else (k.metric or k.query or "")
            if values.get(name) is not None:
                row[k] = values[name]
        out[a] = row
    return out


class Sim:
    """Steps one policy through time like the operator: evaluate, apply, remember."""

    def __init__(
        self,
        spec: AgentPolicySpec,
        agents: Mapping[AgentId, AgentInput] | None = None,
        start: datetime = T0,
        apply: bool = True,
    ) -> None:
        self.spec = spec
        self.input = policy_input(spec, agents if agents is not None else fleet())
        self.state: PolicyState | None = None
        self.now = start
        self.started = False
        self.apply = apply
        self.history: list[CycleResult] = []

    @property
    def agents(self) -> list[AgentId]:
        return list(self.input.agents)

    def step(
        self,
        default: Mapping[str, float | None] = HEALTHY,
        after: timedelta | None = None,
        **per_agent: Mapping[str, float | None],
    ) -> CycleResult:
        """Advance (by the interval unless ``after``; not on the first step) and evaluate."""
        if self.started:
            self.now += after if after is not None else self.spec.interval
        self.started = True
        data = samples(self.spec, self.now, self.agents, default, per_agent)
        outcome = evaluate(self.input, data, self.state, self.now)
        self.state = outcome.state
        if self.apply:
            self.input = apply_decisions(self.input, outcome.decisions)
        self.history.append(outcome)
        return outcome

    def steps(
        self,
        n: int,
        default: Mapping[str, float | None] = HEALTHY,
        **per_agent: Mapping[str, float | None],
    ) -> list[CycleResult]:
        return [self.step(default, **per_agent) for _ in range(n)]

    def workload(self, name: str) -> AgentInput:
        return self.input.agents[agent(name)]

    def set_workload(self, name: str, workload: AgentInput) -> None:
        agents = dict(self.input.agents)
        agents[agent(name)] = workload
        self.input = PolicyInput(self.spec, NS, "p", UID, agents)


SICK = {"error_rate": 0.5}
"""Breaches the default rule (error_rate > 0.15)."""


def kinds(outcome: CycleResult) -> list[tuple[str, str]]:
    """(kind, agent name) of the decisions that apply."""
    return [(d.kind.value, d.agent.name) for d in outcome.decisions if d.applies]


# ---------------------------------------------------------------------------- the builders


def test_policy_builder_makes_valid_specs_with_rules_budget_and_model() -> None:
    spec = policy(
        rule("r", cond(), actions=["scaleToZero", "promptOptimization"]),
        budget={"limitUSD": 10, "hard": {"actions": [{"scaleToZero": {}}]}},
    )
    assert [a.kind for a in spec.rules[0].actions] == [
        "scaleToZero",
        "promptOptimization",
        "notify",
    ]
    assert spec.budget is not None
    assert spec.model is not None


def test_samples_builder_fills_every_required_key_and_leaves_none_out() -> None:
    spec = policy(rule("r", cond(minSamples=10)))
    data = samples(spec, T0, [agent("a0"), agent("a1")], per_agent={"a1": {"error_rate": None}})
    assert len(data[agent("a0")]) == len(requirements(spec, T0)) == 2
    assert [k.metric for k in data[agent("a1")]] == ["executions"]


def test_sim_advances_by_the_interval_and_applies_decisions() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    sim.step()
    assert sim.now == T0
    sim.step(a0=SICK)
    assert sim.now == T0 + timedelta(seconds=30)
    assert sim.workload("a0").replicas == 0
