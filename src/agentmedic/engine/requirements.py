"""Which series a policy needs: what the metrics layer fetches before evaluate.

:func:`requirements` answers for one cycle, :func:`requirements_over` for every moment of
a backtest's time grid at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.conditions import executions_key
from agentmedic.engine.periods import budget_period, spend_window
from agentmedic.engine.series import SeriesKey
from agentmedic.engine.verify import verify_keys

__all__ = [
    "GridNeeds",
    "burn_key",
    "probation_only",
    "requirements",
    "requirements_over",
    "spend_key",
]


def spend_key(spec: AgentPolicySpec, now: datetime) -> SeriesKey | None:
    """``cost_usd`` over the elapsed part of the budget period (None without a budget)."""
    if spec.budget is None:
        return None
    return SeriesKey("cost_usd", None, spend_window(spec.budget, now), spec.agent_label)


def burn_key(spec: AgentPolicySpec) -> SeriesKey | None:
    """``cost_usd`` over budget.forecastWindow: the recent burn rate (None without a budget)."""
    if spec.budget is None:
        return None
    return SeriesKey("cost_usd", None, spec.budget.forecast_window, spec.agent_label)


def requirements(spec: AgentPolicySpec, now: datetime) -> set[SeriesKey]:
    """Every series :func:`~agentmedic.engine.evaluate` will look up for this policy at ``now``.

    Each condition's (metric or query, window); ``executions`` over the window of each
    condition with minSamples; and with a budget, ``cost_usd`` over the elapsed period
    (which changes every cycle for calendar periods) and over forecastWindow; with
    spec.verify, the probation signals over verify.window and verify.baselineWindow.
    """
    keys: set[SeriesKey] = set()
    label = spec.agent_label
    for rule in spec.rules:
        for c in (*rule.all_of, *rule.any_of):
            keys.add(SeriesKey(c.metric, c.query, c.window, label))
            if c.min_samples:
                keys.add(executions_key(c.window, label))
    spent, burn = spend_key(spec, now), burn_key(spec)
    if spent is not None and burn is not None:
        keys.update((spent, burn))
    keys |= verify_keys(spec)
    return keys


def probation_only(spec: AgentPolicySpec, now: datetime) -> set[SeriesKey]:
    """The keys only probation reads (spec.verify), no rule or budget. An undefined value
    (NaN: a ratio over an empty window) of one of them is no data for the verdict — too
    little traffic, Inconclusive — and no reason to hold the agent's rules and budget."""
    keys = verify_keys(spec)
    if not keys:
        return keys
    spec_without = spec.model_copy(update={"verify": None})
    return keys - requirements(spec_without, now)


@dataclass(frozen=True)
class GridNeeds:
    """What a policy needs at every moment of a time grid (a backtest's), in one answer.

    The needs split in two: keys that are the same at every moment (:attr:`fixed`: each
    condition's series, ``executions`` for minSamples, the budget's burn window, a rolling
    budget's spend), and the period-to-date spend of a calendar budget, whose window grows
    with every moment (:meth:`spend_key`), within the periods :attr:`period_starts` to
    :attr:`period_ends`.
    """

    fixed: tuple[SeriesKey, ...]
    """The keys needed at every moment (but a calendar budget's spend), sorted by name."""
    calendar_spend: bool
    """The budget's spend so far changes window every moment (a calendar period)."""
    spend_keys: tuple[SeriesKey, ...] = ()
    """Calendar spend: the spend key at each moment; a rolling budget: its one spend key
    (also in :attr:`fixed`); no budget: empty."""
    period_starts: tuple[int, ...] = ()
    """Calendar spend: the index of the first moment of each budget period the grid touches."""
    period_ends: tuple[int, ...] = ()
    """Calendar spend: the index of the last moment of each of those periods."""

    def spend_key(self, i: int) -> SeriesKey | None:
        """The budget's spend key at moment ``i`` (None without a budget)."""
        if self.calendar_spend:
            return self.spend_keys[i]
        return self.spend_keys[0] if self.spend_keys else None


def requirements_over(spec: AgentPolicySpec, times: Sequence[datetime]) -> GridNeeds:
    """:func:`requirements` at every moment of ``times`` (ascending), split into the keys
    that do not change and a calendar budget's period-to-date spend (see :class:`GridNeeds`)."""
    budget = spec.budget
    calendar = budget is not None and bool(times) and not budget_period(budget, times[0]).rolling
    if not calendar:
        if not times:
            return GridNeeds(fixed=(), calendar_spend=False)
        rolling = spend_key(spec, times[0])
        return GridNeeds(
            fixed=tuple(sorted(requirements(spec, times[0]), key=str)),
            calendar_spend=False,
            spend_keys=() if rolling is None else (rolling,),
        )
    assert budget is not None
    fixed: set[SeriesKey] = set()
    spend: list[SeriesKey] = []
    starts: list[int] = []
    ends: list[int] = []
    current: datetime | None = None
    for i, now in enumerate(times):
        needed = requirements(spec, now)
        skey = spend_key(spec, now)
        assert skey is not None
        needed.discard(skey)
        spend.append(skey)
        fixed |= needed
        period = budget_period(budget, now).start
        if period != current:
            if starts:
                ends.append(i - 1)
            starts.append(i)
            current = period
    ends.append(len(times) - 1)
    return GridNeeds(
        fixed=tuple(sorted(fixed, key=str)),
        calendar_spend=True,
        spend_keys=tuple(spend),
        period_starts=tuple(starts),
        period_ends=tuple(ends),
    )
