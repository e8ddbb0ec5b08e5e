"""AgentPolicy status: conditions set by one helper, written only when something changed.

Conditions follow the Kubernetes convention (and cert-manager's helper): a condition's
``lastTransitionTime`` moves only when its status flips, ``observedGeneration`` is
stamped every time, reasons are CamelCase constants. :func:`status_patch` returns
``None`` when the new status equals the old one, so a steady fleet costs no writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.api.types import (
    AgentCounts,
    AgentPolicyStatus,
    ConditionStatus,
    RecentAction,
    Spend,
    StatusCondition,
)

__all__ = [
    "ConditionType",
    "Conditions",
    "Reason",
    "build_status",
    "coarse_spend",
    "cycle_conditions",
    "invalid_conditions",
    "outage_conditions",
    "set_condition",
    "status_patch",
]

Condition = tuple[str, ConditionStatus, str, str]
"""(type, status, reason, message) of one condition."""
Conditions = list[Condition]
"""The conditions a cycle sets."""


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

    def condition(transition: datetime) -> StatusCondition:
        return StatusCondition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=transition,
            observed_generation=generation,
        )

    out: list[StatusCondition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        out.append(condition(cond.last_transition_time if cond.status == status else now))
    if not found:
        out.append(condition(now))
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


# ---------------------------------------------------------------------- condition choice


def invalid_conditions(message: str) -> Conditions:
    """A policy refused by validation: not Ready, the problems named."""
    return [(ConditionType.READY, ConditionStatus.FALSE, Reason.INVALID_SPEC, message)]


def outage_conditions(reason: str, what: str, since: datetime) -> Conditions:
    """A policy not evaluated for want of metrics: still Ready, MetricsAvailable=False with
    the fault's reason and since when."""
    return [
        (ConditionType.READY, ConditionStatus.TRUE, Reason.EVALUATING, "policy accepted"),
        (
            ConditionType.METRICS_AVAILABLE,
            ConditionStatus.FALSE,
            reason,
            f"{what[:800]} (since {since.isoformat(timespec='seconds')}); no "
            "remediation until metrics return",
        ),
    ]


def cycle_conditions(
    counts: AgentCounts,
    *,
    selected: int,
    selector: str,
    interval: timedelta,
    query_errors: Sequence[str],
    warnings: str = "",
) -> Conditions:
    """Ready, MetricsAvailable and Remediating after an evaluated cycle; ``warnings`` (the
    linter's, as one line) follow Ready's message."""
    return [
        _ready(selected, selector, interval, warnings),
        _metrics(query_errors),
        _remediating(counts),
    ]


def _ready(selected: int, selector: str, interval: timedelta, warnings: str = "") -> Condition:
    # Ready either way; the reason tells an empty selection from a working one.
    after = f"; {warnings}" if warnings else ""
    if selected == 0:
        return (
            ConditionType.READY,
            ConditionStatus.TRUE,
            Reason.NO_AGENTS,
            f"no Deployment or StatefulSet matches {selector}{after}",
        )
    return (
        ConditionType.READY,
        ConditionStatus.TRUE,
        Reason.EVALUATING,
        f"evaluating {selected} agent(s) every {format_duration(interval)}{after}",
    )


def _metrics(query_errors: Sequence[str]) -> Condition:
    # A query Prometheus refused is the policy's own mistake, named in the message.
    if query_errors:
        return (
            ConditionType.METRICS_AVAILABLE,
            ConditionStatus.FALSE,
            Reason.QUERY_ERROR,
            "; ".join(query_errors)[:1000],
        )
    return (
        ConditionType.METRICS_AVAILABLE,
        ConditionStatus.TRUE,
        Reason.METRICS_OK,
        "all queries answered",
    )


def _remediating(counts: AgentCounts) -> Condition:
    # Agents acted on outrank agents still only breaching.
    if counts.disabled + counts.downgraded:
        return (
            ConditionType.REMEDIATING,
            ConditionStatus.TRUE,
            Reason.AGENTS_REMEDIATED,
            f"{counts.disabled} disabled, {counts.downgraded} on a cheaper model",
        )
    if counts.breaching:
        return (
            ConditionType.REMEDIATING,
            ConditionStatus.TRUE,
            Reason.AGENTS_BREACHING,
            f"{counts.breaching} agent(s) breaching a rule",
        )
    return (
        ConditionType.REMEDIATING,
        ConditionStatus.FALSE,
        Reason.AGENTS_HEALTHY,
        "no agent is being remediated",
    )


# ---------------------------------------------------------------------- spend


def coarse_spend(spend: Spend, shown: Spend | None = None, *, agents: int = 1) -> Spend:
    """Spend in steps of 0.5% of the limit, the forecast (an estimate that moves with every
    sample) in steps of 5% and only once it has moved by more than a step from what status
    shows, a rolling period's start to the minute: live numbers would otherwise rewrite
    status on every cycle. With ``scope: agent`` the spend is the sum over ``agents`` agents
    each with its own limit, so the steps scale with them."""
    ceiling = spend.limit_usd * max(agents, 1)

    def q(value: float | None, step: float) -> float | None:
        step = max(step, 0.01)
        return None if value is None else round(math.floor(value / step) * step, 4)

    start = spend.period_start.replace(second=0, microsecond=0)
    forecast = q(spend.forecast_usd, ceiling / 20)
    if (
        shown is not None
        and forecast is not None
        and shown.forecast_usd is not None
        and spend.forecast_usd is not None
        and abs(spend.forecast_usd - shown.forecast_usd) <= ceiling / 20
    ):
        forecast = shown.forecast_usd
    return spend.model_copy(
        update={
            "usd": q(spend.usd, ceiling / 200),
            "forecast_usd": forecast,
            "period_start": start,
        }
    )
