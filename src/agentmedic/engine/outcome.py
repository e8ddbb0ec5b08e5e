"""What one evaluation returns: decisions, notifications, per-agent status, spend, new state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from agentmedic.api.types import AgentCounts, PromptOptimizationAction, Severity, Spend
from agentmedic.engine.conditions import Evidence, severity_rank, strength
from agentmedic.engine.reverts import Revert
from agentmedic.engine.series import AgentId
from agentmedic.engine.silences import Silence
from agentmedic.engine.state import PolicyState

__all__ = [
    "AgentStatus",
    "CycleResult",
    "Decision",
    "DecisionKind",
    "Notification",
    "ProbationOutcome",
    "Restore",
    "SpendReport",
    "restore_command",
    "strongest_per_agent",
]


class DecisionKind(StrEnum):
    """A change to an agent's workload, strongest first; and ``notify``, a page a silence
    held back (always suppressed: recorded for status and Events, never carried out)."""

    SCALE_TO_ZERO = "scaleToZero"
    SWITCH_MODEL = "switchModel"
    PROMPT_OPTIMIZATION = "promptOptimization"
    RESTORE = "restore"
    NOTIFY = "notify"


class AgentStatus(StrEnum):
    """One agent's state for status, by precedence: disabled, breaching, pending, downgraded,
    no_data, healthy (an agent is counted once, under the first that applies)."""

    HEALTHY = "healthy"
    PENDING = "pending"
    BREACHING = "breaching"
    DISABLED = "disabled"
    DOWNGRADED = "downgraded"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class Restore:
    """What a restore decision puts back."""

    replicas: bool = False
    """Scale back to the replica count recorded when the agent was disabled (unpause KEDA)."""
    model: str | None = None
    """Set the model to this tier; None leaves the model alone."""
    complete: bool = False
    """The model goes back to the recorded original: the downgrade record is removed."""
    prompt: bool = False
    """Put back the prompt text agentmedic rolled out over (a prompt that regressed on
    probation)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One decided change to one agent's workload.

    ``applies`` is True when the operator should carry it out: not suppressed and not a dry
    run. Suppressed and dry-run decisions are for status and Events only.
    """

    kind: DecisionKind
    """scaleToZero, switchModel, promptOptimization or restore; notify for a held page."""
    agent: AgentId
    """The agent."""
    workload: str
    """``Kind/name`` of the agent's workload."""
    rule: str
    """The rule, or ``budget.soft``/``budget.hard``; for a restore, the rule being undone."""
    severity: Severity
    """The rule's severity (budget: soft medium, hard high)."""
    episode: str
    """The episode key: names the Job, dedups the action; a restore carries the key of the
    episode whose change it undoes."""
    reason_code: str
    """A :class:`~agentmedic.engine.reasons.DecisionReason` value: why it was decided."""
    reason: str
    """The reason for people, with the evidence in short."""
    evidence: Evidence
    """What it rests on; ``evidence.holds()`` re-derives it."""
    at: datetime
    """When it was decided."""
    dry_run: bool = False
    """spec.guardrails.dryRun: record it as "would", change nothing."""
    suppressed_by: str | None = None
    """The guardrail (a DecisionReason value) that stopped it; None when it stands."""
    from_model: str | None = None
    """switchModel: the current model."""
    to_model: str | None = None
    """switchModel: the model to move to."""
    prompt_optimization: PromptOptimizationAction | None = None
    """promptOptimization: the Job to start."""
    restore: Restore | None = None
    """restore: what to put back."""
    reapply: bool = False
    """Applied again after someone else reverted it (spec.guardrails.onRevert reapply)."""
    badness: float = 0.0
    """How far past its thresholds the agent was (ranks agents, worst first)."""
    baseline: Mapping[str, float | None] | None = None
    """switchModel and promptOptimization with spec.verify: the agent's signals over
    verify.baselineWindow, for the probation record written with the change (a prompt's
    when its new version is rolled out)."""

    @property
    def applies(self) -> bool:
        """The operator should carry this out."""
        return self.suppressed_by is None and not self.dry_run

    @property
    def precedence(self) -> tuple[int, int, float]:
        """Sort key, larger first: action strength, severity, badness. Across policies the
        operator keeps, per agent, the decision with the largest precedence."""
        return (strength(self.kind.value), severity_rank(self.severity), self.badness)

    @property
    def undo(self) -> str | None:
        """The command that undoes the change, for notifications."""
        if self.kind in (DecisionKind.SCALE_TO_ZERO, DecisionKind.SWITCH_MODEL):
            return restore_command(self.agent, self.workload)
        return None


def restore_command(agent: AgentId, workload: str) -> str:
    """The command that puts back what agentmedic changed on ``workload`` (``Kind/name``)."""
    kind, _, name = workload.rpartition("/")
    resource = "statefulset" if kind.lower() == "statefulset" else "deployment"
    return f"agentmedic restore {resource}/{name} -n {agent.namespace}"


