"""Probation (spec.verify): a change is judged against the agent's baseline, once.

The simulator applies decisions as the actions layer does (a switch with spec.verify
carries its baseline into the workload's probation record), so these tests run the whole
loop in the engine: switch, watch, verdict, revert, hold.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentmedic.api.validation import check_spec
from agentmedic.api.verify import Verify
from agentmedic.engine import (
    DecisionKind,
    DecisionReason,
    PolicyState,
    SeriesKey,
    replay,
    requirements,
)
from agentmedic.engine.inputs import ProbationRecord
from agentmedic.engine.requirements import probation_only
from agentmedic.engine.state import AgentState, ProbationMemo
from agentmedic.engine.verify import VerdictKind, judge
from agentmedic.metrics import FetchStats
from agentmedic.operator.cycle import undefined_agents
from tests.unit.test_engine_builders import (
    HEALTHY,
    NS,
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

GOOD = {**HEALTHY, "quality_score": 0.9}
WORSE = {**GOOD, "quality_score": 0.6}
MIN = timedelta(minutes=1)


def _verify(**extra: Any) -> Verify:
    return Verify.model_validate(
        {"window": "5m", "baselineWindow": "10m", "minExecutions": 20, **extra}
    )


def _with_verify(spec: Any, **extra: Any) -> Any:
    spec = spec.model_copy(update={"verify": _verify(**extra)})
    assert not check_spec(spec)
    return spec


def _budget_spec(hard_actions: list[dict[str, Any]] | None = None, **verify: Any) -> Any:
    budget = {
        "limitUSD": 50,
        "soft": {
            "atPercent": 80,
            "actions": [{"switchModel": {}}, {"notify": {"channels": ["finance"]}}],
        },
        "hard": {"actions": hard_actions or [{"notify": {"channels": ["finance"]}}]},
    }
    return _with_verify(policy(budget=budget, guardrails={"maxActionsPerHour": 100}), **verify)


def _rule_spec(**verify: Any) -> Any:
    return _with_verify(
        policy(rule("r", cond(), actions=["switchModel"], recoverFor="0s")), **verify
    )


def _run_until_verdict(sim: Sim, values: dict[str, Any], **per_agent: Any) -> Any:
    for _ in range(20):
        o = sim.step(values, **per_agent)
        if o.probation:
            return o
    raise AssertionError("no verdict within 10 minutes")


# ---------------------------------------------------------------------------- the verdicts


def test_a_budget_downgrade_that_hurts_quality_is_reverted_and_finance_is_told() -> None:
    sim = Sim(_budget_spec(), fleet(2))
    switched = sim.step(GOOD, a0={"spend": 41.0})
    (switch,) = [d for d in switched.decisions if d.applies]
    assert switch.kind is DecisionKind.SWITCH_MODEL
    assert switch.baseline is not None
    assert switch.baseline["quality_score"] == 0.9
    assert sim.workload("a0").probation is not None
    o = _run_until_verdict(sim, WORSE, a0={"spend": 41.0})
    assert sim.now - T0 >= timedelta(minutes=5)
    (verdict,) = o.probation
    assert (verdict.verdict, verdict.previous, verdict.new) == (
        "Regressed",
        "gpt-4o",
        "gpt-4o-mini",
    )
    assert "quality_score 90% → 60% (at least 85%)" in verdict.summary
    (revert,) = [d for d in o.decisions if d.applies]
    assert revert.kind is DecisionKind.RESTORE
    assert revert.reason_code == DecisionReason.PROBATION_REGRESSED
    assert revert.restore is not None
    assert revert.restore.model == "gpt-4o"
    assert revert.restore.complete
    assert revert.evidence.holds()  # the regressed signals re-derive the revert
    (page,) = [n for n in o.notifications if n.reason_code == DecisionReason.PROBATION_REGRESSED]
    assert page.channels == ("finance",)
    assert page.escalate
    assert "needs a person" in page.summary
    assert "reverted to gpt-4o" in page.summary
    assert sim.workload("a0").model == "gpt-4o"
    # judged once: no second verdict, no second switch within the episode
    later = sim.steps(20, WORSE, a0={"spend": 41.0})
    assert not any(x.probation for x in later)
    assert not any(d.applies for x in later for d in x.decisions)


def test_a_switch_that_holds_is_verified_and_the_resolve_says_so() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0={**SICK})
    assert sim.workload("a0").model == "gpt-4o-mini"
    o = _run_until_verdict(sim, GOOD, a0=SICK)
    (verdict,) = o.probation
    assert verdict.verdict == "Verified"
    assert verdict.action == "kept"
    assert not [d for d in o.decisions if d.applies]
    assert not [n for n in o.notifications if n.reason_code == DecisionReason.PROBATION_REGRESSED]
    resolved = sim.step(GOOD)  # the rule clears: its episode resolves
    (n,) = [n for n in resolved.notifications if n.state == "resolved"]
    assert "verified on probation" in n.summary


def test_too_little_traffic_is_inconclusive_and_nothing_is_undone() -> None:
    sim = Sim(_rule_spec(maxWindows=1), fleet(2))
    sim.step({**GOOD, "executions": 5.0}, a0=SICK)
    o = _run_until_verdict(sim, {**WORSE, "executions": 5.0}, a0=SICK)
    (verdict,) = o.probation
    assert verdict.verdict == "Inconclusive"
    assert "too little traffic" in verdict.summary
    assert "minExecutions 20" in verdict.summary
    assert verdict.action == "kept: not judged (final after 1 of verify.maxWindows)"
    assert not [d for d in o.decisions if d.applies]
    assert sim.workload("a0").model == "gpt-4o-mini"


def _verdicts_until_final(sim: Sim, values: dict[str, Any], **per_agent: Any) -> list[Any]:
    seen: list[Any] = []
    for _ in range(60):
        o = sim.step(values, **per_agent)
        seen += o.probation
        if o.probation and not o.probation[-1].action.startswith("not final"):
            return seen
    raise AssertionError(f"no final verdict within 30 minutes: {seen}")


def test_a_short_window_is_watched_again_up_to_max_windows_then_final() -> None:
    sim = Sim(_rule_spec(), fleet(2))  # maxWindows 3 by default; window 5m
    sim.step(GOOD, a0=SICK)  # the baseline has traffic
    seen = _verdicts_until_final(sim, {**WORSE, "executions": 5.0}, a0=SICK)
    assert [v.verdict for v in seen] == ["Inconclusive"] * 3
    assert [v.action for v in seen[:2]] == [
        "not final: watched for another 5m (window 1 of verify.maxWindows 3)",
        "not final: watched for another 5m (window 2 of verify.maxWindows 3)",
    ]
    assert seen[2].action == "kept: not judged (final after 3 of verify.maxWindows)"
    record = sim.workload("a0").probation
    assert record is not None
    assert [v.at - record.at >= k * timedelta(minutes=5) for k, v in enumerate(seen, 1)] == [
        True
    ] * 3
    assert sim.workload("a0").model == "gpt-4o-mini"  # nothing undone
    # Final: never judged again, however long it runs.
    for _ in range(30):
        assert not sim.step({**WORSE, "executions": 5.0}, a0=SICK).probation
    # The episode's resolved message says so.
    resolved = sim.step({**WORSE, "executions": 5.0})
    (n,) = [n for n in resolved.notifications if n.state == "resolved"]
    assert "not judged on probation: too little traffic (final; it stays)" in n.summary


def test_an_episode_that_ends_while_probation_waits_for_traffic_says_so() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0=SICK)
    first = _run_until_verdict(sim, {**WORSE, "executions": 5.0}, a0=SICK)
    assert first.probation[0].action.startswith("not final")
    resolved = sim.step({**WORSE, "executions": 5.0})  # the rule clears meanwhile
    (n,) = [n for n in resolved.notifications if n.state == "resolved"]
    assert "still on probation: too little traffic so far" in n.summary


def test_traffic_that_comes_back_in_a_later_window_gets_a_verdict() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0=SICK)
    first = _run_until_verdict(sim, {**WORSE, "executions": 5.0}, a0=SICK)
    assert first.probation[0].action.startswith("not final")
    seen = _verdicts_until_final(sim, WORSE, a0=SICK)
    assert seen[-1].verdict == "Regressed"
    assert seen[-1].action.startswith("reverted to")


def test_a_baseline_with_too_little_traffic_is_final_at_once() -> None:
    # Another window cannot add executions to the baseline: nothing to wait for.
    sim = Sim(_rule_spec(), fleet(2))
    sim.step({**GOOD, "executions": 5.0}, a0=SICK)
    o = _run_until_verdict(sim, WORSE, a0=SICK)
    (verdict,) = o.probation
    assert verdict.verdict == "Inconclusive"
    assert "executions before 5" in verdict.summary
    assert verdict.action.startswith("kept: not judged (final")


def test_on_regression_notify_keeps_the_change_and_tells_the_rules_channels() -> None:
    sim = Sim(_rule_spec(onRegression="notify"), fleet(2))
    sim.step(GOOD, a0=SICK)
    o = _run_until_verdict(sim, WORSE, a0=SICK)
    assert o.probation[0].verdict == "Regressed"
    assert not [d for d in o.decisions if d.applies]
    (page,) = [n for n in o.notifications if n.reason_code == DecisionReason.PROBATION_REGRESSED]
    assert page.channels == ("oncall",)
    assert sim.workload("a0").model == "gpt-4o-mini"


def test_a_revert_while_the_hard_stage_is_reached_says_so() -> None:
    sim = Sim(_budget_spec(), fleet(2))
    sim.step(GOOD, a0={"spend": 41.0})
    o = _run_until_verdict(sim, WORSE, a0={"spend": 55.0})
    (revert,) = [d for d in o.decisions if d.applies]
    assert "budget.hard is reached" in revert.reason
    assert "spends above the hard ceiling" in revert.reason


def test_a_rejected_tier_is_not_tried_again_within_its_hold_even_after_a_restart() -> None:
    sim = Sim(_rule_spec(rejectFor="1h"), fleet(2))
    sim.step(GOOD, a0=SICK)
    _run_until_verdict(sim, {**WORSE, **SICK})
    assert sim.workload("a0").model == "gpt-4o"
    sim.step(GOOD)  # the episode ends
    # a restart: the state is read back from what the operator stored
    assert sim.state is not None
    sim.state = PolicyState.from_dict(sim.state.to_dict())
    o = sim.step(GOOD, a0=SICK)  # a new episode: the next tier down is held back
    (held,) = [d for d in o.decisions if d.kind is DecisionKind.SWITCH_MODEL]
    assert held.suppressed_by == DecisionReason.TIER_REJECTED
    assert "gpt-4o-mini regressed on probation" in held.reason
    assert sim.workload("a0").model == "gpt-4o"
    sim.step(GOOD)
    sim.step(GOOD, after=timedelta(hours=1))  # the hold is over
    o = sim.step(GOOD, a0=SICK)
    assert [(d.kind, d.to_model) for d in o.decisions if d.applies] == [
        (DecisionKind.SWITCH_MODEL, "gpt-4o-mini")
    ]


def test_a_person_replacing_the_model_before_the_verdict_is_not_judged() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0=SICK)
    from dataclasses import replace

    sim.set_workload("a0", replace(sim.workload("a0"), model="gpt-4.1-nano"))
    outcomes = sim.steps(15, WORSE, a0=SICK)
    assert not any(o.probation for o in outcomes)
    assert not any(
        d.reason_code == DecisionReason.PROBATION_REGRESSED for o in outcomes for d in o.decisions
    )


# ---------------------------------------------------------------------------- judge


def test_judge_compares_rates_as_differences_and_latency_as_ratios() -> None:
    v = _verify()
    before = {
        "executions": 100.0,
        "success_rate": 0.98,
        "error_rate": 0.02,
        "latency_p95_ms": 2000.0,
        "tokens_per_execution": 1000.0,
        "quality_score": None,
    }
    same = judge(v, before, {**before, "latency_p95_ms": 2400.0, "quality_score": 0.2})
    assert same.kind is VerdictKind.VERIFIED  # 20% slower is within 25%; no quality baseline
    assert [c.signal.value for c in same.comparisons] == [
        "success_rate",
        "error_rate",
        "latency_p95_ms",
        "tokens_per_execution",
    ]
    slow = judge(v, before, {**before, "latency_p95_ms": 2600.0})
    assert slow.kind is VerdictKind.REGRESSED
    assert slow.why == "latency_p95_ms 2s → 2.6s (at most 2.5s)"


_SIGNAL = st.one_of(st.none(), st.floats(0, 1))
_SIDE = st.fixed_dictionaries(
    {
        "executions": st.one_of(st.none(), st.floats(0, 500)),
        "success_rate": _SIGNAL,
        "error_rate": _SIGNAL,
        "latency_p95_ms": st.one_of(st.none(), st.floats(1, 60_000)),
        "tokens_per_execution": st.one_of(st.none(), st.floats(1, 50_000)),
        "quality_score": _SIGNAL,
    }
)


@given(before=_SIDE, after=_SIDE, minimum=st.integers(1, 300))
def test_below_min_executions_on_either_side_is_always_inconclusive(
    before: dict[str, float | None], after: dict[str, float | None], minimum: int
) -> None:
    v = _verify(minExecutions=minimum)
    vd = judge(v, before, after)
    n_before, n_after = before["executions"], after["executions"]
    enough = all(n is not None and n >= minimum for n in (n_before, n_after))
    if not enough:
        assert vd.kind is VerdictKind.INCONCLUSIVE
    elif vd.kind is VerdictKind.REGRESSED:
        assert vd.regressed
        assert all(
            before[c.signal.value] is not None and after[c.signal.value] is not None
            for c in vd.regressed
        )
    else:
        assert not vd.regressed


# ---------------------------------------------------------------------------- invariants

_STEP = st.fixed_dictionaries(
    {
        "sick": st.booleans(),
        "spend": st.sampled_from([0.0, 41.0, 55.0]),
        "quality": st.sampled_from([0.9, 0.85, 0.6, None]),
        "executions": st.sampled_from([5.0, 100.0]),
        "minutes": st.sampled_from([0.5, 0.5, 2.0, 20.0]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_STEP, min_size=5, max_size=60),
    budget=st.booleans(),
    max_windows=st.integers(1, 4),
)
def test_no_flapping_and_no_silent_revert_above_the_hard_stage(
    steps: list[dict[str, Any]], budget: bool, max_windows: int
) -> None:
    extra = {"rejectFor": "30m", "maxWindows": max_windows}
    spec = _budget_spec(**extra) if budget else _rule_spec(**extra)
    hold = timedelta(minutes=30)
    sim = Sim(spec, fleet(1))
    rejected_at: dict[str, Any] = {}
    judged: dict[str, int] = {}
    final: set[str] = set()
    pages: dict[str, str] = {}
    for i, s in enumerate(steps):
        values = {
            **GOOD,
            "quality_score": s["quality"],
            "executions": s["executions"],
            "spend": s["spend"],
            **(SICK if s["sick"] else {}),
        }
        o = sim.step(values, after=None if i == 0 else timedelta(minutes=s["minutes"]))
        applied = [d for d in o.decisions if d.applies]
        assert len(applied) <= 1  # one workload change per agent per cycle
        for d in applied:
            if d.kind is DecisionKind.SWITCH_MODEL:
                since = rejected_at.get(str(d.to_model))
                if since is not None:
                    event("the rejected tier was switched to again after its hold")
                assert since is None or sim.now - since >= hold, "a rejected tier came back"
            if d.reason_code == DecisionReason.PROBATION_REGRESSED:
                hard = sim.state is not None and any(
                    rs.firing_since is not None
                    for name, rs in sim.state.agent(agent("a0")).rules.items()
                    if name == "budget.hard"
                )
                if hard:
                    assert "budget.hard is reached" in d.reason
        for n in o.notifications:
            if n.episode.endswith(":probation"):
                # One firing page per change, one resolve after it, same key.
                assert pages.get(n.episode) == ("firing" if n.state == "resolved" else None)
                pages[n.episode] = n.state
        for verdict in o.probation:
            event(f"{verdict.verdict} ({verdict.action.split(' ')[0]})")
            # No verdict without minExecutions (20) in the window just judged.
            if s["executions"] < 20:
                assert verdict.verdict == "Inconclusive", verdict.summary
            # At most maxWindows windows per change, and nothing after the final word.
            assert verdict.episode not in final, "judged again after a final verdict"
            judged[verdict.episode] = judged.get(verdict.episode, 0) + 1
            assert judged[verdict.episode] <= max_windows
            if verdict.action.startswith("not final"):
                assert verdict.verdict == "Inconclusive"
                assert judged[verdict.episode] < max_windows
            else:
                final.add(verdict.episode)
            if verdict.verdict == "Regressed" and verdict.action.startswith("reverted"):
                rejected_at[verdict.new] = sim.now
            if verdict.verdict != "Inconclusive":
                assert "executions" in verdict.summary


def test_shortening_reject_for_lets_a_person_retry_the_tier_at_once() -> None:
    sim = Sim(_rule_spec(rejectFor="1d"), fleet(2))
    sim.step(GOOD, a0=SICK)
    _run_until_verdict(sim, {**WORSE, **SICK})
    sim.step(GOOD)
    o = sim.step(GOOD, a0=SICK)
    assert [d.suppressed_by for d in o.decisions] == [DecisionReason.TIER_REJECTED]
    sim.spec = _rule_spec(rejectFor="0s")
    sim.input = dataclasses.replace(sim.input, spec=sim.spec)
    sim.step(GOOD)
    o = sim.step(GOOD, a0=SICK)
    assert [(d.kind, d.to_model) for d in o.decisions if d.applies] == [
        (DecisionKind.SWITCH_MODEL, "gpt-4o-mini")
    ]
    assert sim.state is not None
    assert "gpt-4o-mini" not in sim.state.agent(agent("a0")).rejected


def test_a_prompt_optimization_carries_the_baseline_for_its_rollout() -> None:
    spec = _with_verify(policy(rule("r", cond(), actions=["promptOptimization"])))
    o = Sim(spec, fleet(1)).step(GOOD, a0=SICK)
    (job,) = [d for d in o.decisions if d.applies]
    assert job.kind is DecisionKind.PROMPT_OPTIMIZATION
    assert job.baseline is not None
    assert job.baseline["quality_score"] == 0.9
    assert job.baseline["executions"] == 100.0


def test_a_replay_over_history_judges_and_reverts_as_the_operator_would() -> None:
    spec = _rule_spec()
    agents = fleet(1)
    timeline = []
    for i in range(16):  # the switch at T0, the verdict 5 minutes later
        now = T0 + i * timedelta(seconds=30)
        values = {**(GOOD if i == 0 else WORSE), **SICK}
        timeline.append((now, samples(spec, now, list(agents), values)))
    entries = replay(policy_input(spec, agents), timeline)
    judged = [(e.time - T0, v.verdict) for e in entries for v in e.probation]
    assert judged == [(timedelta(minutes=5), "Regressed")]
    kinds = [d.kind for e in entries for d in e.decisions if d.applies]
    assert kinds == [DecisionKind.SWITCH_MODEL, DecisionKind.RESTORE]


def test_the_rejection_survives_a_lost_state_through_the_workloads_record() -> None:
    sim = Sim(_rule_spec(rejectFor="1h"), fleet(2))
    sim.step(GOOD, a0=SICK)
    _run_until_verdict(sim, {**WORSE, **SICK})
    record = sim.workload("a0").probation
    assert record is not None
    assert record.reverted_at == sim.now
    sim.state = None  # the state annotation was never written (a crash after the revert)
    first = sim.step(GOOD)
    assert not [v for v in first.probation if v.agent == agent("a0")]  # not judged again
    o = sim.step(GOOD, a0=SICK)
    (held,) = [d for d in o.decisions if d.kind is DecisionKind.SWITCH_MODEL]
    assert held.suppressed_by == DecisionReason.TIER_REJECTED


def test_a_revert_that_never_showed_on_the_workload_is_decided_again() -> None:
    sim = Sim(_rule_spec(), fleet(1))
    sim.step(GOOD, a0=SICK)
    before = sim.workload("a0")
    o = _run_until_verdict(sim, {**WORSE, **SICK})
    assert [d.kind for d in o.decisions if d.applies] == [DecisionKind.RESTORE]
    sim.set_workload("a0", before)  # the revert failed: the workload is as it was
    retries = [d for x in sim.steps(3, {**WORSE, **SICK}) for d in x.decisions if d.applies]
    (again,) = retries
    assert again.kind is DecisionKind.RESTORE
    assert "again: the earlier revert was not observed" in again.reason
    assert again.evidence.holds()
    assert sim.workload("a0").model == "gpt-4o"


def test_the_verdict_and_the_rejections_round_trip_through_the_stored_state() -> None:
    state = AgentState(
        probation=ProbationMemo("uid:agents/a0:budget.soft:1", "Regressed", T0, "gpt-4o-mini"),
        rejected={"gpt-4o-mini": T0, "gpt-4.1-nano": T0 + MIN},
    )
    stored = json.loads(json.dumps(state.to_dict()))
    assert AgentState.from_dict(stored) == state
    assert not state.empty
    assert AgentState.from_dict(AgentState().to_dict()).empty


def test_a_nan_only_probation_reads_holds_nobody_but_one_a_rule_reads_does() -> None:
    spec = _with_verify(
        policy(rule("r", cond("success_rate", "<", 0.8, window="5m"), actions=["switchModel"]))
    )
    only = probation_only(spec, T0)
    assert SeriesKey("quality_score", None, timedelta(minutes=5)) in only
    assert SeriesKey("success_rate", None, timedelta(minutes=5)) not in only  # the rule's too
    assert only <= requirements(spec, T0)
    stats = FetchStats(
        undefined={
            SeriesKey("quality_score", None, timedelta(minutes=10)): {agent("a0")},
            SeriesKey("success_rate", None, timedelta(minutes=5)): {agent("a1")},
        }
    )
    agents = {agent("a0"): object(), agent("a1"): object()}
    holding = requirements(spec, T0) - only
    assert undefined_agents(stats, holding, agents) == {agent("a1")}  # type: ignore[arg-type]


def _prompt_on_probation(sim: Sim, name: str) -> None:
    """The workload as the prompt rollout leaves it: a probation record of kind prompt,
    made now, whose baseline is the good signals."""
    baseline = {"quality_score": 0.9, "error_rate": 0.0, "success_rate": 1.0}
    record = ProbationRecord(
        kind="prompt",
        episode=f"{UID}:{NS}/{name}:r:{int(T0.timestamp())}",
        rule="r",
        at=sim.now,
        previous="system.before-v1",
        new="system.v1",
        baseline={**baseline, "executions": 100.0},
    )
    w = dataclasses.replace(sim.workload(name), probation=record, prompt_version="system.v1")
    sim.set_workload(name, w)


def test_a_prompt_that_regresses_is_put_back_once_with_its_numbers() -> None:
    spec = _with_verify(policy(rule("r", cond(), actions=["promptOptimization"])))
    sim = Sim(spec, fleet(1))
    _prompt_on_probation(sim, "a0")
    o = _run_until_verdict(sim, WORSE)
    (verdict,) = o.probation
    assert (verdict.verdict, verdict.previous, verdict.new) == (
        "Regressed",
        "system.before-v1",
        "system.v1",
    )
    (revert,) = [d for d in o.decisions if d.applies]
    assert revert.kind is DecisionKind.RESTORE
    assert revert.restore is not None
    assert revert.restore.prompt
    assert revert.restore.model is None
    assert not revert.restore.replicas
    assert "reverted to the prompt of system.before-v1" in revert.reason
    assert "quality_score 90% → 60%" in verdict.summary
    later = sim.steps(20, WORSE)
    assert not any(x.probation for x in later)  # judged once
    assert not any(d.applies for x in later for d in x.decisions)


def test_a_prompt_that_regresses_under_on_regression_notify_stays() -> None:
    spec = _with_verify(
        policy(rule("r", cond(), actions=["promptOptimization"])), onRegression="notify"
    )
    sim = Sim(spec, fleet(1))
    _prompt_on_probation(sim, "a0")
    o = _run_until_verdict(sim, WORSE)
    (verdict,) = o.probation
    assert verdict.verdict == "Regressed"
    assert not [d for d in o.decisions if d.applies]
    assert [n for n in o.notifications if n.reason_code == DecisionReason.PROBATION_REGRESSED]
