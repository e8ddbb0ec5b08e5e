"""AgentPolicy status: conditions set by one helper, written only when something changed.

Conditions follow the Kubernetes convention (and cert-manager's helper): a condition's
``lastTransitionTime`` moves only when its status flips, ``observedGeneration`` is
stamped every time, reasons are CamelCase constants. :func:`status_patch` returns
``None`` when the new status equals the old one, so a steady fleet costs no writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agentmedic.api.types import (
    AgentCounts,
    AgentPolicyStatus,
    ConditionStatus,
    RecentAction,
    Spend,
    StatusCondition,
)

__all__ = ["ConditionType", "Reason", "build_status", "set_condition", "status_patch"]


class ConditionType:
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    REMEDIATING = "Remediating"


class Reason:
    """CamelCase reasons used in conditions and Events."""

    EVALUATING = "Evaluating"
    INVALID_SPEC = "InvalidSpec"
    NO_AGENTS = "NoAgentsSelected"
    NOT_OWNED = "OtherShard"
    METRICS_OK = "QueriesSucceeded"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    QUERY_ERROR = "QueryError"
    AGENTS_HEALTHY = "AgentsHealthy"
    AGENTS_REMEDIATED = "AgentsRemediated"
    AGENTS_BREACHING = "AgentsBreaching"
    WAITING_FOR_WORKLOADS = "WaitingForWorkloads"


def set_condition(
    conditions: list[StatusCondition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[StatusCondition]:
    """Return ``conditions`` with ``type_`` set; keep its transition time unless status flips."""
    out: list[StatusCondition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        transition = cond.last_transition_time if cond.status == status else now
        out.append(
            StatusCondition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=transition,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            StatusCondition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    order = {
        ConditionType.READY: 0,
        ConditionType.METRICS_AVAILABLE: 1,
        ConditionType.REMEDIATING: 2,
    }
    return sorted(out, key=lambda c: (order.get(c.type, 9), c.type))


def build_status(
    previous: AgentPolicyStatus | None,
    *,
    now: datetime,
    generation: int | None,
    conditions: list[tuple[str, ConditionStatus, str, str]],
    agents: AgentCounts | None = None,
    spend: Spend | None = None,
    new_actions: Sequence[RecentAction] = (),
    max_actions: int = 10,
) -> AgentPolicyStatus:
    """The next status from the previous one and what this cycle found."""
    prev = previous or AgentPolicyStatus()
    current = list(prev.conditions)
    for type_, status, reason, message in conditions:
        current = set_condition(
            current, type_, status, reason, message, now=now, generation=generation
        )
    recent = (list(new_actions) + list(prev.recent_actions))[:max_actions]
    return AgentPolicyStatus(
        observed_generation=generation,
        conditions=current,
        agents=agents if agents is not None else prev.agents,
        spend=spend if spend is not None else prev.spend,
        recent_actions=recent,
        last_evaluation_time=prev.last_evaluation_time,
    )


def _wire(status: AgentPolicyStatus) -> dict[str, Any]:
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def status_patch(
    old: AgentPolicyStatus | None, new: AgentPolicyStatus, *, now: datetime
) -> dict[str, Any] | None:
    """The status to write, or None when nothing but the evaluation time would change.

    ``lastEvaluationTime`` is stamped only on writes that happen anyway, so it reads as "the
    last evaluation that changed something"; a steady fleet costs no API writes.
    """
    if old is not None and _wire(old.model_copy(update={"last_evaluation_time": None})) == _wire(
        new.model_copy(update={"last_evaluation_time": None})
    ):
        return None
    return _wire(new.model_copy(update={"last_evaluation_time": now}))
