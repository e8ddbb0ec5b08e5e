"""Guardrails: a chain of small named checks, each of which may stop a workload change.

Modelled on cert-manager's policy chain: every check takes the same input (the
:class:`Candidate` change and the cycle's :class:`Guard` context) and returns
``(reason, message)`` when it stops the change, or None to let it pass; the chain
answers with the first check that stops it. A stopped change becomes a Decision with
``suppressed_by`` set, reported once per episode and reason.

Order matters only for which reason is reported: an on-call engineer's silence first
(:mod:`agentmedic.engine.silences`: they said hands off, and until when), then a systemic
outage, then quiet hours (the change will happen later), then the
per-rule cooldown, the blast-radius cap and the hourly rate limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.durations import format_duration
from agentmedic.api.types import Action, Severity
from agentmedic.engine.conditions import Evidence
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.series import AgentId
from agentmedic.engine.silences import Silence
from agentmedic.engine.state import RuleState

__all__ = [
    "GUARDRAILS",
    "Candidate",
    "Check",
    "Guard",
    "cooldown",
    "evaluate_chain",
    "max_disabled",
    "quiet_hours",
    "rate_limit",
    "silenced",
    "systemic_outage",
]


@dataclass(slots=True)
class Candidate:
    """A workload change one firing episode asks for."""

    agent: AgentId
    rule: str
    kind: str
    """scaleToZero, switchModel or promptOptimization."""
    action: Action
    severity: Severity
    severity_rank: int
    episode: str
    badness: float
    build_evidence: Callable[[], Evidence]
    """Builds the evidence; only changes that are decided or reported need it."""
    rule_state: RuleState
    reason_code: str
    """RuleFiring, BudgetSoftLimit, BudgetHardLimit."""
    retry: bool = False
    """The same change was decided earlier in this episode but never observed."""
    note: str = ""
    """Appended to the decision's reason (e.g. the budget's projected crossing time)."""
    _evidence: Evidence | None = None

    @property
    def evidence(self) -> Evidence:
        """What the change rests on (built on first use)."""
        if self._evidence is None:
            self._evidence = self.build_evidence()
        return self._evidence

    @property
    def strength(self) -> int:
        """scaleToZero 3 > switchModel 2 > promptOptimization 1."""
        return {"scaleToZero": 3, "switchModel": 2, "promptOptimization": 1}[self.kind]


@dataclass(slots=True)
class Guard:
    """The cycle's view of the limits, updated as changes are granted."""

    now: datetime
    quiet: bool
    cooldown: timedelta
    max_per_hour: int
    max_disabled: int
    """How many of the policy's agents may be disabled at once."""
    disabled: int
    """How many are disabled now (including changes granted this cycle and dry-run ones)."""
    recent: set[tuple[str, str]] = field(default_factory=set)
    """(episode, kind) of the changes of the last hour."""
    systemic_rules: frozenset[str] = frozenset()
    silenced: Callable[[AgentId, str], Silence | None] = lambda _agent, _rule: None
    """The silence covering an agent's rule now, if any (:meth:`Cycle.silenced`)."""


Check = Callable[[Candidate, Guard], tuple[str, str] | None]


# An on-call engineer silenced the agent (or its rule, or the policy) until a set time.
def silenced(c: Candidate, g: Guard) -> tuple[str, str] | None:
    found = g.silenced(c.agent, c.rule)
    if found is not None:
        return DecisionReason.SILENCED, found.describe()
    return None


# The rule breaches across the fleet: a shared dependency is down; page once, act on nobody.
def systemic_outage(c: Candidate, g: Guard) -> tuple[str, str] | None:
    if c.rule_state.systemic or c.rule in g.systemic_rules:
        return (
            DecisionReason.SYSTEMIC_OUTAGE,
            f"rule {c.rule} breaches across the fleet (shared outage); the fleet was paged "
            "and no agent is changed",
        )
    return None


# Inside quiet hours only notifications go out; the change waits for the window to end.
def quiet_hours(c: Candidate, g: Guard) -> tuple[str, str] | None:
    if g.quiet:
        return (
            DecisionReason.QUIET_HOURS,
            "inside quiet hours: the change waits for the window to end",
        )
    return None


# The same agent and rule changed the workload less than the cooldown ago (another episode).
def cooldown(c: Candidate, g: Guard) -> tuple[str, str] | None:
    rs = c.rule_state
    if (
        rs.last_action_at is not None
        and rs.last_action_episode != c.episode
        and g.now - rs.last_action_at < g.cooldown
    ):
        left = g.cooldown - (g.now - rs.last_action_at)
        return (
            DecisionReason.COOLDOWN,
            f"rule {c.rule} acted on this agent {format_duration(g.now - rs.last_action_at)} "
            f"ago; cooldown {format_duration(g.cooldown)} ({format_duration(left)} left)",
        )
    return None


# Disabling one more agent would exceed maxDisabledPercent; worse agents were taken first.
def max_disabled(c: Candidate, g: Guard) -> tuple[str, str] | None:
    if c.kind == "scaleToZero" and g.disabled >= g.max_disabled:
        return (
            DecisionReason.MAX_DISABLED,
            f"{g.disabled} agents are disabled, the most maxDisabledPercent allows "
            f"({g.max_disabled}); notifying instead",
        )
    return None


# The policy already made maxActionsPerHour workload changes in the last hour.
def rate_limit(c: Candidate, g: Guard) -> tuple[str, str] | None:
    if (c.episode, c.kind) in g.recent:
        return None  # deciding the same change again is not another change
    if len(g.recent) >= g.max_per_hour:
        return (
            DecisionReason.RATE_LIMITED,
            f"{len(g.recent)} changes in the last hour, the most maxActionsPerHour allows",
        )
    return None


GUARDRAILS: tuple[Check, ...] = (
    silenced,
    systemic_outage,
    quiet_hours,
    cooldown,
    max_disabled,
    rate_limit,
)
"""The checks, in the order their reasons are reported."""


def evaluate_chain(
    c: Candidate, g: Guard, chain: tuple[Check, ...] = GUARDRAILS
) -> tuple[str, str] | None:
    """The first check that stops the change, as ``(reason, message)``; None if all pass."""
    for check in chain:
        stopped = check(c, g)
        if stopped is not None:
            return stopped
    return None
