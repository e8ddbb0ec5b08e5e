"""Budget arithmetic: spend so far, the forecast, the crossing time and the stage verdicts.

Two stages, ``budget.soft`` and ``budget.hard``, behave like rules without ``for``:
a stage fires the first cycle its condition holds and, in a calendar period, stays fired
until the period ends (spend never falls within a period); with a rolling period it
ends when the rolling spend falls back below the stage's threshold.

- hard: spend >= limitUSD;
- soft: spend >= atPercent% of limitUSD, or (with ``forecast``) the forecast >= limitUSD.

The forecast is spend so far plus the burn rate of the last forecastWindow projected to
the period's end; for a rolling period it is the burn rate over a whole period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agentmedic.api.types import Budget, Op
from agentmedic.api.units import format_timestamp, format_usd
from agentmedic.engine.conditions import BREACH, CLEAR, UNKNOWN, ConditionEvidence, Evidence
from agentmedic.engine.periods import Period

__all__ = ["HARD", "SOFT", "StageInput", "forecast", "stage_evidence", "stage_verdict"]

SOFT = "budget.soft"
HARD = "budget.hard"


@dataclass(frozen=True, slots=True)
class StageInput:
    """Spend figures one stage verdict is computed from (one agent, or the whole policy)."""

    spent: float | None
    """cost_usd over the elapsed period; None when there is no data."""
    burn: float | None
    """cost_usd over forecastWindow."""
    forecast: float | None
    """Projected spend at the period's end."""
    spend_window: timedelta
    """The window spend was queried over."""
    crosses_at: datetime | None = None
    """When spend would reach limitUSD at the recent burn rate, if within the period."""

    def describe_crossing(self, limit_usd: float) -> str:
        """``; projected to reach $50.00 at 2025-03-03T18:00:00Z`` or nothing."""
        if self.crosses_at is None:
            return ""
        when = format_timestamp(self.crosses_at)
        return f"; projected to reach {format_usd(limit_usd)} at {when}"


def forecast(
    budget: Budget, period: Period, now: datetime, spent: float | None, burn: float | None
) -> tuple[float | None, datetime | None]:
    """(forecast at the period's end, when the limit would be crossed within the period)."""
    if spent is None or burn is None:
        return None, None
    window = budget.forecast_window.total_seconds()
    rate = burn / window if window > 0 else 0.0
    if period.rolling:
        projected = rate * period.length.total_seconds()
    else:
        projected = spent + rate * max(0.0, (period.end - now).total_seconds())
    crosses: datetime | None = None
    if spent < budget.limit_usd and rate > 0:
        at = now + timedelta(seconds=(budget.limit_usd - spent) / rate)
        end = now + period.length if period.rolling else period.end
        if at <= end:
            crosses = at
    return projected, crosses


def stage_verdict(budget: Budget, stage: str, figures: StageInput) -> int:
    """BREACH, CLEAR or UNKNOWN (no spend data) for one stage."""
    if figures.spent is None:
        return UNKNOWN
    if stage == HARD:
        return BREACH if figures.spent >= budget.limit_usd else CLEAR
    soft = budget.soft
    if soft is None:
        return CLEAR
    if figures.spent >= budget.limit_usd * soft.at_percent / 100:
        return BREACH
    if soft.forecast and figures.forecast is not None and figures.forecast >= budget.limit_usd:
        return BREACH
    return CLEAR


def stage_evidence(
    budget: Budget, stage: str, figures: StageInput, held_since: datetime | None, at: datetime
) -> Evidence:
    """The stage's conditions as evidence: spend against the threshold (and the forecast
    against the limit), so ``Evidence.holds`` re-derives the stage verdict."""
    spent = ConditionEvidence(
        metric="cost_usd",
        query=None,
        window=figures.spend_window,
        op=Op.GE,
        threshold=budget.limit_usd,
        observed=figures.spent,
    )
    if stage == HARD:
        return Evidence("all", (spent,), held_since, timedelta(0), at)
    soft = budget.soft
    percent = soft.at_percent if soft is not None else 100.0
    conditions = [
        ConditionEvidence(
            metric="cost_usd",
            query=None,
            window=figures.spend_window,
            op=Op.GE,
            threshold=budget.limit_usd * percent / 100,
            observed=figures.spent,
        )
    ]
    if soft is not None and soft.forecast:
        conditions.append(
            ConditionEvidence(
                metric="cost_usd_forecast",
                query=None,
                window=budget.forecast_window,
                op=Op.GE,
                threshold=budget.limit_usd,
                observed=figures.forecast,
            )
        )
    return Evidence("any", tuple(conditions), held_since, timedelta(0), at)
