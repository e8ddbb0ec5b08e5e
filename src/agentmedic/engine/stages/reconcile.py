"""Stage 1, per agent: what the workloads show against what the engine decided.

Changes that landed are confirmed, restores are noticed, and changes that never showed
up are forgotten so they are decided again with the same episode key. Agents that cannot
be judged this cycle (disabled, at zero replicas, metrics undefined) are frozen.
"""

from __future__ import annotations

from dataclasses import replace

from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.finance import is_external_rule
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.series import AgentId
from agentmedic.engine.stages.reverts import detect_reverts
from agentmedic.engine.state import Mark

__all__ = ["agent_gone", "reconcile"]


def reconcile(c: Cycle, a: AgentWork) -> None:
    """Bring one agent's memory in line with its workload, and freeze it if it can't be judged."""
    known = c.plan.known_rules
    if a.rules and not known.issuperset(a.rules):
        # Rules removed from the spec: forget them (their messages resolve).
        # Finance's budget stages are not the spec's: the budgets stage keeps them.
        for name in [n for n in a.rules if n not in known and not is_external_rule(n)]:
            a.set_rule(name, None)
    _disabled(c, a)
    _downgraded(c, a)
    detect_reverts(c, a)
    if a.restored_at == c.now or (a.disabled is not None and not a.disabled.dry_run):
        # A disabled agent has no executions: its rules would see no data, which must
        # neither resolve its episode nor count against it. Hold every rule as it is.
        a.frozen = True
        a.no_data_since = None
    elif a.workload.replicas == 0 or a.unknown:
        # Scaled to zero by someone else (or KEDA idling it): nothing runs, nothing to judge.
        # Metrics undefined (NaN): no evidence either way; held the same way.
        a.frozen = True
        a.external_zero = True
        a.no_data_since = None


def _disabled(c: Cycle, a: AgentWork) -> None:
    m, rec = a.disabled, a.workload.disabled
    if m is not None and not m.dry_run and not m.confirmed:
        if rec is not None and rec.episode == m.episode:
            a.disabled = replace(m, confirmed=True)
            return
        if c.now - m.at < c.plan.retry_after:
            return  # decided recently; the record may not have reached us yet
        _forget(a, m, "scaleToZero")
        a.disabled = m = None
    if rec is not None:
        if m is None or m.episode != rec.episode:
            a.disabled = Mark(rec.episode, rec.rule, rec.at, confirmed=True)
        return
    if m is not None and m.confirmed:
        a.disabled = None
        if m.restoring_at is not None:
            # Our own restore (auto recovery or a new budget period) ends the episode
            # that disabled the agent: if it fails again, that is a new episode. A
            # person's restore does not: the episode goes on, acted, until it clears.
            rs = a.rules.get(m.rule)
            if rs is not None and rs.episode == m.episode:
                a.set_rule(m.rule, rs.idle())
                c.ended[m.episode] = DecisionReason.RESTORED


def _downgraded(c: Cycle, a: AgentWork) -> None:
    m, rec, w = a.downgraded, a.workload.downgraded, a.workload
    if m is not None and not m.dry_run and not m.confirmed:
        if rec is not None and rec.episode == m.episode:
            # Already back on the recorded previous model: reverted before we saw it land.
            landed = w.model if w.model not in (None, rec.previous_model) else None
            a.downgraded = m = replace(m, confirmed=True, to_model=landed or m.to_model)
        elif c.now - m.at < c.plan.retry_after:
            return
        else:
            _forget(a, m, "switchModel")
            a.downgraded = m = None
    if rec is not None:
        if m is None or m.episode != rec.episode:
            a.downgraded = Mark(
                rec.episode,
                rec.rule,
                rec.at,
                confirmed=True,
                from_model=rec.previous_model,
                to_model=w.model,
            )
            return
        if m.restoring_at is not None and w.model is not None and w.model == m.restore_to:
            # One tier back up landed; the next step waits another healthyFor.
            a.downgraded = replace(m, to_model=w.model, restoring_at=None, restore_to=None)
            a.healthy_since = c.now
        elif w.model is not None and w.model not in (m.to_model, rec.previous_model):
            # Moved on by someone (back to the recorded model is a revert: stages/reverts).
            a.downgraded = replace(m, to_model=w.model)
        return
    if m is not None and m.confirmed:
        a.downgraded = None
        a.healthy_since = None


def _forget(a: AgentWork, m: Mark, kind: str) -> None:
    """A change never showed up on the workload: decide it again (same episode key)."""
    rs = a.rules.get(m.rule)
    if rs is not None and rs.episode == m.episode:
        # Only the change that never landed is owed again: after a scale to zero the
        # weaker actions of the episode stay moot.
        a.set_rule(m.rule, replace(rs, done=rs.done - {kind}))
        a.retry.add((m.rule, kind))


def agent_gone(c: Cycle, agent: AgentId) -> None:
    """An agent no longer selected: its episodes end."""
    for rs in c.prior.agents[agent].rules.values():
        if rs.episode is not None:
            c.ended[rs.episode] = DecisionReason.AGENT_GONE
