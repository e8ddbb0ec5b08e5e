"""Stage 5: the workload changes firing episodes still owe, through the guardrail chain.

Candidates go strongest, most severe and worst (furthest past the thresholds) first,
across all rules and budget stages; each passes the guardrails
(:mod:`agentmedic.engine.guardrails`) or becomes a suppressed decision, reported once per
episode and reason. At most one workload change per agent per cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from agentmedic.api.types import Action, BudgetScope, Severity
from agentmedic.engine.budget import HARD, SOFT, StageInput, stage_evidence
from agentmedic.engine.conditions import BREACH, CompiledRule, Evidence, severity_rank
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.guardrails import Candidate, Guard, evaluate_chain
from agentmedic.engine.outcome import Decision, DecisionKind
from agentmedic.engine.plan import WORKLOAD_KINDS
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.external import external_candidates, strictest_only
from agentmedic.engine.stages.peers import fleet_baseline
from agentmedic.engine.state import ActionStamp, Mark, RuleState
from agentmedic.engine.verify import baseline_from

__all__ = ["STAGE_REASON", "STAGE_SEVERITY", "guard_for", "remediate"]

HOUR = timedelta(hours=1)
STAGE_SEVERITY = {SOFT: Severity.MEDIUM, HARD: Severity.HIGH}
"""A budget stage's severity."""
STAGE_REASON = {SOFT: DecisionReason.BUDGET_SOFT_LIMIT, HARD: DecisionReason.BUDGET_HARD_LIMIT}
"""Why a budget stage's change was decided."""
_DONE_ALL = frozenset(WORKLOAD_KINDS)
_VERIFIED_KINDS = (DecisionKind.SWITCH_MODEL, DecisionKind.PROMPT_OPTIMIZATION)
"""Changes meant to keep the agent serving: with spec.verify they carry the baseline."""


def remediate(c: Cycle) -> None:
    """Grant (or suppress) the owed changes, best candidates first."""
    candidates = _candidates(c)
    if not candidates:
        return
    guard = guard_for(c)
    for cand in candidates:
        a = c.work[cand.agent]
        if a.changed_at == c.now:
            continue  # one workload change per agent per cycle; the rest wait
        if a.disabled is not None:
            continue
        _consider(c, a, cand, guard)


def guard_for(c: Cycle) -> Guard:
    """The cycle's guardrail context, as the changes granted so far leave it."""
    g = c.spec.guardrails
    return Guard(
        now=c.now,
        quiet=c.quiet,
        cooldown=g.cooldown,
        max_per_hour=g.max_actions_per_hour,
        max_disabled=math.floor(len(c.work) * g.max_disabled_percent / 100),
        # An agent restored in this very cycle frees its slot from the next cycle on,
        # so evaluating the cycle again after the restore landed decides the same.
        disabled=sum(
            1 for a in c.work.values() if a.disabled is not None or a.restored_at == c.now
        ),
        recent={(s.episode, s.kind) for s in c.prior.actions if s.at > c.now - HOUR},
        systemic_rules=frozenset(c.systemic),
        silenced=c.silenced,
    )


def _consider(c: Cycle, a: AgentWork, cand: Candidate, guard: Guard) -> None:
    """One candidate: infeasible (escalate), stopped by a guardrail, or granted."""
    rs = a.rules[cand.rule]
    cand.rule_state = rs
    target: str | None = None
    if cand.kind == "switchModel":
        target, infeasible = switch_target(c, a, cand.action)
        if infeasible is not None:
            a.set_rule(cand.rule, replace(rs, done=rs.done | {cand.kind}))
            c.escalations[(cand.agent, cand.rule)] = infeasible
            _emit(c, cand, a, suppressed=infeasible)
            return
    stopped = evaluate_chain(cand, guard)
    if stopped is not None:
        if rs.suppressed != stopped[0]:
            a.set_rule(cand.rule, replace(rs, suppressed=stopped[0]))
            _emit(c, cand, a, suppressed=stopped)
        return
    _grant(c, a, cand, rs, guard, target)


