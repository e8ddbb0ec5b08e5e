"""Checks of a valid budget or price list for what is accepted yet almost certainly not meant.

:func:`agentmedic.api.budget_validation.validate_budget` refuses what the API cannot accept;
:func:`lint_finance` looks at a resource that passed it, in the style of
:func:`agentmedic.api.lint.lint_policy`: a forecast stage on a rolling period (a rolling
window has no end to forecast), a stage that can only be reached after the budget has
stopped every agent, a response nobody is told about, a price of zero. Every finding is
a warning, with a stable code, the field path and the fix. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from agentmedic.api.budget import (
    AgentBudget,
    AgentBudgetSpec,
    BudgetStage,
    ClusterAgentBudget,
    CostSource,
    ModelPriceList,
    StageResponse,
)
from agentmedic.api.durations import format_duration, parse_duration
from agentmedic.api.lint import Finding, Severity

__all__ = ["IMPLAUSIBLE_PRICE_USD", "lint_finance"]

IMPLAUSIBLE_PRICE_USD = 1000.0
"""USD per million tokens above which a price is more likely a typo (per thousand tokens,
or cents) than a price: the dearest models listed in 2026 stay below it."""

_CALENDAR_LENGTH = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=28),
}
"""The shortest length of each calendar period."""


def lint_finance(resource: AgentBudget | ClusterAgentBudget | ModelPriceList) -> list[Finding]:
    """Every finding for a validated resource, in field order."""
    if isinstance(resource, ModelPriceList):
        return list(_price_list(resource))
    return list(_budget(resource.spec))


def _budget(spec: AgentBudgetSpec) -> Iterator[Finding]:
    rolling = spec.period not in _CALENDAR_LENGTH
    if rolling and "time_zone" in spec.model_fields_set and spec.time_zone != "UTC":
        yield _warn(
            "TimeZoneIgnored",
            "spec.timeZone",
            f"is {spec.time_zone}, but a rolling period ({spec.period}) has no calendar "
            "start for a time zone to move",
            "remove timeZone, or use period day, week or month",
        )
    if spec.cost_source is CostSource.REPORTED and "price_list" in spec.model_fields_set:
        yield _warn(
            "PriceListIgnored",
            "spec.priceList",
            f"names {spec.price_list!r}, but costSource is reported: spend comes from the "
            "agents' own cost counters and no price list is read",
            "set costSource: priceList, or remove priceList",
        )
    length = _period_length(spec.period)
    if length is not None and spec.forecast_window > length:
        yield _warn(
            "ForecastWindowLongerThanPeriod",
            "spec.forecastWindow",
            f"is {format_duration(spec.forecast_window)}, longer than the period "
            f"({spec.period}): the forecast projects spend of earlier periods",
            f"use at most {format_duration(length)}",
        )
    stops = [s for s in spec.stages if s.response is StageResponse.STOP and not s.on_forecast]
    first_stop = min(stops, key=lambda s: s.at_percent) if stops else None
    for i, stage in enumerate(spec.stages):
        yield from _stage(f"spec.stages[{i}]", stage, rolling, first_stop)


def _stage(
    p: str, stage: BudgetStage, rolling: bool, stop: BudgetStage | None
) -> Iterator[Finding]:
    if stage.on_forecast and rolling:
        yield _warn(
            "ForecastOnRollingPeriod",
            f"{p}.onForecast",
            "is true on a rolling period, which has no end to forecast: the stage is "
            "reached on spend alone",
            "remove onForecast, or use period day, week or month",
        )
    if stop is not None and stage is not stop and stage.at_percent > stop.at_percent:
        yield _warn(
            "StageAfterStop",
            f"{p}.atPercent",
            f"is {_pct(stage.at_percent)}, above the stop at {_pct(stop.at_percent)} "
            f"(stage {stop.name!r}): once every agent is stopped spend barely grows, so "
            "this stage is reached at best by the last requests in flight",
            f"lower it below {_pct(stop.at_percent)}, or remove the stage",
        )
    if not stage.channels:
        if stage.response is StageResponse.NOTIFY:
            yield _warn(
                "StageWithoutChannels",
                f"{p}.channels",
                "is empty: the notify stage only shows in status (STAGE), nobody is told",
                "name a channel of spec.notifications.channels",
            )
        else:
            done = "stopped" if stage.response is StageResponse.STOP else "downgraded"
            yield _warn(
                "StageWithoutChannels",
                f"{p}.channels",
                f"is empty: agents are {done} without telling anyone",
                "name a channel of spec.notifications.channels, e.g. finance and on-call",
            )


def _price_list(resource: ModelPriceList) -> Iterator[Finding]:
    for i, entry in enumerate(resource.spec.prices):
        p = f"spec.prices[{i}]"
        if entry.input == 0 and entry.output == 0:
            yield _warn(
                "ZeroPrice",
                p,
                f"prices {entry.model} at 0 for input and output: its tokens cost nothing and "
                "no budget with costSource priceList ever counts them",
                "set the provider's prices (USD per million tokens), or remove the entry to "
                "use the built-in table",
            )
        else:
            for side, price in (("input", entry.input), ("output", entry.output)):
                if price == 0:
                    yield _warn(
                        "ZeroPrice",
                        f"{p}.{side}",
                        f"is 0: {entry.model}'s {side} tokens cost nothing",
                        "set the provider's price in USD per million tokens",
                    )
        for field, value in (
            ("input", entry.input),
            ("output", entry.output),
            ("cachedInput", entry.cached_input),
        ):
            if value is not None and value > IMPLAUSIBLE_PRICE_USD:
                yield _warn(
                    "PriceImplausible",
                    f"{p}.{field}",
                    f"is {value:g} USD per million tokens, above {IMPLAUSIBLE_PRICE_USD:g}: "
                    "perhaps a price per thousand tokens, or in cents",
                    "write the price in US dollars per million tokens",
                )
        if entry.cached_input is not None and entry.cached_input > entry.input:
            yield _warn(
                "CachedInputAboveInput",
                f"{p}.cachedInput",
                f"is {entry.cached_input:g}, above input ({entry.input:g}): cached tokens "
                "would cost more than uncached ones",
                "check the provider's price of cached input; it is a discount",
            )


def _period_length(period: str) -> timedelta | None:
    if period in _CALENDAR_LENGTH:
        return _CALENDAR_LENGTH[period]
    try:
        return parse_duration(period)
    except ValueError:
        return None


def _pct(value: float) -> str:
    return f"{value:g}%"


def _warn(code: str, path: str, message: str, fix: str) -> Finding:
    return Finding(code, Severity.WARNING, path, message, fix)