@dataclass(frozen=True, slots=True)
class Notification:
    """A message to send: an episode began (firing) or ended (resolved)."""

    channels: tuple[str, ...]
    """Channel names from spec.notifications.channels."""
    episode: str
    """The episode key: the dedup key downstream (PagerDuty dedup_key)."""
    agent: AgentId | None
    """The agent, or None for a fleet-wide episode (systemic outage, policy budget)."""
    rule: str
    """The rule, ``budget.soft``/``budget.hard``, or ``noData``."""
    severity: Severity
    """The severity."""
    state: Literal["firing", "resolved"]
    """firing when the episode starts, resolved when it ends."""
    summary: str
    """One line for people."""
    reason_code: str
    """A DecisionReason value."""
    evidence: Evidence | None = None
    """The evidence when firing."""
    action: str | None = None
    """The workload change taken (or why none was), e.g. "scaled to zero"."""
    undo: str | None = None
    """The command that undoes the change."""
    escalate: bool = False
    """A person must act: the remediation could not be applied (e.g. already cheapest)."""
    dry_run: bool = False
    """The policy is in dry run: the action is what would have happened."""
    at: datetime | None = None
    """When it was decided."""


@dataclass(frozen=True, slots=True)
class ProbationOutcome:
    """The verdict on a change on probation (spec.verify), for status, Events and reports."""

    agent: AgentId
    workload: str
    """``Kind/name`` of the agent's workload."""
    rule: str
    """The rule (or budget stage) behind the change."""
    episode: str
    """The episode key of the change."""
    change: str
    """switchModel or prompt."""
    verdict: str
    """Verified, Regressed or Inconclusive."""
    previous: str
    """The value before the change."""
    new: str
    """The value the change set."""
    summary: str
    """One line for people, with the numbers before and after."""
    at: datetime
    """When it was judged."""
    action: str = "none"
    """What follows: reverted, notified, scaled to zero, held (why), or none."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class SpendReport:
    """Spend in the current budget period."""

    period_start: datetime
    period_end: datetime
    usd: float
    """Spend so far (agent scope: the sum over agents)."""
    limit_usd: float
    """limitUSD (agent scope: each agent's ceiling)."""
    forecast_usd: float | None = None
    """Spend projected to the period's end at the recent burn rate (agent scope: the sum)."""
    crosses_at: datetime | None = None
    """When the limit would be crossed at the recent burn rate, if within the period (agent
    scope: the earliest agent)."""
    per_agent: Mapping[AgentId, float] = field(default_factory=dict)
    """Each agent's spend so far."""

    def to_status(self) -> Spend:
        """The status.spend block."""
        return Spend(
            period_start=self.period_start,
            usd=round(self.usd, 6),
            forecast_usd=None if self.forecast_usd is None else round(self.forecast_usd, 6),
            limit_usd=self.limit_usd,
        )


@dataclass(frozen=True)
class CycleResult:
    """The result of one evaluation."""

    state: PolicyState
    """The state to remember (pass it as ``prior`` next cycle)."""
    decisions: list[Decision]
    """Workload changes, ranked by precedence (strongest first), including suppressed and
    dry-run ones (for status); carry out those whose ``applies`` is True."""
    notifications: list[Notification]
    """Messages to send."""
    agents: Mapping[AgentId, AgentStatus]
    """Each agent's state."""
    counts: AgentCounts
    """Agents by state, for status.agents."""
    spend: SpendReport | None = None
    """Spend, when the policy has a budget."""
    probation: list[ProbationOutcome] = field(default_factory=list)
    """Verdicts on changes on probation reached this cycle (spec.verify)."""
    reverts: Mapping[AgentId, Revert] = field(default_factory=dict)
    """Agents whose change someone else put back, this cycle (for status and Events)."""
    silences: tuple[Silence, ...] = ()
    """The silences in force this cycle that apply to the policy (for status)."""

    @property
    def workload_changes(self) -> list[Decision]:
        """The decisions to carry out, strongest first."""
        return [d for d in self.decisions if d.applies]


def strongest_per_agent(decisions: Iterable[Decision]) -> list[Decision]:
    """Across several policies' outcomes, keep the strongest applicable change per agent.

    An agent selected by more than one policy may get a change from each in one cycle; the
    operator feeds all of them here and applies only the winners (strength, then severity,
    then badness; ties keep the first seen). Restores lose to any remediation.
    """
    best: dict[AgentId, Decision] = {}
    for d in decisions:
        if not d.applies:
            continue
        current = best.get(d.agent)
        if current is None or d.precedence > current.precedence:
            best[d.agent] = d
    return sorted(best.values(), key=lambda d: d.precedence, reverse=True)
