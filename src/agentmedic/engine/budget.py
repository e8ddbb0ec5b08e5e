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

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from agentmedic.api.types import Budget, Op
from agentmedic.api.units import format_timestamp, format_usd
from agentmedic.engine.conditions import BREACH, CLEAR, UNKNOWN, ConditionEvidence, Evidence
from agentmedic.engine.periods import Period

__all__ = [
    "HARD",
    "SOFT",
    "Forecaster",
    "StageInput",
    "StageLimits",
    "forecast",
    "stage_evidence",
    "stage_verdict",
]

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


@dataclass(frozen=True, slots=True)
class Forecaster:
    """The forecast arithmetic for one budget, period and moment, set up once per cycle and
    applied to each agent's (or the fleet's) spend and burn."""

    now: datetime
    limit: float
    per_second: float
    """1 / forecastWindow in seconds: turns the burn over the window into a rate."""
    horizon: float
    """Seconds the rate is projected over: to the period's end, or a whole rolling period."""
    spent_counts: float
    """1 for a calendar period (spend so far stays), 0 for a rolling one."""

    @classmethod
    def of(cls, budget: Budget, period: Period, now: datetime) -> Forecaster:
        window = budget.forecast_window.total_seconds()
        if period.rolling:
            horizon, spent_counts = period.length.total_seconds(), 0.0
        else:
            horizon, spent_counts = max(0.0, (period.end - now).total_seconds()), 1.0
        return cls(now, budget.limit_usd, 1 / window if window > 0 else 0.0, horizon, spent_counts)

    def at(self, spent: float | None, burn: float | None) -> tuple[float | None, datetime | None]:
        """(forecast at the period's end, when the limit would be crossed within the period)."""
        if spent is None or burn is None:
            return None, None
        rate = burn * self.per_second
        projected = spent * self.spent_counts + rate * self.horizon
        if spent < self.limit and rate > 0:
            seconds = (self.limit - spent) / rate
            if seconds <= self.horizon:
                return projected, self.now + timedelta(seconds=seconds)
        return projected, None


def forecast(
    budget: Budget, period: Period, now: datetime, spent: float | None, burn: float | None
) -> tuple[float | None, datetime | None]:
    """(forecast at the period's end, when the limit would be crossed within the period)."""
    return Forecaster.of(budget, period, now).at(spent, burn)


@dataclass(frozen=True, slots=True)
class StageLimits:
    """A budget's stage thresholds, set up once per cycle: the one place stage verdicts
    are computed."""

    limit: float
    soft_at: float
    """atPercent of limitUSD (infinite without a soft stage)."""
    soft_forecast: bool
    """The soft stage also fires on the forecast."""
    has_soft: bool
    has_hard: bool

    @classmethod
    def of(cls, budget: Budget) -> StageLimits:
        soft = budget.soft
        limit = budget.limit_usd
        return cls(
            limit=limit,
            soft_at=limit * soft.at_percent / 100 if soft is not None else math.inf,
            soft_forecast=soft is not None and soft.forecast,
            has_soft=soft is not None,
            has_hard=budget.hard is not None,
        )

    def verdict(
        self,
        stage: str,
        spent: float | None,
        projected: float | None,
        hold: float = 1.0,
        forecast_hold: float = 1.0,
    ) -> int:
        """BREACH, CLEAR or UNKNOWN (no spend data) for one stage; ``hold`` (and
        ``forecast_hold`` for the forecast) scale the thresholds that keep a firing stage
        firing (see ROLLING_HYSTERESIS)."""
        if spent is None:
            return UNKNOWN
        if stage == HARD:
            return BREACH if spent >= self.limit * hold else CLEAR
        if not self.has_soft:
            return CLEAR
        if spent >= self.soft_at * hold:
            return BREACH
        if self.soft_forecast and projected is not None and projected >= self.limit * forecast_hold:
            return BREACH
        return CLEAR


def stage_verdict(budget: Budget, stage: str, figures: StageInput) -> int:
    """BREACH, CLEAR or UNKNOWN (no spend data) for one stage."""
    return StageLimits.of(budget).verdict(stage, figures.spent, figures.forecast)


def stage_evidence(
    budget: Budget, stage: str, figures: StageInput, held_since: datetime | None, at: datetime
) -> Evidence:
    """The stage's conditions as evidence: spend against the threshold (and the forecast
    against the limit), so ``Evidence.holds`` re-derives the stage verdict."""

    def spent_at_least(threshold: float) -> ConditionEvidence:
        return ConditionEvidence(
            metric="cost_usd",
            query=None,
            window=figures.spend_window,
            op=Op.GE,
            threshold=threshold,
            observed=figures.spent,
        )

    if stage == HARD:
        return Evidence("all", (spent_at_least(budget.limit_usd),), held_since, timedelta(0), at)
    soft = budget.soft
    percent = soft.at_percent if soft is not None else 100.0
    conditions = [spent_at_least(budget.limit_usd * percent / 100)]
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
