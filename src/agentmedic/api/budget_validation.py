"""Validation of finance's documents: AgentBudget, ClusterAgentBudget and ModelPriceList.

The same two passes as :mod:`agentmedic.api.validation` for AgentPolicy, and the same
:class:`~agentmedic.api.validation.Problem` values (field path and the fix): the pydantic
models check types, ranges and patterns, then the checks across fields below (a time
zone that exists, stage channels that are defined, unique names, a rolling period within
bounds, a cluster budget that says which namespaces it covers). Every problem is
reported at once; nothing here raises on bad input.

:func:`budget_problems` is what the operator and ``agentmedic validate`` call;
:func:`validate_budget` also returns the parsed resource. Pure: no I/O, no clock.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from agentmedic.api.budget import (
    BUDGET_KIND,
    CLUSTER_BUDGET_KIND,
    PRICE_LIST_KIND,
    AgentBudget,
    AgentBudgetSpec,
    ClusterAgentBudget,
    ClusterAgentBudgetSpec,
    ModelPriceList,
    ModelPriceListSpec,
)
from agentmedic.api.types import API_VERSION, MIN_INTERVAL, LabelSelector
from agentmedic.api.validation import (
    Problem,
    _check_channels,
    _check_rolling_period,
    _duplicates,
    _from_pydantic,
    _shown,
    _unknown_channel,
    did_you_mean,
)

__all__ = [
    "CALENDAR_PERIODS",
    "FINANCE_KINDS",
    "FinanceResource",
    "budget_problems",
    "validate_budget",
]

FinanceResource = AgentBudget | ClusterAgentBudget | ModelPriceList

FINANCE_KINDS: dict[str, type[BaseModel]] = {
    BUDGET_KIND: AgentBudget,
    CLUSTER_BUDGET_KIND: ClusterAgentBudget,
    PRICE_LIST_KIND: ModelPriceList,
}
"""The kinds this module validates, by ``kind``."""

CALENDAR_PERIODS = ("day", "week", "month")


def budget_problems(obj: Any) -> list[Problem]:
    """Every problem of one AgentBudget, ClusterAgentBudget or ModelPriceList document,
    each with its field path and the fix; ``[]`` when the document is valid."""
    return validate_budget(obj)[1]


def validate_budget(document: Any) -> tuple[FinanceResource | None, list[Problem]]:
    """Parse and check one document; return the resource (if it parsed) and all problems."""
    known = ", ".join(FINANCE_KINDS)
    if not isinstance(document, Mapping):
        found = type(document).__name__ if document is not None else "an empty document"
        return None, [Problem("", f"expected one of {known}, found {found}")]
    problems: list[Problem] = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            Problem(
                "apiVersion", f"is {_shown(document.get('apiVersion'))}; set it to {API_VERSION}"
            )
        )
    kind = document.get("kind")
    model = FINANCE_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        hint = did_you_mean(str(kind), FINANCE_KINDS) if isinstance(kind, str) else ""
        problems.append(Problem("kind", f"is {_shown(kind)}; " + (hint or f"use one of {known}")))
    if problems or model is None:
        return None, problems
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        return None, list(_from_pydantic(exc, model))
    assert isinstance(parsed, AgentBudget | ClusterAgentBudget | ModelPriceList)
    if isinstance(parsed, ModelPriceList):
        return parsed, list(_check_price_list(parsed.spec))
    return parsed, list(_check_budget(parsed.spec))


def _check_budget(spec: AgentBudgetSpec) -> Iterator[Problem]:
    if spec.selector is not None:
        yield from _check_selector("spec.selector", spec.selector)
    if isinstance(spec, ClusterAgentBudgetSpec):
        yield from _check_scope(spec)
    if spec.period not in CALENDAR_PERIODS:
        for p in _check_rolling_period(spec.period):
            yield Problem("spec.period", p.message)
    try:
        zoneinfo.ZoneInfo(spec.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield Problem(
            "spec.timeZone",
            f"{spec.time_zone!r} is not an IANA time zone; use e.g. UTC, Europe/Berlin or "
            "America/New_York",
        )
    channels = spec.notifications.channels
    names = [c.name for c in channels]
    # MIN_INTERVAL: a budget has no interval of its own; every repostInterval is above it.
    yield from _check_channels(channels, names, MIN_INTERVAL)
    yield from _duplicates("spec.stages", [s.name for s in spec.stages], "stage")
    known = set(names)
    for i, stage in enumerate(spec.stages):
        yield from _duplicates(f"spec.stages[{i}].channels", list(stage.channels), "channel")
        for j, name in enumerate(stage.channels):
            if name not in known:
                yield _unknown_channel(f"spec.stages[{i}].channels[{j}]", name, known)


def _check_scope(spec: ClusterAgentBudgetSpec) -> Iterator[Problem]:
    if not spec.namespaces and spec.namespace_selector is None:
        yield Problem(
            "spec.namespaces",
            "is empty and spec.namespaceSelector is unset; set either (or both) to say "
            "which namespaces' agents the budget covers",
        )
    yield from _duplicates("spec.namespaces", list(spec.namespaces), "namespace")
    if spec.namespace_selector is not None:
        sel = spec.namespace_selector
        if not sel.match_labels and not sel.match_expressions:
            yield Problem(
                "spec.namespaceSelector",
                "is empty and would select every namespace; set matchLabels (e.g. team: "
                "support) or list spec.namespaces",
            )
        yield from _check_selector("spec.namespaceSelector", sel)


def _check_selector(path: str, sel: LabelSelector) -> Iterator[Problem]:
    for i, req in enumerate(sel.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        if req.operator in ("In", "NotIn") and not req.values:
            yield Problem(f"{p}.values", f"must not be empty for operator {req.operator}")
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            yield Problem(f"{p}.values", f"must be empty for operator {req.operator}")


def _check_price_list(spec: ModelPriceListSpec) -> Iterator[Problem]:
    yield from _duplicates_of("spec.prices", [p.model for p in spec.prices])
    if not spec.prices and not spec.include_defaults:
        yield Problem(
            "spec.includeDefaults",
            "is false and spec.prices is empty: no model would have a price; add prices or "
            "set includeDefaults to true",
        )


def _duplicates_of(path: str, models: Iterable[str]) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, model in enumerate(models):
        if model in seen:
            yield Problem(
                f"{path}[{i}].model",
                f"{model!r} is priced already at {path}[{seen[model]}]; keep one entry per model",
            )
        else:
            seen[model] = i
