"""Part of stage 1, per agent: agentmedic's change put back by someone else.

Evidence only: the workload's record (the ``agentmedic.io/*`` annotations) says what
agentmedic set, and the live object shows the value from before it again: a record of a
scale to zero on a workload with replicas above 0, or a record of a model switch on a
workload running the recorded previous model. That is what Argo CD's selfHeal or a Flux
reconcile does when the change is not in Git. It is never guessed from timing, and a
restore by agentmedic (or ``agentmedic restore``) removes the record in the same write, so
it never looks like a revert.

What follows depends on ``spec.guardrails.onRevert``:

- ``tell`` (the default): the revert is said once, when it is first seen (a notification
  to the rule's channels naming the likely manager, see :func:`revert_notices`; an Event and
  the policy's Reverted condition, from ``CycleResult.reverts``), and the change is not
  applied again. The record stays, so ``agentmedic
  restore`` still clears it, and the agent is left as it is (held, as a disabled agent)
  until a person restores it or the record goes.
- ``reapply``: the change is decided again after 1, 2 then 4 intervals (the actions layer
  writes it again under the same record), at most ``MAX_REAPPLIES`` times in the episode;
  after that it is told as above.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from agentmedic.api.gitops import MAX_REAPPLIES, OnRevert
from agentmedic.engine.conditions import Evidence
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.outcome import Decision, DecisionKind, Notification, restore_command
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.reverts import Revert
from agentmedic.engine.stages.channels import rule_channels, rule_severity
from agentmedic.engine.state import Mark

__all__ = ["backoff_due", "detect_reverts", "reapply", "revert_notices"]


def detect_reverts(c: Cycle, a: AgentWork) -> None:
    """Compare the agent's records with its live workload; note reverts in ``c.reverts``."""
    w = a.workload
    m = a.disabled
    if _ours(m) and w.disabled is not None and m is not None and w.disabled.episode == m.episode:
        live = w.replicas not in (None, 0)
        what = f"replicas are {w.replicas} again (agentmedic set 0)"
        a.disabled = _track(c, a, m, "scaleToZero", live, what)
    m = a.downgraded
    rec = w.downgraded
    if _ours(m) and rec is not None and m is not None and rec.episode == m.episode:
        live = w.model is not None and w.model == rec.previous_model
        what = f"the model is {w.model} again (agentmedic set {m.to_model or 'a cheaper tier'})"
        a.downgraded = _track(c, a, m, "switchModel", live, what)


def _ours(m: Mark | None) -> bool:
    return m is not None and m.confirmed and not m.dry_run and m.restoring_at is None


def _track(c: Cycle, a: AgentWork, m: Mark, kind: str, live: bool, what: str) -> Mark:
    if not live:
        # The change holds (again): a re-apply landed, or someone set it back.
        return m if m.reverted_at is None else replace(m, reverted_at=None)
    new = m.reverted_at is None
    if new and c.silenced(a.agent, m.rule) is not None:
        # Silenced: shown, but neither told nor counted until the silence ends.
        c.reverts[a.agent] = Revert(kind, m, what, False, False, a.workload.managed_by)
        return m
    if new:
        m = replace(m, reverted_at=c.now, reverts=m.reverts + 1)
    retrying = c.spec.guardrails.on_revert == OnRevert.REAPPLY and m.reverts <= MAX_REAPPLIES
    reapply = (
        retrying
        and backoff_due(c, m)
        and a.changed_at != c.now
        and not a.unknown
        and not c.quiet
        and c.silenced(a.agent, m.rule) is None
    )
    if reapply:
        # Decided again: from now on the change is expected to show again.
        m = replace(m, reverted_at=None)
        a.changed_at = c.now
    c.reverts[a.agent] = Revert(
        kind, m, what, new and not retrying, reapply, a.workload.managed_by, retrying
    )
    return m


def backoff_due(c: Cycle, m: Mark) -> bool:
    """After the n-th revert, wait 2**(n-1) intervals before applying again."""
    assert m.reverted_at is not None
    wait = c.spec.interval * (2 ** max(m.reverts - 1, 0))
    return bool(c.now - m.reverted_at >= wait)


_CHANGE = {"scaleToZero": "scale to zero", "switchModel": "model switch"}


def reapply(c: Cycle) -> None:
    """The changes to apply again this cycle (onRevert reapply), as decisions of their
    episode: the actions layer writes the change again under the record it keeps."""
    for agent, r in c.reverts.items():
        if not r.reapply:
            continue
        a = c.work[agent]
        m = r.mark
        manager = a.workload.managed_by
        who = f"likely by {manager}" if manager else "by someone else"
        severity = rule_severity(c, m.rule)
        switch = r.kind == "switchModel"
        c.decisions.append(
            Decision(
                kind=DecisionKind(r.kind),
                agent=agent,
                workload=f"{a.workload.kind}/{a.workload.name or agent.name}",
                rule=m.rule,
                severity=severity,
                episode=m.episode,
                reason_code=DecisionReason.REVERTED,
                reason=f"{_CHANGE[r.kind]} reverted {who} ({r.what}); applying it again, "
                f"{m.reverts} of {MAX_REAPPLIES} (spec.guardrails.onRevert: reapply)",
                evidence=Evidence("all", (), m.at, timedelta(0), c.now),
                at=c.now,
                dry_run=c.dry_run,
                from_model=a.workload.model if switch else None,
                to_model=m.to_model if switch else None,
                reapply=True,
            )
        )


def revert_notices(c: Cycle) -> list[Notification]:
    """One message per revert first seen this cycle (tell), to the channels of the rule (or
    budget stage) behind the change. A one-off: it is not repeated nor resolved."""
    out: list[Notification] = []
    for agent, r in c.reverts.items():
        if not r.new or c.silenced(agent, r.mark.rule) is not None:
            continue
        channels, severity = rule_channels(c, r.mark.rule), rule_severity(c, r.mark.rule)
        if not channels:
            continue
        a = c.work[agent]
        workload = f"{a.workload.kind}/{a.workload.name or agent.name}"
        manager = a.workload.managed_by
        who = f"likely by {manager}" if manager else "by someone else (no GitOps marks on it)"
        bound = (
            f"after {MAX_REAPPLIES} re-applies"
            if c.spec.guardrails.on_revert == OnRevert.REAPPLY
            else "spec.guardrails.onRevert: tell"
        )
        out.append(
            Notification(
                channels=channels,
                episode=f"{r.mark.episode}:reverted:{r.mark.reverts}",
                agent=agent,
                rule=r.mark.rule,
                severity=severity,
                state="firing",
                summary=f"{agent}: agentmedic's {_CHANGE[r.kind]} of {workload} was reverted "
                f"{who}: {r.what}. Not applied again ({bound}); let the change stick "
                "(docs/argocd.md, docs/flux.md) or drop agentmedic's record",
                reason_code=DecisionReason.REVERTED,
                action=f"none: {_CHANGE[r.kind]} reverted {who}",
                undo=restore_command(agent, workload),
                escalate=True,
                dry_run=c.dry_run,
                at=c.now,
            )
        )
    return out
