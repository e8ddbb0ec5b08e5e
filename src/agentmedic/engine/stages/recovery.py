"""Stage 6: restores. Auto recovery, and the end of the budget episode behind a change.

Only this policy's own confirmed changes are restored. A disabled agent comes back after
healthyFor down, and at least the longest rule window (a probe: a relapse is a new
episode); a downgraded agent steps one tier up after each healthyFor of health, not while
a budget stage holds it down. Quiet hours and a silence of the agent hold every restore; a
dry run only reports.
An agent whose metrics are undefined this cycle waits for a cycle with numbers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from agentmedic.api.durations import format_duration
from agentmedic.api.types import OnNewPeriod, RecoveryMode, Severity
from agentmedic.engine.budget import HARD, SOFT
from agentmedic.engine.conditions import Evidence
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.finance import is_external_rule
from agentmedic.engine.inputs import episode_policy_uid
from agentmedic.engine.outcome import Decision, DecisionKind, Restore
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.external import budget_holds, external_over
from agentmedic.engine.state import Mark

__all__ = ["restore"]


def restore(c: Cycle) -> None:
    """Decide the restores due this cycle (at most one change per agent)."""
    for a in c.work.values():
        if a.changed_at == c.now or a.unknown:
            continue
        m = a.disabled if a.disabled is not None else a.downgraded
        if m is None or not _ours(c, m) or _restoring(c, m):
            continue  # nothing of this policy's to restore, or a restore already under way
        if m is a.disabled:
            _restore_disabled(c, a, m)
        else:
            _restore_downgraded(c, a, m)


def _ours(c: Cycle, m: Mark) -> bool:
    return m.confirmed and not m.dry_run and episode_policy_uid(m.episode) == c.uid


def _restoring(c: Cycle, m: Mark) -> bool:
    return m.restoring_at is not None and c.now - m.restoring_at < c.plan.retry_after


def _budget_over(c: Cycle, a: AgentWork, m: Mark, need: int) -> Evidence | None:
    """Evidence that the budget episode behind ``m`` (a change of strength ``need``: 3 a
    stop, 2 a downgrade) is over, when onNewPeriod restores and no other budget holds it."""
    if is_external_rule(m.rule):
        return external_over(c, a, m, need)
    if budget_holds(c, a, need, m.rule):
        return None
    budget = c.spec.budget
    if budget is None or budget.on_new_period != OnNewPeriod.RESTORE:
        return None
    rs = a.rules.get(m.rule)
    if rs is not None and rs.firing_since is not None and rs.episode == m.episode:
        return None
    since = c.period.start if c.period is not None else c.now
    return Evidence("all", (), since, timedelta(0), c.now)


def _restore_disabled(c: Cycle, a: AgentWork, m: Mark) -> None:
    recovery = c.spec.recovery
    longest = c.plan.longest_window
    if m.rule.startswith("budget."):
        evidence = _budget_over(c, a, m, 3)
        code = DecisionReason.BUDGET_PERIOD_ENDED
        why = f"the budget episode that disabled it ({m.rule}) is over"
    else:
        # Down for healthyFor, and at least for the longest window of the rules: a
        # restored agent must never be judged again on data from before it was disabled.
        wait = max(recovery.healthy_for, longest)
        if recovery.mode != RecoveryMode.AUTO or c.now - m.at < wait:
            return  # the common case for a disabled agent: not yet
        evidence = Evidence("all", (), m.at, wait, c.now)
        code = DecisionReason.AUTO_RECOVERY
        why = (
            f"disabled by {m.rule} for {format_duration(c.now - m.at)} "
            f"(recovery.healthyFor {format_duration(recovery.healthy_for)}, longest "
            f"window {format_duration(longest)}); "
            "restoring to see whether it recovered"
        )
    if evidence is None:
        return
    _emit_restore(c, a, m, Restore(replicas=True), code, why, evidence, disabled=True)


def _restore_downgraded(c: Cycle, a: AgentWork, m: Mark) -> None:
    recovery = c.spec.recovery
    current = a.workload.model or m.to_model
    if m.rule.startswith("budget."):
        evidence = _budget_over(c, a, m, 2)
        if evidence is None:
            return
        back = Restore(model=m.from_model, complete=True)
        code = DecisionReason.BUDGET_PERIOD_ENDED
        why = f"the budget episode that downgraded it ({m.rule}) is over; back to {m.from_model}"
    else:
        if recovery.mode != RecoveryMode.AUTO or a.healthy_since is None:
            return
        if c.now - a.healthy_since < recovery.healthy_for:
            return
        if any(
            (rs := a.rules.get(s)) is not None and rs.firing_since is not None for s in (SOFT, HARD)
        ) or budget_holds(c, a, 2, ""):
            return  # stepping up while the budget is spent would only be undone again
        evidence = Evidence("all", (), a.healthy_since, recovery.healthy_for, c.now)
        back = _step_up(c, current, m.from_model)
        code = DecisionReason.AUTO_RECOVERY
        why = (
            f"healthy for {format_duration(c.now - a.healthy_since)}; "
            f"model {current} → {back.model}"
        )
    _emit_restore(c, a, m, back, code, why, evidence, disabled=False)


def _step_up(c: Cycle, current: str | None, original: str | None) -> Restore:
    tiers = c.spec.model.tiers if c.spec.model is not None else []
    if current in tiers and original in tiers:
        assert current is not None
        assert original is not None
        at, home = tiers.index(current), tiers.index(original)
        if at - 1 > home:
            return Restore(model=tiers[at - 1], complete=False)
    return Restore(model=original, complete=True)


def _emit_restore(
    c: Cycle,
    a: AgentWork,
    m: Mark,
    back: Restore,
    code: str,
    why: str,
    evidence: Evidence,
    *,
    disabled: bool,
) -> None:
    suppressed: str | None = None
    silence = c.silenced(a.agent, m.rule)
    if silence is not None:
        suppressed = DecisionReason.SILENCED
        why += f" — not done: {silence.describe()}"
    elif c.quiet:
        suppressed = DecisionReason.QUIET_HOURS
        why += " — not done: inside quiet hours, the restore waits for the window to end"
    elif c.dry_run:
        why += " (dry run: nothing changed)"
    decision = Decision(
        kind=DecisionKind.RESTORE,
        agent=a.agent,
        workload=f"{a.workload.kind}/{a.workload.name or a.agent.name}",
        rule=m.rule,
        severity=Severity.INFO,
        episode=m.episode,
        reason_code=code,
        reason=why,
        evidence=evidence,
        at=c.now,
        dry_run=c.dry_run,
        suppressed_by=suppressed,
        restore=back,
    )
    marker = suppressed or (DecisionReason.DRY_RUN if c.dry_run else None)
    if marker is not None:
        # Nothing will change, so nothing will be observed: report once, then wait.
        if m.suppressed == marker:
            return
        new = replace(m, suppressed=marker)
    else:
        new = replace(m, restoring_at=c.now, restore_to=back.model, suppressed=None)
        a.changed_at = c.now
        if back.replicas:
            # Evaluated again in this same cycle, the agent must not be judged on samples
            # taken while it was down.
            a.restored_at = c.now
    if disabled:
        a.disabled = new
    else:
        a.downgraded = new
    c.decisions.append(decision)
