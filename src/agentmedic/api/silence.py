"""``AgentSilence``: an on-call engineer's time-limited "hands off" for one agent, one rule
of an agent, or a whole policy.

While a silence matches, the engine changes no workload and pages nobody for what it
covers; rule state still tracks, and the decisions it holds back are recorded as
suppressed with the silence's author, reason and end. A silence ends by itself at
``endsAt``; ``agentmedic silence expire`` moves ``endsAt`` to now, so the record stays
(``kubectl get agentsilences`` shows it, expired).

A resource of its own rather than an annotation: RBAC can let on-call create silences
without the right to edit policies or workloads, ``kubectl get`` lists them with their
author and end, and a silence survives the workload being re-created by a GitOps tool.

Data only, like :mod:`agentmedic.api.types`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from agentmedic.api.base import Model
from agentmedic.api.status import StatusCondition, Timestamp

__all__ = [
    "MAX_SILENCE",
    "SILENCE_KIND",
    "SILENCE_PLURAL",
    "AgentSilence",
    "AgentSilenceSpec",
    "AgentSilenceStatus",
]

SILENCE_KIND = "AgentSilence"
SILENCE_PLURAL = "agentsilences"

AGENT_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
"""An agent's name: a label value (agentmedic.io/agent) or a workload's name."""
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name (DNS subdomain)."""

MAX_SILENCE = timedelta(days=7)
"""The longest silence: a week. Anything longer is a policy change, not a silence."""


class AgentSilenceSpec(Model):
    agent: str | None = Field(default=None, max_length=253, pattern=AGENT_PATTERN)
    """The agent silenced, as agentmedic names it: the workload's agentmedic.io/agent label,
    else the workload's name (`agentmedic status` shows it). Omit it, with policy set, to
    silence every agent of that policy."""
    policy: str | None = Field(default=None, max_length=253, pattern=OBJECT_NAME_PATTERN)
    """Only this AgentPolicy (in the silence's namespace) is silenced; without agent, every
    agent it selects. Omit it to silence the agent under every policy."""
    rule: str | None = Field(default=None, min_length=1, max_length=63)
    """Only this rule (or budget stage: budget.soft, budget.hard); omit it for all of them."""
    starts_at: Timestamp | None = None
    """When the silence starts; unset: when it was created."""
    ends_at: Timestamp
    """When the silence ends by itself (at most 7 days after it starts)."""
    reason: str = Field(min_length=1, max_length=1024)
    """Why, for the people who find the agent untouched: the incident, the ticket."""
    created_by: str | None = Field(default=None, max_length=253)
    """Who made the silence (agentmedic silence add records the caller the API server
    authenticated)."""


class AgentSilenceStatus(Model):
    conditions: list[StatusCondition] = Field(default_factory=list)
    """Reserved for the operator."""


class AgentSilence(Model):
    """A time-limited silence: no workload change and no page for what it covers."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["AgentSilence"] = "AgentSilence"
    """AgentSilence"""
    metadata: dict[str, object] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentSilenceSpec
    """What is silenced, until when, why and by whom."""
    status: AgentSilenceStatus | None = None
    """Reserved for the operator."""

    def start(self) -> datetime | None:
        """When it starts: startsAt, else the object's creation time, else None."""
        if self.spec.starts_at is not None:
            return self.spec.starts_at
        created = self.metadata.get("creationTimestamp")
        if isinstance(created, str):
            try:
                return datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                return None
        return None
