"""The status agentmedic writes on its resources: conditions, counts, spend, recent actions.

Data only, built on :mod:`agentmedic.api.base`; :mod:`agentmedic.api.types` re-exports these
names, so ``from agentmedic.api.types import StatusCondition`` keeps working.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, PlainSerializer

from agentmedic.api.base import Model
from agentmedic.api.units import format_timestamp

__all__ = [
    "ActionOutcome",
    "AgentCounts",
    "AgentPolicyStatus",
    "ConditionStatus",
    "RecentAction",
    "Spend",
    "StatusCondition",
    "Timestamp",
]


Timestamp = Annotated[
    datetime, PlainSerializer(format_timestamp, return_type=str, when_used="json")
]
"""A time in status: written as RFC 3339 in UTC to the second (``2026-12-03T08:40:05Z``), as
Kubernetes writes its own times, never with microseconds."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class StatusCondition(Model):
    type: str
    """Ready, MetricsAvailable or Remediating."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str
    """A CamelCase reason."""
    message: str = ""
    """A human-readable explanation."""
    last_transition_time: Timestamp
    """When status last changed."""
    observed_generation: int | None = None
    """The spec generation the condition was computed for."""


class AgentCounts(Model):
    total: int = 0
    """Agents selected by the policy."""
    healthy: int = 0
    """Agents with no rule pending or firing."""
    pending: int = 0
    """Agents with a rule breaching but not yet for long enough."""
    breaching: int = 0
    """Agents with a rule firing."""
    disabled: int = 0
    """Agents scaled to zero by the operator."""
    downgraded: int = 0
    """Agents moved to a cheaper model by the operator."""
    no_data: int = 0
    """Agents without enough data to judge."""


class Spend(Model):
    period_start: Timestamp
    """Start of the current budget period."""
    usd: float
    """Spend so far in the period (policy scope: all agents; agent scope: the sum), in steps
    of 0.5% of the limit (agent scope: of the limit times the agents) so that status is not
    rewritten on every evaluation."""
    forecast_usd: float | None = Field(default=None, alias="forecastUSD")
    """Projected spend at the period's end from the recent burn rate, in steps of 5% of the
    limit (agent scope: of the limit times the agents)."""
    limit_usd: float = Field(alias="limitUSD")
    """The limit for the period."""


class ActionOutcome(StrEnum):
    APPLIED = "Applied"
    DRY_RUN = "DryRun"
    SUPPRESSED = "Suppressed"
    FAILED = "Failed"
    RESTORED = "Restored"
    VERIFIED = "Verified"
    REGRESSED = "Regressed"
    INCONCLUSIVE = "Inconclusive"
    REVERTED = "Reverted"


class RecentAction(Model):
    time: Timestamp
    """When the action was decided."""
    agent: str
    """namespace/name of the agent's workload."""
    rule: str
    """The rule (or budget.soft / budget.hard / systemic) that caused it."""
    action: str
    """scaleToZero, switchModel, promptOptimization, notify, restore or verify."""
    outcome: ActionOutcome
    """Applied, DryRun, Suppressed (by a guardrail), Failed, Restored; on probation (verify):
    Verified, Regressed, Inconclusive, and Reverted for the restore that undid it."""
    reason: str
    """Why, with the evidence in short."""
    episode: str = ""
    """The episode key that makes the action idempotent."""


class AgentPolicyStatus(Model):
    observed_generation: int | None = None
    """The spec generation last evaluated."""
    conditions: list[StatusCondition] = Field(default_factory=list)
    """Ready, MetricsAvailable and Remediating."""
    agents: AgentCounts = Field(default_factory=AgentCounts)
    """Agents by state."""
    spend: Spend | None = None
    """Spend in the current budget period, when spec.budget is set."""
    recent_actions: list[RecentAction] = Field(default_factory=list, max_length=20)
    """The last actions, newest first (at most 20)."""
    last_evaluation_time: Timestamp | None = None
    """When the policy was last evaluated."""
