"""Rules: comparisons, minSamples, all/any, `for`, hysteresis, recoverFor, episodes, status."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from agentmedic.api.types import AgentPolicySpec, Op, Rule
from agentmedic.engine import AgentStatus, DecisionReason, episode_key, evaluate
from agentmedic.engine.conditions import (
    BREACH,
    CLEAR,
    UNKNOWN,
    ConditionEvidence,
    combine,
    compile_rule,
)
from agentmedic.engine.series import SeriesKey
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    UID,
    Sim,
    agent,
    cond,
    fleet,
    policy,
    policy_input,
    rule,
    samples,
)

W5 = timedelta(minutes=5)
VALUE = SeriesKey("error_rate", None, W5)
EXECS = SeriesKey("executions", None, W5)


def verdict(
    c: dict[str, object], values: dict[SeriesKey, float | None], firing: bool = False
) -> int:
    compiled = compile_rule(Rule.model_validate(rule("r", c)), "agent")
    return compiled.verdict(values, firing)


@pytest.mark.parametrize(
    ("case", "condition", "values", "expected"),
    [
        ("value above > threshold breaches", cond(op=">", value=0.15), {VALUE: 0.2}, BREACH),
        ("value at > threshold is healthy", cond(op=">", value=0.15), {VALUE: 0.15}, CLEAR),
        ("value at >= threshold breaches", cond(op=">=", value=0.15), {VALUE: 0.15}, BREACH),
        ("value below < threshold breaches", cond(op="<", value=0.8), {VALUE: 0.5}, BREACH),
        ("value at <= threshold breaches", cond(op="<=", value=0.8), {VALUE: 0.8}, BREACH),
        ("== matches exactly", cond(op="==", value=0), {VALUE: 0.0}, BREACH),
        ("!= breaches on any other value", cond(op="!=", value=1), {VALUE: 0.0}, BREACH),
        ("a missing series is no data", cond(), {}, UNKNOWN),
        ("None is no data, never zero", cond(op="<", value=0.8), {VALUE: None}, UNKNOWN),
        ("NaN (0/0 in PromQL) is no data", cond(), {VALUE: math.nan}, UNKNOWN),
        (
            "fewer executions than minSamples is insufficient data",
            cond(minSamples=20),
            {VALUE: 0.9, EXECS: 19},
            UNKNOWN,
        ),
        (
            "no executions series with minSamples is insufficient data",
            cond(minSamples=20),
            {VALUE: 0.9},
            UNKNOWN,
        ),
        (
            "exactly minSamples executions is enough",
            cond(minSamples=20),
            {VALUE: 0.9, EXECS: 20},
            BREACH,
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_condition_verdicts(
    case: str, condition: dict[str, object], values: dict[SeriesKey, float | None], expected: int
) -> None:
    assert verdict(condition, values) == expected, case


@pytest.mark.parametrize(
    ("case", "all_of", "verdicts", "expected"),
    [
        ("all: every condition breaching breaches", True, [BREACH, BREACH], BREACH),
        ("all: one clear condition clears despite missing data", True, [CLEAR, UNKNOWN], CLEAR),
        ("all: breach and missing data is unknown", True, [BREACH, UNKNOWN], UNKNOWN),
        (
            "any: one breaching condition breaches despite missing data",
            False,
            [UNKNOWN, BREACH],
            BREACH,
        ),
        ("any: clear and missing data is unknown", False, [CLEAR, UNKNOWN], UNKNOWN),
        ("any: all clear clears", False, [CLEAR, CLEAR], CLEAR),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_all_and_any_use_three_valued_logic(
    case: str, all_of: bool, verdicts: list[int], expected: int
) -> None:
    assert combine(all_of, verdicts) == expected, case


def test_compiled_rule_agrees_with_the_combination_of_its_conditions() -> None:
    conditions = [cond("error_rate", ">", 0.15), cond("latency_p95_ms", ">", 10_000)]
    latency = SeriesKey("latency_p95_ms", None, W5)
    for match in ("all", "any"):
        compiled = compile_rule(Rule.model_validate(rule("r", *conditions, match=match)), "agent")
        for values in (
            {VALUE: 0.2, latency: 20_000},
            {VALUE: 0.2, latency: 1},
            {VALUE: 0.2},
            {latency: 20_000},
            {},
        ):
            per_condition = [
                c.evidence(values, firing=False, assume_breach=False).verdict()
                for c in compiled.conditions
            ]
            assert compiled.verdict(values, False) == combine(match == "all", per_condition)


def test_hysteresis_compares_with_recover_value_only_while_firing() -> None:
    c = cond(op=">", value=0.15, recoverValue=0.05)
    assert verdict(c, {VALUE: 0.10}, firing=False) == CLEAR
    assert verdict(c, {VALUE: 0.10}, firing=True) == BREACH
    assert verdict(c, {VALUE: 0.05}, firing=True) == CLEAR


def test_condition_evidence_describes_insufficient_samples_and_hysteresis() -> None:
    ev = ConditionEvidence("error_rate", None, W5, Op.GT, 0.15, 0.5, executions=3, min_samples=20)
    assert ev.verdict() == UNKNOWN
    assert ev.reason == DecisionReason.INSUFFICIENT_SAMPLES
    assert "fewer than minSamples 20" in ev.describe()
    ev = ConditionEvidence("error_rate", None, W5, Op.GT, 0.05, 0.1, hysteresis=True)
    assert ev.describe() == "error_rate[5m] = 10% > 5% (recoverValue)"
    assert ev.reason == DecisionReason.BREACHING
    assert ConditionEvidence("x", None, W5, Op.GT, 1, None).reason == DecisionReason.NO_DATA


# ---------------------------------------------------------------------------- state machine


def test_rule_is_pending_until_the_breach_held_for_its_for_duration() -> None:
    sim = Sim(policy(rule("r", for_="2m", actions=["scaleToZero"])), fleet(4))
    phases = [sim.step(a1=SICK).agents[agent("a1")] for _ in range(5)]
    assert phases == [AgentStatus.PENDING] * 4 + [AgentStatus.DISABLED]
    assert sim.now - T0 == timedelta(minutes=2)


def test_a_clear_evaluation_while_pending_starts_the_wait_over() -> None:
    sim = Sim(policy(rule("r", for_="1m", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    sim.step(a1=SICK)
    sim.step()  # clear: back to idle
    outcomes = [sim.step(a1=SICK) for _ in range(3)]
    assert [len(o.decisions) for o in outcomes] == [0, 0, 1]


def test_missing_data_while_pending_holds_and_never_fires() -> None:
    sim = Sim(policy(rule("r", for_="1m", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    gap = [sim.step(a1={"error_rate": None}) for _ in range(4)]
    assert all(not o.decisions for o in gap)
    assert gap[-1].agents[agent("a1")] == AgentStatus.PENDING
    # Back with a breach: the pending spell from before the gap has lasted long enough.
    assert [d.rule for d in sim.step(a1=SICK).decisions] == ["r"]


def test_for_zero_fires_on_the_first_breaching_evaluation() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    assert [(d.kind.value, d.agent.name) for d in sim.step(a2=SICK).decisions] == [
        ("scaleToZero", "a2")
    ]


def test_firing_rule_resolves_only_after_recover_for_of_clear_evaluations() -> None:
    sim = Sim(policy(rule("r", recoverFor="1m")), fleet(4))
    sim.step(a0=SICK)
    statuses = [sim.step().agents[agent("a0")] for _ in range(2)]
    assert statuses == [AgentStatus.BREACHING, AgentStatus.BREACHING]
    sim.step(a0=SICK)  # a relapse restarts the recovery clock
    outcomes = [sim.step() for _ in range(3)]
    assert [o.agents[agent("a0")] for o in outcomes] == [
        AgentStatus.BREACHING,
        AgentStatus.BREACHING,
        AgentStatus.HEALTHY,
    ]
    assert [n.state for n in outcomes[2].notifications] == ["resolved"]
    assert outcomes[2].notifications[0].reason_code == DecisionReason.RESOLVED


def test_value_between_recover_value_and_value_keeps_the_rule_firing() -> None:
    sim = Sim(policy(rule("r", cond(op=">", value=0.15, recoverValue=0.05))), fleet(4))
    sim.step(a0=SICK)
    held = sim.step(a0={"error_rate": 0.10})
    assert held.agents[agent("a0")] == AgentStatus.BREACHING
    assert sim.step(a0={"error_rate": 0.04}).agents[agent("a0")] == AgentStatus.HEALTHY


def test_missing_data_while_firing_does_not_resolve() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    sim.step(a0=SICK)
    for _ in range(5):
        o = sim.step(a0={"error_rate": None})
        assert o.agents[agent("a0")] == AgentStatus.BREACHING
        assert not o.notifications


def test_episode_key_names_policy_agent_rule_and_breach_start_and_stays_stable() -> None:
    sim = Sim(policy(rule("r", for_="1m")), fleet(4))
    sim.steps(3, a0=SICK)
    sim.steps(2, a0=SICK)
    assert sim.state is not None
    rs = sim.state.agent(agent("a0")).rules["r"]
    assert (
        rs.episode
        == episode_key(UID, agent("a0"), "r", T0)
        == f"{UID}:agents/a0:r:{int(T0.timestamp())}"
    )


def test_a_new_breach_after_resolution_is_a_new_episode() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    first = sim.step(a0=SICK).notifications[0].episode
    sim.step()
    second = sim.step(a0=SICK).notifications[0].episode
    assert first != second


def test_counts_put_each_agent_in_one_state() -> None:
    sim = Sim(policy(rule("r", cond(minSamples=10), for_="1m")), fleet(5))
    o = sim.step(a0=SICK, a1={"executions": 3}, a2={"error_rate": None})
    assert o.counts.model_dump() == {
        "total": 5,
        "healthy": 2,
        "pending": 1,
        "breaching": 0,
        "disabled": 0,
        "downgraded": 0,
        "no_data": 2,
    }


def test_a_rule_removed_from_the_spec_is_forgotten_and_its_message_resolved() -> None:
    sim = Sim(policy(rule("r"), rule("gone", cond("latency_p95_ms", ">", 5000))), fleet(4))
    sim.step(a0={"latency_p95_ms": 9000.0})
    sim.spec = policy(rule("r"))
    sim.input = type(sim.input)(sim.spec, "agents", "p", UID, sim.input.agents)
    o = sim.step(a0={"latency_p95_ms": 9000.0})
    assert [(n.rule, n.state) for n in o.notifications] == [("gone", "resolved")]
    assert sim.state is not None
    assert agent("a0") not in sim.state.agents


def test_specs_evaluated_in_turn_each_use_their_own_compiled_rules() -> None:
    """The engine memoises each spec's compiled rules; alternating specs (an operator's
    policies, or a spec edited between cycles) must never see each other's."""
    strict = policy(rule("strict", cond("error_rate", ">", 0.05)))
    lax = policy(rule("lax", cond("error_rate", ">", 0.5)))
    agents = fleet(2)
    rows = samples(strict, T0, list(agents), per_agent={"a0": {"error_rate": 0.2}})
    for _ in range(3):
        for spec, firing in ((strict, ["strict"]), (lax, [])):
            o = evaluate(policy_input(spec, agents), rows, None, T0)
            assert [n.rule for n in o.notifications if n.state == "firing"] == firing
    # An equal spec that is another object compiles its own, and agrees.
    again = AgentPolicySpec.model_validate(strict.model_dump(by_alias=True))
    o = evaluate(policy_input(again, agents), rows, None, T0)
    assert [n.rule for n in o.notifications if n.state == "firing"] == ["strict"]
