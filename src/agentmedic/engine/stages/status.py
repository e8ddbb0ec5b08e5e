"""Stage 7: each agent's status (for status.agents) and the healthy spell of a downgraded one.

By precedence: disabled, breaching, pending, downgraded, no data, healthy; an agent is
counted once, under the first that applies. Dry-run marks last as long as their episode.
"""

from __future__ import annotations

from agentmedic.api.types import AgentCounts, RecoveryMode
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.outcome import AgentStatus

__all__ = ["status"]


def status(c: Cycle) -> AgentCounts:
    """Every agent's status, and the counts."""
    counts = dict.fromkeys(AgentStatus, 0)
    auto = c.spec.recovery.mode == RecoveryMode.AUTO
    for a in c.work.values():
        _drop_virtual_marks(a)
        a.status = st = _status_of(a)
        counts[st] += 1
        if auto and st == AgentStatus.DOWNGRADED and not a.lacks_data:
            if a.healthy_since is None:
                a.healthy_since = c.now
        else:
            a.healthy_since = None
    return AgentCounts(
        total=len(c.work),
        healthy=counts[AgentStatus.HEALTHY],
        pending=counts[AgentStatus.PENDING],
        breaching=counts[AgentStatus.BREACHING],
        disabled=counts[AgentStatus.DISABLED],
        downgraded=counts[AgentStatus.DOWNGRADED],
        no_data=counts[AgentStatus.NO_DATA],
    )


def _drop_virtual_marks(a: AgentWork) -> None:
    """Dry-run marks are virtual: they last as long as their episode."""
    m = a.disabled
    if m is not None and m.dry_run:
        rs = a.rules.get(m.rule)
        if rs is None or rs.episode != m.episode:
            a.disabled = None
    m = a.downgraded
    if m is not None and m.dry_run:
        rs = a.rules.get(m.rule)
        if rs is None or rs.episode != m.episode:
            a.downgraded = None


def _status_of(a: AgentWork) -> AgentStatus:
    firing = pending = False
    for name, rs in a.rules.items():
        if rs.pending_since is None or name.startswith("budget."):
            continue
        if rs.firing_since is not None:
            firing = True
        else:
            pending = True
    if a.disabled is not None and not a.disabled.dry_run:
        return AgentStatus.DISABLED
    if firing:
        return AgentStatus.BREACHING
    if pending:
        return AgentStatus.PENDING
    if a.downgraded is not None and not a.downgraded.dry_run:
        return AgentStatus.DOWNGRADED
    if a.lacks_data or a.external_zero:
        return AgentStatus.NO_DATA
    return AgentStatus.HEALTHY
