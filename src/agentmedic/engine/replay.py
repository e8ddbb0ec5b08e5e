"""Run the engine over history: the backtest, the benchmark and many tests use this.

:func:`apply_decisions` is the engine's model of what the actions layer does to a
workload (scale to zero with a record, switch the model with a record, restore), so a
replay can feed each cycle's effects into the next, exactly as the live operator does
through its watch of the workloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from agentmedic.api.types import AgentCounts
from agentmedic.engine.evaluate import evaluate_planned
from agentmedic.engine.inputs import (
    AgentInput,
    DisabledAgent,
    DowngradedAgent,
    PolicyInput,
    ProbationRecord,
)
from agentmedic.engine.outcome import (
    Decision,
    DecisionKind,
    Notification,
    ProbationOutcome,
    SpendReport,
)
from agentmedic.engine.plan import CyclePlan, compile_plan, sample_keys
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.series import AgentId, Samples
from agentmedic.engine.state import PolicyState

__all__ = ["TimelineEntry", "apply_decisions", "replay"]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step of a replay."""

    time: datetime
    decisions: list[Decision]
    """Everything decided at this step (including suppressed and dry-run decisions)."""
    notifications: list[Notification]
    counts: AgentCounts
    spend: SpendReport | None
    probation: list[ProbationOutcome] = field(default_factory=list)
    """Verdicts on changes on probation (spec.verify) reached at this step: a replayed
    switch carries its baseline from the history, as the live one does."""


def apply_decisions(policy: PolicyInput, decisions: Iterable[Decision]) -> PolicyInput:
    """The policy input after the actions layer carried out ``decisions``.

    Only decisions that apply (neither suppressed nor dry run) change anything; a
    promptOptimization starts a Job and leaves the workload as it is. Returns ``policy``
    itself when nothing changed.
    """
    agents: dict[AgentId, AgentInput] | None = None
    for d in decisions:
        if not d.applies or d.agent not in policy.agents:
            continue
        if agents is None:
            agents = dict(policy.agents)
        agents[d.agent] = _apply(agents[d.agent], d)
    if agents is None:
        return policy
    return replace(policy, agents=agents)


def _apply(w: AgentInput, d: Decision) -> AgentInput:
    if d.kind == DecisionKind.SCALE_TO_ZERO:
        if w.disabled is not None:
            if w.disabled.episode == d.episode and w.replicas:
                return replace(w, replicas=0)  # re-applied after a revert; the record stays
            return w
        disabled = DisabledAgent(d.episode, d.rule, d.at, previous_replicas=w.replicas)
        return replace(w, replicas=0, disabled=disabled)
    if d.kind == DecisionKind.SWITCH_MODEL:
        assert d.to_model is not None
        original = w.downgraded.previous_model if w.downgraded is not None else w.model
        downgraded = DowngradedAgent(d.episode, d.rule, d.at, previous_model=original or "")
        probation = w.probation
        if d.baseline is not None and w.model is not None:
            # The actions layer records the baseline with the switch (spec.verify).
            probation = ProbationRecord(
                "switchModel", d.episode, d.rule, d.at, w.model, d.to_model, d.baseline
            )
        return replace(w, model=d.to_model, downgraded=downgraded, probation=probation)
    if d.kind == DecisionKind.RESTORE and d.restore is not None:
        if d.restore.replicas and w.disabled is not None:
            w = replace(w, replicas=w.disabled.previous_replicas, disabled=None)
        if d.restore.model is not None and w.downgraded is not None:
            w = replace(
                w,
                model=d.restore.model,
                downgraded=None if d.restore.complete else w.downgraded,
                probation=_after_restore(w.probation, d),
            )
        if d.restore.prompt and w.prompt_version is not None:
            # The kept text goes back and the rollout record with it.
            w = replace(w, prompt_version=None, probation=_after_restore(w.probation, d))
    return w


def _after_restore(record: ProbationRecord | None, d: Decision) -> ProbationRecord | None:
    """A revert marks the probation record (it stays); another full restore removes it."""
    if record is not None and d.reason_code == DecisionReason.PROBATION_REGRESSED:
        return record if record.reverted_at is not None else replace(record, reverted_at=d.at)
    assert d.restore is not None
    return None if d.restore.complete else record


def replay(
    policy: PolicyInput,
    timeline: Iterable[tuple[datetime, Samples]],
    initial_state: PolicyState | None = None,
    apply: bool = True,
) -> list[TimelineEntry]:
    """Evaluate ``policy`` at each ``(time, samples)`` in order and return what happened.

    Each step's state feeds the next. With ``apply`` (the default) each step's decisions
    are carried out on the policy input (:func:`apply_decisions`) before the next step, as
    the operator would; without it the workloads never change, as when the operator fails
    every action (the engine then decides unapplied changes again after two intervals).
    """
    state = initial_state
    out: list[TimelineEntry] = []
    # The spec is the same at every step: compiled once, with the key objects of the first
    # step that has samples.
    plan: CyclePlan | None = None
    for now, samples in timeline:
        if plan is None or not plan.canon:
            plan = compile_plan(policy.spec, sample_keys(samples))
        outcome = evaluate_planned(plan, policy, samples, state, now)
        state = outcome.state
        if apply:
            policy = apply_decisions(policy, outcome.decisions)
        out.append(
            TimelineEntry(
                now,
                outcome.decisions,
                outcome.notifications,
                outcome.counts,
                outcome.spend,
                outcome.probation,
            )
        )
    return out
