"""A page a silence held back, recorded: part of stage 8 (:mod:`.notices`).

A silenced rule whose workload change is held leaves a suppressed decision (stage 5); a
rule that only notifies has no change to hold, so its held page is what is recorded: a
``notify`` decision suppressed as ``Silenced``, with the silence's author, reason and end,
once per episode (the rule's ``suppressed`` memory, persisted with the agent's state, so
a restart does not record it again). After the silence an SRE can tell a page was held.
"""

from __future__ import annotations

from dataclasses import replace

from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.outcome import Decision, DecisionKind, Notification
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.silences import Silence

__all__ = ["hold_page", "page_hold_unrecorded"]


def page_hold_unrecorded(a: AgentWork, rule: str) -> bool:
    """Whether no silence's hold was recorded yet in the episode of ``rule`` on ``a`` (a
    held workload change of the same episode counts: it already names the silence)."""
    rs = a.rules.get(rule)
    return rs is not None and rs.suppressed != DecisionReason.SILENCED


def hold_page(c: Cycle, a: AgentWork, page: Notification, silence: Silence) -> None:
    """Record ``page`` (the firing message not sent) as held by ``silence``."""
    rs = a.rules[page.rule]
    a.set_rule(page.rule, replace(rs, suppressed=DecisionReason.SILENCED))
    assert page.evidence is not None
    c.decisions.append(
        Decision(
            kind=DecisionKind.NOTIFY,
            agent=a.agent,
            workload=f"{a.workload.kind}/{a.workload.name or a.agent.name}",
            rule=page.rule,
            severity=page.severity,
            episode=page.episode,
            reason_code=page.reason_code,
            reason=f"{page.summary} — page to {', '.join(page.channels)} not sent: "
            f"{silence.describe()}",
            evidence=page.evidence,
            at=c.now,
            dry_run=c.dry_run,
            suppressed_by=DecisionReason.SILENCED,
        )
    )
