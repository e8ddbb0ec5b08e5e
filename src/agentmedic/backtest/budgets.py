"""Finance's budgets replayed over history: when each stage would have acted (pure).

A budget (``AgentBudget`` or ``ClusterAgentBudget``) is replayed on the backtest's grid
(``start + i * step``) from the spend of every step of every agent in its scope
(:mod:`agentmedic.backtest.budget_history` fetches it, exact at the step boundaries):

- **spend so far**: in a calendar period (day, ISO week or month in the budget's
  ``timeZone``, :func:`agentmedic.engine.calendar.calendar_period`), the sum of the step
  spends since the period's start, each step counted in the period holding its end (the
  chargeback's rule); the history is read from the start of the first period the range
  touches, so a range that starts mid-month still knows the month's spend. A rolling
  period sums the steps of the last ``period``.
- **forecast**: the engine's arithmetic (:class:`agentmedic.engine.budget.Forecaster`):
  spend so far plus the burn of the last ``forecastWindow`` (whole steps) projected to the
  period's end; for a rolling period, that burn over a whole period.
- **stages**: a stage is reached the first moment spend so far reaches ``atPercent`` of
  ``limitUSD`` or, with ``onForecast``, the forecast does. In a calendar period a stage is
  reached once (spend never falls within a period); in a rolling one each time it rises
  back above its threshold. ``appliesTo: perAgent`` replays each agent on its own,
  ``total`` the sum of the agents in scope.

A stage reached before the range's start (from the period's earlier spend) is reported
at its real moment, marked ``beforeRange``. What a stage's response would have done to
the agents (a downgrade uses the tiers of the AgentPolicy that selects each agent) is the
operator's business: the backtest says *when* each stage would have acted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Literal

from agentmedic.api.budget import (
    AgentBudgetSpec,
    BudgetAppliesTo,
    BudgetStage,
    ClusterAgentBudgetSpec,
)
from agentmedic.api.durations import parse_duration
from agentmedic.backtest.columns import Grid
from agentmedic.engine.budget import Forecaster
from agentmedic.engine.calendar import CALENDAR_PERIODS, calendar_period
from agentmedic.engine.series import AgentId

__all__ = [
    "TOTAL",
    "BudgetDoc",
    "BudgetReplay",
    "Crossing",
    "PeriodSummary",
    "earliest_needed",
    "replay_budget",
]

TOTAL = "total"
"""The name of the line a ``total`` budget is replayed on."""

Trigger = Literal["spend", "forecast"]


@dataclass(frozen=True)
class BudgetDoc:
    """One budget document as read from a file."""

    kind: str
    """AgentBudget or ClusterAgentBudget."""
    name: str
    namespace: str | None
    """The AgentBudget's own namespace (its agents'); None for a ClusterAgentBudget."""
    spec: AgentBudgetSpec
    where: str
    """``FILE`` or ``FILE#N``, for messages."""
    selected: tuple[str, ...] | None = None
    """The namespaces a ClusterAgentBudget's namespaceSelector chose in the cluster; None
    when the cluster was not read."""

    @property
    def label(self) -> str:
        if self.namespace is None:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces whose agents count: a ClusterAgentBudget's listed ones and those
        its namespaceSelector chose (either matches)."""
        if isinstance(self.spec, ClusterAgentBudgetSpec):
            return tuple(sorted({*self.spec.namespaces, *(self.selected or ())}))
        return (self.namespace,) if self.namespace else ()

    @property
    def calendar(self) -> bool:
        return self.spec.period in CALENDAR_PERIODS


@dataclass(frozen=True)
class Crossing:
    """One stage reached: when, by whom, on what figure."""

    stage: BudgetStage
    at: datetime
    agent: AgentId | None
    """The agent (perAgent) or None (the selection's total)."""
    trigger: Trigger
    spend_usd: float
    forecast_usd: float | None
    threshold_usd: float
    period_start: datetime
    before_range: bool = False
    limit_at: datetime | None = None
    """When the burn rate would have reached limitUSD, if within the period."""


@dataclass(frozen=True)
class PeriodSummary:
    """One calendar period the range touches, for one subject (or the total)."""

    start: datetime
    end: datetime
    agent: AgentId | None
    spend_usd: float
    """Spend at the last moment of the period within the range."""
    complete: bool
    """The range covers the period's end: the figure is final."""
    stages: tuple[str, ...]


@dataclass
class BudgetReplay:
    """What one budget would have done over the range."""

    doc: BudgetDoc
    times: list[datetime]
    """The replay's grid (the backtest's)."""
    lines: dict[AgentId, list[float]]
    """Spend so far per subject at each moment (the total under ``(total)``)."""
    crossings: list[Crossing]
    periods: list[PeriodSummary]
    agents: list[AgentId]
    """The agents in scope with history."""
    warnings: list[str] = field(default_factory=list)
    prices: str | None = None
    """Where token prices came from (costSource priceList)."""


def _rolling(doc: BudgetDoc) -> timedelta | None:
    return None if doc.calendar else parse_duration(doc.spec.period)


def earliest_needed(doc: BudgetDoc, start: datetime) -> datetime:
    """How far back history must reach for the replay to start at ``start``: the first
    period's start (calendar) or one period back (rolling), and one forecast window."""
    rolling = _rolling(doc)
    if rolling is None:
        first, _ = calendar_period(doc.spec.period, doc.spec.time_zone, start)
    else:
        first = start - rolling
    return min(first, start - doc.spec.forecast_window)


def _steps_in(window: timedelta, step: timedelta) -> int:
    """Whole steps in ``window`` (at least one)."""
    return max(1, int(window / step))


@dataclass
class _Subject:
    """One line being replayed: an agent (perAgent) or the total."""

    agent: AgentId | None
    steps: Sequence[float]


def _period_bounds(doc: BudgetDoc, times: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """The calendar period of every moment (recomputed only at a period's end)."""
    out: list[tuple[datetime, datetime]] = []
    bounds: tuple[datetime, datetime] | None = None
    for t in times:
        if bounds is None or not bounds[0] <= t < bounds[1]:
            bounds = calendar_period(doc.spec.period, doc.spec.time_zone, t)
        out.append(bounds)
    return out


def _spent(
    doc: BudgetDoc,
    subject: _Subject,
    grid: Grid,
    bounds: Sequence[tuple[datetime, datetime]],
) -> tuple[list[float], list[float]]:
    """(spend so far, burn over the forecast window) at every moment."""
    prefix = [0.0, *accumulate(subject.steps)]
    burn_n = _steps_in(doc.spec.forecast_window, grid.step)
    burn = [prefix[j + 1] - prefix[max(0, j + 1 - burn_n)] for j in range(grid.size)]
    rolling = _rolling(doc)
    if rolling is not None:
        n = _steps_in(rolling, grid.step)
        return [prefix[j + 1] - prefix[max(0, j + 1 - n)] for j in range(grid.size)], burn
    spent: list[float] = []
    total = 0.0
    for j, step_spend in enumerate(subject.steps):
        if j > 0 and bounds[j][0] != bounds[j - 1][0]:
            total = 0.0
        total += step_spend
        spent.append(total)
    return spent, burn


def _per_second(doc: BudgetDoc, grid: Grid) -> float:
    """1 / the forecast window, rounded to whole steps: turns its burn into a rate."""
    return 1 / (_steps_in(doc.spec.forecast_window, grid.step) * grid.step.total_seconds())


def _replay_subject(
    doc: BudgetDoc,
    subject: _Subject,
    grid: Grid,
    times: Sequence[datetime],
    bounds: Sequence[tuple[datetime, datetime]],
    first: int,
) -> tuple[list[float], list[Crossing]]:
    """Spend so far at every moment, and the stages reached from index 0 on (those before
    ``first``, the replay's start, in the current period at ``first`` only)."""
    spent, burn = _spent(doc, subject, grid, bounds)
    crossings: list[Crossing] = []
    reached: set[tuple[datetime, str]] = set()
    above: set[str] = set()
    limit = doc.spec.limit_usd
    rolling = _rolling(doc)
    above_at_first: set[str] = set()
    stages = doc.spec.stages
    any_forecast = any(s.on_forecast for s in stages)
    lowest = min(limit * s.at_percent / 100 for s in stages)
    per_second = _per_second(doc, grid)
    # the engine's projection: to the period's end, or over a whole rolling period
    horizon = 0.0 if rolling is None else rolling.total_seconds()
    counts = 1.0 if rolling is None else 0.0
    for j, now in enumerate(times):
        if j == first:
            above_at_first = set(above)
        if rolling is None:
            start, end = bounds[j]
            if all((start, s.name) in reached for s in stages):
                continue  # every stage reached this period: nothing left to find
        else:
            start, end = now - rolling, None
        if not any_forecast and spent[j] < lowest and not above:
            continue  # below every threshold, and no forecast stage: nothing crosses
        if end is not None:
            horizon = max(0.0, (end - now).total_seconds())
        forecaster = Forecaster(now, limit, per_second, horizon, counts)
        projected, limit_at = forecaster.at(spent[j], burn[j])
        for stage in stages:
            threshold = limit * stage.at_percent / 100
            trigger: Trigger | None = None
            if spent[j] >= threshold:
                trigger = "spend"
            elif stage.on_forecast and projected is not None and projected >= threshold:
                trigger = "forecast"
            if not doc.calendar:
                if trigger is None:
                    above.discard(stage.name)
                    continue
                if stage.name in above:
                    continue
                above.add(stage.name)
            elif trigger is None or (start, stage.name) in reached:
                continue
            reached.add((start, stage.name))
            if j < first and doc.calendar and bounds[first][0] != start:
                continue  # a period over before the range
            crossings.append(
                Crossing(
                    stage=stage,
                    at=now,
                    agent=subject.agent,
                    trigger=trigger,
                    spend_usd=spent[j],
                    forecast_usd=projected,
                    threshold_usd=threshold,
                    period_start=start,
                    before_range=j < first,
                    limit_at=limit_at,
                )
            )
    if not doc.calendar:
        crossings = _ongoing_before(crossings, above_at_first)
    return spent, crossings


def _ongoing_before(crossings: list[Crossing], still_above: set[str]) -> list[Crossing]:
    """A rolling stage's crossings before the range: only the last one of each stage still
    above its threshold at the range's start (an episode in progress) is kept."""
    latest: dict[str, Crossing] = {}
    for c in crossings:
        if c.before_range and c.stage.name in still_above:
            latest[c.stage.name] = c
    kept = set(map(id, latest.values()))
    return [c for c in crossings if not c.before_range or id(c) in kept]


def _summaries(
    doc: BudgetDoc,
    grid: Grid,
    subject: _Subject,
    spent: Sequence[float],
    bounds: Sequence[tuple[datetime, datetime]],
    crossings: Sequence[Crossing],
    first: int,
) -> list[PeriodSummary]:
    if not doc.calendar:
        return []
    last_of: dict[datetime, int] = {}
    for j in range(first, len(spent)):
        last_of[bounds[j][0]] = j
    out = []
    for start, j in last_of.items():
        end = bounds[j][1]
        stages = tuple(c.stage.name for c in crossings if c.period_start == start)
        complete = j + 1 < len(spent) or grid.at(j) + grid.step >= end
        out.append(PeriodSummary(start, end, subject.agent, spent[j], complete, stages))
    return out


def replay_budget(
    doc: BudgetDoc,
    grid: Grid,
    steps: Mapping[AgentId, Sequence[float]],
    first: int,
    *,
    max_lines: int = 8,
) -> BudgetReplay:
    """Replay ``doc`` over ``grid`` (which starts ``first`` steps before the replay's
    start, see :func:`earliest_needed`) from each agent's spend per step (index ``j``: the
    spend in ``(t[j-1], t[j]]``; NaN-free)."""
    agents = sorted(steps)
    if doc.spec.applies_to == BudgetAppliesTo.PER_AGENT:
        subjects = [_Subject(a, steps[a]) for a in agents]
    else:
        summed = [math.fsum(col) for col in zip(*(steps[a] for a in agents), strict=True)]
        subjects = [_Subject(None, summed or [0.0] * grid.size)]
    times = grid.times()
    bounds = _period_bounds(doc, times) if doc.calendar else []
    lines: dict[AgentId, list[float]] = {}
    crossings: list[Crossing] = []
    periods: list[PeriodSummary] = []
    for subject in subjects:
        spent, found = _replay_subject(doc, subject, grid, times, bounds, first)
        line = AgentId("", TOTAL) if subject.agent is None else subject.agent
        lines[line] = spent[first:]
        crossings += found
        periods += _summaries(doc, grid, subject, spent, bounds, found, first)
    crossings.sort(key=lambda c: (c.at, c.stage.at_percent, c.agent or AgentId("", "")))
    if len(lines) > max_lines:
        keep = sorted(lines, key=lambda a: -max(lines[a], default=0.0))[:max_lines]
        lines = {a: lines[a] for a in keep}
    return BudgetReplay(
        doc=doc,
        times=times[first:],
        lines=lines,
        crossings=crossings,
        periods=periods,
        agents=agents,
    )