def _grant(
    c: Cycle, a: AgentWork, cand: Candidate, rs: RuleState, guard: Guard, target: str | None
) -> None:
    decision = _emit(c, cand, a, to_model=target)
    c.decided.setdefault((cand.agent, cand.rule), decision)
    done = _DONE_ALL if cand.kind == "scaleToZero" else rs.done | {cand.kind}
    a.set_rule(
        cand.rule,
        replace(
            rs, done=done, suppressed=None, last_action_at=c.now, last_action_episode=cand.episode
        ),
    )
    if (cand.episode, cand.kind) not in guard.recent:
        c.stamps.append(ActionStamp(c.now, cand.episode, cand.kind))
        guard.recent.add((cand.episode, cand.kind))
    if cand.kind == "scaleToZero":
        a.disabled = Mark(cand.episode, cand.rule, c.now, dry_run=c.dry_run)
        guard.disabled += 1
    elif cand.kind == "switchModel":
        prev = a.downgraded
        a.downgraded = Mark(
            cand.episode,
            cand.rule,
            c.now,
            dry_run=c.dry_run,
            from_model=prev.from_model if prev is not None else a.workload.model,
            to_model=target,
        )
    a.changed_at = c.now


# ---------------------------------------------------------------------- candidates


def _candidates(c: Cycle) -> list[Candidate]:
    out: list[Candidate] = []
    has_budget = c.spec.budget is not None
    for a in c.work.values():
        if not a.rules or a.frozen or a.disabled is not None:
            continue  # nothing firing; or disabled (or in dry run would be): nothing to change
        _rule_candidates(c, a, out)
        if not a.workload.budgets:
            if has_budget:
                _stage_candidates(c, a, out)
            continue
        # Finance's budgets apply too: only the strictest budget source acts.
        staged: list[Candidate] = []
        if has_budget:
            _stage_candidates(c, a, staged)
        external_candidates(c, a, staged)
        out.extend(strictest_only(c, a, staged))
    out.sort(key=lambda x: (-x.strength, -x.severity_rank, -x.badness, x.agent, x.rule))
    return out


def _rule_candidates(c: Cycle, a: AgentWork, out: list[Candidate]) -> None:
    now = c.now
    for i, r in enumerate(c.rules):
        rs = a.rules.get(r.name)
        if rs is None or rs.firing_since is None or rs.systemic or not r.workload_actions:
            continue
        if a.verdicts[i] != BREACH:
            continue  # act only on present evidence, never on a held state
        badness = -1.0
        for kind, action in r.workload_actions:
            if kind in rs.done:
                continue
            if badness < 0:
                badness = r.badness(a.values)

            def build(a: AgentWork = a, r: CompiledRule = r, rs: RuleState = rs) -> Evidence:
                # hysteresis applies unless the rule fired in this very cycle
                firing = rs.firing_since != now
                return r.evidence(a.values, firing, a.assume, rs.pending_since, now)

            cand = _candidate(a, r.name, kind, action, r.severity, rs, build)
            cand.badness = badness
            out.append(cand)


def _stage_candidates(c: Cycle, a: AgentWork, out: list[Candidate]) -> None:
    budget = c.spec.budget
    assert budget is not None
    now = c.now
    for index, stage in enumerate((SOFT, HARD)):
        rs = a.rules.get(stage)
        if rs is None or rs.firing_since is None or a.stage_v[index] != BREACH:
            continue
        figures = a.figures if budget.scope == BudgetScope.AGENT else c.policy_figures
        assert figures is not None
        mine = (a.figures.spent if a.figures is not None else None) or 0.0

        def build_stage(
            stage: str = stage, figures: StageInput = figures, rs: RuleState = rs
        ) -> Evidence:
            return stage_evidence(budget, stage, figures, rs.pending_since, now)

        for kind, action in c.plan.stage_actions[stage]:
            if kind in rs.done:
                continue
            cand = _candidate(a, stage, kind, action, STAGE_SEVERITY[stage], rs, build_stage)
            cand.reason_code = STAGE_REASON[stage]
            if stage == SOFT:
                cand.note = figures.describe_crossing(budget.limit_usd)
            cand.badness = mine / budget.limit_usd
            out.append(cand)


def _candidate(
    a: AgentWork,
    rule: str,
    kind: str,
    action: Action,
    severity: Severity,
    rs: RuleState,
    build: Callable[[], Evidence],
) -> Candidate:
    assert rs.episode is not None
    return Candidate(
        agent=a.agent,
        rule=rule,
        kind=kind,
        action=action,
        severity=severity,
        severity_rank=severity_rank(severity),
        episode=rs.episode,
        badness=0.0,
        build_evidence=build,
        rule_state=rs,
        reason_code=DecisionReason.RULE_FIRING,
        retry=(rule, kind) in a.retry,
    )


# ---------------------------------------------------------------------- decisions


