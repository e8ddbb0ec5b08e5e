"""Whom a rule or a budget stage tells, and how urgently: one answer for every stage that
sends a message about a change after the fact (probation, reverts, a prompt Job's outcome).

A rule's channels are those of its notify actions (:class:`~agentmedic.engine.conditions.
CompiledRule`), its severity its own; a budget stage's (``budget.soft``, ``budget.hard``)
are its actions' channels and :data:`~agentmedic.engine.stages.remediation.STAGE_SEVERITY`.
A name the spec no longer has gets no channels (nothing is sent) and medium severity.
"""

from __future__ import annotations

from agentmedic.api.types import Severity
from agentmedic.engine.budget import HARD, SOFT
from agentmedic.engine.context import Cycle
from agentmedic.engine.stages.remediation import STAGE_SEVERITY

__all__ = ["rule_channels", "rule_severity"]


def rule_channels(c: Cycle, rule: str) -> tuple[str, ...]:
    """The channels of the rule or budget stage ``rule``, in order, without repeats."""
    if rule in (SOFT, HARD):
        budget = c.spec.budget
        limit = None if budget is None else (budget.soft if rule == SOFT else budget.hard)
        if limit is None:
            return ()
        names = (ch for act in limit.actions if act.notify for ch in act.notify.channels)
        return tuple(dict.fromkeys(names))
    return next((r.channels for r in c.rules if r.name == rule), ())


def rule_severity(c: Cycle, rule: str) -> Severity:
    """The severity of the rule or budget stage ``rule``."""
    if rule in STAGE_SEVERITY:
        return STAGE_SEVERITY[rule]
    return next((r.severity for r in c.rules if r.name == rule), Severity.MEDIUM)
