"""A budget's status: what finance reads with kubectl, written only when it changed.

Figures are shown coarsely, like a policy's spend (:func:`~agentmedic.operator.status.
coarse_spend`): spend and the top agents in steps of 0.5% of the ceiling, the forecast in
steps of 5% and only once it moved by more than a step, the burn rate in steps of 0.5% of
the ceiling per hour. A status whose only change is in those figures is written at most
once per ``spendRefreshSeconds``; a stage reached, a new period, a condition that flips
or a new generation is written at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agentmedic.api.budget import (
    MAX_NAMED_MODELS,
    AgentSpend,
    BudgetAppliesTo,
    BudgetStatus,
    HeldStages,
    ModelPriceListStatus,
)
from agentmedic.api.types import ConditionStatus
from agentmedic.engine.finance import BudgetEvaluation
from agentmedic.engine.series import AgentId
from agentmedic.operator.budgets import BudgetEntry
from agentmedic.operator.status import set_condition

__all__ = [
    "ACTIONS_LIMITED",
    "METRICS_AVAILABLE",
    "PRICED",
    "READY",
    "build_status",
    "held_from_status",
    "held_stages",
    "invalid_status",
    "not_ready_status",
    "price_list_status",
    "status_due",
    "status_patch",
    "unread_status",
    "wire",
]

READY = "Ready"
ACTIONS_LIMITED = "ActionsLimited"
METRICS_AVAILABLE = "MetricsAvailable"
PRICED = "Priced"
_FIGURES = ("spendUSD", "forecastUSD", "burnUSDPerHour", "topAgents", "lastEvaluationTime")
"""Status fields that move whenever agents run: they alone never force a write."""


def _q(value: float | None, step: float) -> float | None:
    step = max(step, 0.01)
    return None if value is None else round(math.floor(value / step) * step, 4)


def _prior(entry: BudgetEntry) -> BudgetStatus | None:
    if entry.status is None:
        return None
    try:
        return BudgetStatus.model_validate(entry.status)
    except ValueError:
        return None


def _names(agents: Sequence[AgentId]) -> str:
    shown = ", ".join(str(a) for a in sorted(agents)[:5])
    return shown + (f" and {len(agents) - 5} more" if len(agents) > 5 else "")


def held_stages(ev: BudgetEvaluation) -> list[HeldStages] | None:
    """The stages a rolling period holds, for status: the total's, or the agents' grouped
    by the stages they hold (a calendar period holds nothing: spend never falls)."""
    if not ev.period.rolling:
        return None
    groups: dict[tuple[str, ...], list[str]] = {}
    for agent, names in ev.reached.items():
        if names:
            groups.setdefault(tuple(sorted(names)), []).append("" if agent is None else str(agent))
    held = [
        HeldStages(stages=list(stages), agents=sorted(a for a in agents if a) or None)
        for stages, agents in sorted(groups.items())
    ]
    return held or None


def held_from_status(status: Mapping[str, Any] | None) -> dict[AgentId | None, frozenset[str]]:
    """What a status's heldStages says is held, as :func:`~agentmedic.engine.finance.
    evaluate_budget` takes it (None: the total's); empty for a status it cannot read."""
    try:
        shown = BudgetStatus.model_validate(status or {})
    except ValueError:
        return {}
    out: dict[AgentId | None, frozenset[str]] = {}
    for group in shown.held_stages or []:
        keys: list[AgentId | None] = [_agent(a) for a in group.agents] if group.agents else [None]
        for key in keys:
            out[key] = out.get(key, frozenset()) | frozenset(group.stages)
    return out


def _agent(text: str) -> AgentId:
    namespace, _, name = text.partition("/")
    return AgentId(namespace, name)


def build_status(
    entry: BudgetEntry,
    ev: BudgetEvaluation,
    *,
    agents: int,
    no_tiers: Sequence[AgentId],
    not_managed: Sequence[AgentId],
    metrics_error: str | None,
    now: datetime,
    unpriced: frozenset[str] | None = None,
    price_list: tuple[str, bool] | None = None,
) -> BudgetStatus:
    """The status of a valid, evaluated budget. ``price_list`` (costSource priceList: its
    name and whether it exists) and ``unpriced`` (the models it could not price this run;
    None when spend was not read) set the condition Priced."""
    spec = entry.spec
    assert spec is not None
    prior = _prior(entry)
    ceiling = spec.limit_usd * (agents if spec.applies_to == BudgetAppliesTo.PER_AGENT else 1)
    ceiling = max(ceiling, spec.limit_usd)
    forecast = _q(ev.forecast, ceiling / 20)
    if (
        prior is not None
        and prior.forecast_usd is not None
        and ev.forecast is not None
        and abs(ev.forecast - prior.forecast_usd) <= ceiling / 20
    ):
        forecast = prior.forecast_usd
    conditions = list(prior.conditions) if prior is not None else []
    gen = entry.generation

    def put(type_: str, ok: bool, reason: str, message: str) -> None:
        nonlocal conditions
        status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
        conditions = set_condition(
            conditions, type_, status, reason, message, now=now, generation=gen
        )

    put(READY, True, "Evaluated", f"{agents} agents selected")
    if metrics_error is None:
        put(METRICS_AVAILABLE, True, "QueriesAnswered", "")
    else:
        put(METRICS_AVAILABLE, False, "MetricsUnavailable", metrics_error)
    put(ACTIONS_LIMITED, *_limited(entry, no_tiers, not_managed))
    if price_list is None:
        conditions = [c for c in conditions if c.type != PRICED]
    elif unpriced is not None:
        put(PRICED, not unpriced, *_priced(unpriced, *price_list))
    return BudgetStatus(
        observed_generation=gen,
        conditions=conditions,
        period_start=ev.period.start.replace(second=0, microsecond=0),
        period_end=None if ev.period.rolling else ev.period.end,
        spend_usd=_q(ev.spent, ceiling / 200),
        forecast_usd=forecast,
        burn_usd_per_hour=_q(ev.burn_per_hour, ceiling / 200),
        stage=ev.stage,
        agents=agents,
        top_agents=[
            AgentSpend(agent=str(a), usd=_q(usd, ceiling / 200) or 0.0) for a, usd in ev.top[:5]
        ],
        last_evaluation_time=now.replace(microsecond=0),
        held_stages=held_stages(ev),
    )


def _limited(
    entry: BudgetEntry, no_tiers: Sequence[AgentId], not_managed: Sequence[AgentId]
) -> tuple[bool, str, str]:
    """The ActionsLimited condition's status, reason and message."""
    spec = entry.spec
    assert spec is not None
    if no_tiers and any(s.response == "downgrade" for s in spec.stages):
        return (
            True,
            "NoModelTiers",
            f"a downgrade stage applies to agents whose AgentPolicy has no spec.model: "
            f"{_names(no_tiers)}; add model tiers to their policy",
        )
    if not_managed:
        return (
            True,
            "NotManaged",
            f"selected workloads belong to no AgentPolicy and are not counted: "
            f"{_names(not_managed)}; select them with an AgentPolicy",
        )
    return False, "AllActionsPossible", ""


def _priced(unpriced: frozenset[str], name: str, exists: bool) -> tuple[str, str]:
    """The Priced condition's reason and message."""
    if not unpriced:
        return "AllModelsPriced", f"every model is priced by ModelPriceList {name}"
    models = sorted(unpriced)
    shown = ", ".join(models[:MAX_NAMED_MODELS])
    if len(models) > MAX_NAMED_MODELS:
        shown += f" and {len(models) - MAX_NAMED_MODELS} more"
    where = (
        f"add them to spec.prices of the ModelPriceList {name}"
        if exists
        else f"no ModelPriceList named {name} exists and the built-in table does not price "
        f"them; create ModelPriceList {name} with their prices"
    )
    return (
        "UnpricedModels",
        f"tokens of models without a price count nothing, so spend is a lower bound: "
        f"{shown}; {where}",
    )


def invalid_status(entry: BudgetEntry, now: datetime) -> BudgetStatus:
    """Ready=False, InvalidSpec, naming the problems (the budget is not evaluated)."""
    message = "; ".join(entry.problems[:5])
    if len(entry.problems) > 5:
        message += f"; and {len(entry.problems) - 5} more"
    return not_ready_status(entry, "InvalidSpec", message, now)


def not_ready_status(entry: BudgetEntry, reason: str, message: str, now: datetime) -> BudgetStatus:
    """Ready=False with ``reason``: the budget is not evaluated."""
    prior = _prior(entry)
    conditions = set_condition(
        list(prior.conditions) if prior is not None else [],
        READY,
        ConditionStatus.FALSE,
        reason,
        message,
        now=now,
        generation=entry.generation,
    )
    return BudgetStatus(observed_generation=entry.generation, conditions=conditions)


def unread_status(entry: BudgetEntry, metrics_error: str, now: datetime) -> dict[str, Any]:
    """The status of a budget not evaluated because its spend could not be read (its first
    evaluation, or the first since this replica became leader, met a backend's fault):
    Ready False and MetricsAvailable False with the backend's error, so that finance sees
    why there is no new figure. Everything else in status is kept as the API server shows
    it: the figures of an earlier evaluation, and the held stages a restart must not
    release."""
    prior = _prior(entry)
    conditions = list(prior.conditions) if prior is not None else []
    for type_, reason, message in (
        (
            READY,
            "NotEvaluated",
            "spend could not be read; nothing this budget started is undone and nothing new "
            "is acted on until it is (figures shown, if any, are from an earlier evaluation)",
        ),
        (METRICS_AVAILABLE, "MetricsUnavailable", metrics_error),
    ):
        conditions = set_condition(
            conditions,
            type_,
            ConditionStatus.FALSE,
            reason,
            message,
            now=now,
            generation=entry.generation,
        )
    said = wire(BudgetStatus(observed_generation=entry.generation, conditions=conditions))
    return {
        **(entry.status or {}),
        "observedGeneration": said["observedGeneration"],
        "conditions": said["conditions"],
    }


def price_list_status(
    obj: Mapping[str, Any],
    models: int | None,
    problems: Sequence[str],
    now: datetime,
    unpriced: Sequence[str] = (),
) -> dict[str, Any]:
    """A ModelPriceList's status: Ready (valid and in use, or why not), the models it
    prices, the built-in ones included, and the models budgets met that it does not
    price (``unpriced``)."""
    meta = obj.get("metadata") or {}
    prior = ModelPriceListStatus.model_validate(obj.get("status") or {})
    generation = int(meta.get("generation") or 0)
    if problems:
        message = "; ".join(problems[:5])
        ready = (ConditionStatus.FALSE, "InvalidSpec", message)
    else:
        ready = (ConditionStatus.TRUE, "InUse", f"{models} models priced")
    conditions = set_condition(
        list(prior.conditions), READY, *ready, now=now, generation=generation
    )
    status = ModelPriceListStatus(
        observed_generation=generation,
        conditions=conditions,
        models=models or 0,
        unpriced_models=sorted(unpriced)[:MAX_NAMED_MODELS] or None,
    )
    out: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def wire(status: BudgetStatus) -> dict[str, Any]:
    """The status as the API server stores it."""
    out: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


_CLEARED = ("heldStages", "periodEnd", "unpricedModels")
"""Fields an evaluated status may leave out that a merge patch must remove explicitly
(a rolling period holds nothing any more; a calendar period became a rolling one)."""


def status_patch(shown: Mapping[str, Any] | None, wanted: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes the status ``wanted`` (a budget's or a price list's): an
    evaluated status removes what it no longer holds."""
    if "periodStart" not in wanted and "models" not in wanted:
        return wanted
    gone = {k: None for k in _CLEARED if k in (shown or {}) and k not in wanted}
    return {**wanted, **gone}


def status_due(
    entry: BudgetEntry, wanted: dict[str, Any], now: datetime, refresh_seconds: float
) -> bool:
    """Whether ``wanted`` must be written: something other than the moving figures
    changed, or they changed and the last figures are older than the refresh."""
    shown = entry.status or {}

    def steady(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in _FIGURES}

    if steady(shown) != steady(wanted):
        return True
    moved = any(shown.get(k) != wanted.get(k) for k in _FIGURES if k != "lastEvaluationTime")
    if not moved:
        return False
    last = entry.spend_written_at
    return last is None or (now - last).total_seconds() >= refresh_seconds