def switch_target(
    c: Cycle, a: AgentWork, action: Action
) -> tuple[str | None, tuple[str, str] | None]:
    """The model to switch to, or why there is none ``(reason, message)``."""
    model = c.spec.model
    if model is None:
        return None, (DecisionReason.NO_MODEL_TIERS, "switchModel needs spec.model and its tiers")
    tiers = model.tiers
    current = a.workload.model
    if current is None or current not in tiers:
        shown = "unknown" if current is None else repr(current)
        return None, (
            DecisionReason.UNKNOWN_MODEL,
            f"current model {shown} is not one of spec.model.tiers "
            f"({', '.join(tiers)}); not switching",
        )
    at = tiers.index(current)
    wanted = action.switch_model.to if action.switch_model is not None else None
    if wanted is not None and wanted in tiers:
        if tiers.index(wanted) <= at:
            return None, (
                DecisionReason.ALREADY_CHEAPEST,
                f"already on {current}, at or below the requested tier {wanted}; escalate",
            )
        return _not_rejected(c, a, wanted)
    if at + 1 >= len(tiers):
        return None, (
            DecisionReason.ALREADY_CHEAPEST,
            f"already on the cheapest tier {current}; a person must decide what next",
        )
    return _not_rejected(c, a, tiers[at + 1])


def _not_rejected(c: Cycle, a: AgentWork, tier: str) -> tuple[str | None, tuple[str, str] | None]:
    """``tier``, unless a probation reverted it on this agent and its hold still runs
    (verify.rejectFor from the revert)."""
    at = a.rejected.get(tier)
    if at is None or c.spec.verify is None or c.now - at >= c.spec.verify.reject_for:
        return tier, None
    until = at + c.spec.verify.reject_for
    return None, (
        DecisionReason.TIER_REJECTED,
        f"{tier} regressed on probation on this agent and is held back until "
        f"{until.strftime('%Y-%m-%d %H:%M UTC')}; not switching — a person must decide",
    )


def _emit(
    c: Cycle,
    cand: Candidate,
    a: AgentWork,
    *,
    suppressed: tuple[str, str] | None = None,
    to_model: str | None = None,
) -> Decision:
    kind = DecisionKind(cand.kind)
    decision = Decision(
        kind=kind,
        agent=cand.agent,
        workload=f"{a.workload.kind}/{a.workload.name or cand.agent.name}",
        rule=cand.rule,
        severity=cand.severity,
        episode=cand.episode,
        reason_code=DecisionReason.NOT_YET_APPLIED if cand.retry else cand.reason_code,
        reason=_reason_text(c, cand, a, kind, suppressed, to_model),
        evidence=cand.evidence,
        at=c.now,
        dry_run=c.dry_run,
        suppressed_by=None if suppressed is None else suppressed[0],
        from_model=a.workload.model if kind == DecisionKind.SWITCH_MODEL else None,
        to_model=to_model,
        prompt_optimization=(
            cand.action.prompt_optimization if kind == DecisionKind.PROMPT_OPTIMIZATION else None
        ),
        badness=cand.badness,
        baseline=(_baseline(c, a) if kind in _VERIFIED_KINDS and suppressed is None else None),
    )
    c.decisions.append(decision)
    if suppressed is not None:
        c.held.setdefault((cand.agent, cand.rule), decision)
    return decision


def _baseline(c: Cycle, a: AgentWork) -> dict[str, float | None] | None:
    """The agent's signals before a change put on probation, with its peers' medians (the
    control group probation compares with: stages/peers.py)."""
    own = baseline_from(c.spec, a.values)
    return None if own is None else {**own, **fleet_baseline(c, a)}


def _reason_text(
    c: Cycle,
    cand: Candidate,
    a: AgentWork,
    kind: DecisionKind,
    suppressed: tuple[str, str] | None,
    to_model: str | None,
) -> str:
    what = {
        DecisionKind.SCALE_TO_ZERO: "scale to zero",
        DecisionKind.SWITCH_MODEL: (
            f"switch model {a.workload.model} → {to_model}" if to_model else "switch model"
        ),
        DecisionKind.PROMPT_OPTIMIZATION: "start a prompt-optimization Job",
    }[kind]
    head = "rule" if not cand.rule.startswith("budget.") else "budget stage"
    reason = f"{head} {cand.rule} firing: {cand.evidence.describe()}{cand.note}; {what}"
    if cand.retry:
        reason += " (again: the earlier decision was not observed on the workload)"
    if suppressed is not None:
        reason += f" — not done: {suppressed[1]}"
    elif c.dry_run:
        reason += " (dry run: nothing changed)"
    return reason
