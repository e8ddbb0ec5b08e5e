"""Fetch the history a policy needs, batched like the live loop, into per-step columns.

What is fetched, and how
========================

The engine says what it needs at every moment of a backtest's grid (``start + i * step``)
in one answer (:func:`agentmedic.engine.requirements.requirements_over`), split in two:

- **Keys that do not depend on the moment** (every condition's metric and window, the
  ``executions`` behind ``minSamples``, the budget's burn window, a rolling budget's
  window): ONE ``query_range`` per distinct key for all agents, grouped by agent and
  namespace exactly as :func:`agentmedic.metrics.fetch_range` groups the live instant
  queries, split into consecutive time chunks of ``max_points`` points (by default
  :data:`CHUNK_POINTS`, a day at one minute; never more than 11,000, Prometheus'
  per-series limit for a range query).
- **Period-to-date spend of a calendar budget** (``cost_usd`` over the elapsed part of
  the day, week or month: a different window at every step, so no single range query
  can ask for it). It is assembled from three kinds of query:

  1. ``cost_usd`` over one ``step``, as one range query over the grid: the spend of each
     step, ``increase(...[step])`` at ``t`` covering ``(t - step, t]``;
  2. at the first grid point of every period the range touches, the exact live query
     (``cost_usd`` over the elapsed part of the period at that moment): one instant
     query per period (eight for a week of daily periods);
  3. spend at a later step of the period = that exact value + the spend of each step
     since, summed client-side.

  Approximation: Prometheus' ``increase`` extrapolates at window edges, so the sum of
  per-step increases equals the increase over the whole elapsed window exactly when
  samples fall on the step boundaries, and approximates it otherwise (the sum of the
  parts extrapolates each part). It needs at least two samples per step: the step must
  be at least twice the scrape interval (the default 1m suits scrape intervals up to
  30s). To bound the error, the accumulated value at the last grid point of every
  period is compared with the exact live query there; the largest relative difference
  is reported (:attr:`History.spend_check`) and a warning is raised above 2%.

Agents come from ``--agents`` or from the history itself
(:func:`~agentmedic.backtest.discovery.discover_agents`). The fetched values land in a
:class:`~agentmedic.backtest.columns.History`, handed to the replay as they complete
through a :class:`~agentmedic.backtest.columns.HistoryFeed`.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from agentmedic.api.types import AgentPolicySpec
from agentmedic.backtest.columns import (
    BacktestDataError,
    Grid,
    History,
    HistoryFeed,
    NoHistoryError,
    ReplayAbortedError,
    SpendCheck,
)
from agentmedic.backtest.discovery import MODEL_LABEL, discover_agents
from agentmedic.engine.requirements import GridNeeds, requirements_over
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    Catalog,
    FetchStats,
    MetricsBackend,
    MetricsError,
    QueryResult,
    RangeResult,
    RangeSeries,
    fetch_range,
    fetch_samples,
)

__all__ = [
    "CHUNK_POINTS",
    "MAX_POINTS",
    "MODEL_LABEL",
    "BacktestDataError",
    "Grid",
    "History",
    "HistoryFeed",
    "NoHistoryError",
    "OnQuery",
    "ReplayAbortedError",
    "SpendCheck",
    "discover_agents",
    "fetch_history",
]

MAX_POINTS = 11_000
"""Prometheus refuses range queries of more than 11,000 points per series."""
CHUNK_POINTS = 1_440
"""Points per range query by default (a day at a one-minute step): well under
:data:`MAX_POINTS`, it keeps each query's evaluation time far from the query timeout on a
large fleet, lets the answers be decoded while the backend evaluates the next ones, and
moves the progress bar. The queries add up to the same work."""
SPEND_WARN = 0.02
"""Accumulated spend further than this from the exact query triggers a warning."""
MAX_RANGE_KEYS = 200
"""More distinct fixed keys than this is not a policy but a mistake; refuse to send them."""

OnQuery = Callable[[int, int, str], None]
"""Progress callback: ``(queries done, queries planned, what just finished)``."""

_NAN = math.nan
_T = TypeVar("_T")


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """Which range queries and which spend reconstruction a backtest needs."""

    needs: GridNeeds
    """What the policy needs over the grid, as the engine says."""
    range_keys: list[SeriesKey]
    calendar_spend: bool
    """The budget's period-to-date spend changes window every step (calendar period)."""
    increment_key: SeriesKey | None
    """``cost_usd`` over one step (calendar spend only)."""
    period_starts: Sequence[int]
    """Grid index of the first moment in each budget period the range touches."""
    period_ends: Sequence[int]
    """Grid index of the last moment in each of those periods."""


def plan(spec: AgentPolicySpec, grid: Grid) -> Plan:
    """Work out the queries: fixed keys once each, calendar spend by accumulation."""
    needs = requirements_over(spec, grid.times())
    if len(needs.fixed) > MAX_RANGE_KEYS:
        raise ValueError(
            f"the policy needs {len(needs.fixed)} distinct series over the range; at most "
            f"{MAX_RANGE_KEYS} are fetched (check raw queries and windows)"
        )
    calendar = needs.calendar_spend
    return Plan(
        needs=needs,
        range_keys=list(needs.fixed),
        calendar_spend=calendar,
        increment_key=(
            SeriesKey("cost_usd", None, grid.step, spec.agent_label) if calendar else None
        ),
        period_starts=needs.period_starts,
        period_ends=needs.period_ends,
    )


# --------------------------------------------------------------------------- fetching


async def fetch_history(
    backend: MetricsBackend,
    spec: AgentPolicySpec,
    grid: Grid,
    agents: Sequence[AgentId],
    models: Mapping[AgentId, str | None] | None = None,
    *,
    catalog: Catalog = DEFAULT_CATALOG,
    namespace_label: str | None = "namespace",
    max_points: int = CHUNK_POINTS,
    max_concurrency: int = 4,
    on_query: OnQuery | None = None,
    feed: HistoryFeed | None = None,
) -> History:
    """Fetch everything ``spec`` needs for ``agents`` over ``grid`` (see the module doc).

    With ``feed``, each run of leading moments is handed to it as soon as it is complete
    (the queries go out in time order, a chunk's series together).

    Raises :class:`BacktestDataError` when the backend is unavailable or refuses a query
    (naming the series and the query).
    """
    if not 1 <= max_points <= MAX_POINTS:
        raise ValueError(f"max_points must be between 1 and {MAX_POINTS}, got {max_points}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    started = time.perf_counter()
    fetch = _Fetch(backend, spec, grid, agents, models, catalog, namespace_label, on_query, feed)
    await fetch.run(grid.chunks(max_points), max_concurrency)
    fetch.history.fetch_seconds = time.perf_counter() - started
    return fetch.history


class _Fetch:
    """The queries of one :func:`fetch_history` and the history they fill."""

    def __init__(
        self,
        backend: MetricsBackend,
        spec: AgentPolicySpec,
        grid: Grid,
        agents: Sequence[AgentId],
        models: Mapping[AgentId, str | None] | None,
        catalog: Catalog,
        namespace_label: str | None,
        on_query: OnQuery | None,
        feed: HistoryFeed | None = None,
    ) -> None:
        self.backend = backend
        self.grid = grid
        self.agents = list(agents)
        self.agent_set = frozenset(agents)
        self.catalog = catalog
        self.namespace_label = namespace_label
        self.on_query = on_query
        self.feed = feed
        self.plan = plan(spec, grid)
        self.range_keys = list(self.plan.range_keys)
        increment = self.plan.increment_key
        if increment is not None and increment not in self.range_keys:
            self.range_keys.append(increment)
        self.columns: dict[SeriesKey, dict[AgentId, array[float]]] = {
            key: {a: array("d", [_NAN]) * grid.size for a in self.agents} for key in self.range_keys
        }
        self.history = History(
            spec=spec,
            grid=grid,
            agents=self.agents,
            models=dict(models or {}),
            columns={k: v for k, v in self.columns.items() if k in self.plan.range_keys},
            spend=(
                {a: array("d", [_NAN]) * grid.size for a in self.agents}
                if self.plan.calendar_spend
                else None
            ),
            needs=self.plan.needs,
        )
        self.semaphore = asyncio.Semaphore(1)
        self.done = 0
        self.total = 0
        # Moments are complete chunk by chunk, in order: a chunk waits for its series and
        # the spend-so-far query of every budget period starting in it.
        self.chunks: list[tuple[int, int]] = []
        self.missing: list[int] = []
        self.complete = 0
        """Chunks complete, the first ones (their spend accumulated, the feed told)."""
        self.bases: dict[int, Mapping[AgentId, float | None]] = {}
        self.running: dict[AgentId, float] = {a: _NAN for a in self.agents}
        """Each agent's period-to-date spend at the end of the last complete chunk."""

    def _chunk_of(self, i: int) -> int:
        return next(c for c, (lo, hi) in enumerate(self.chunks) if lo <= i <= hi)

    def _landed(self, chunk: int) -> None:
        """One more query of ``chunk`` is in; hand on every leading chunk now complete."""
        self.missing[chunk] -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        while self.complete < len(self.chunks) and self.missing[self.complete] == 0:
            lo, hi = self.chunks[self.complete]
            h = self.history
            if h.spend is not None:
                assert self.plan.increment_key is not None
                _accumulate_into(
                    h.spend,
                    self.columns[self.plan.increment_key],
                    self.bases,
                    self.running,
                    lo,
                    hi + 1,
                )
            self.complete += 1
            if self.feed is not None:
                self.feed.advance(h, hi + 1)

    async def run(self, chunks: list[tuple[int, int]], max_concurrency: int) -> None:
        """Send every query (at most ``max_concurrency`` at once) and fill the history."""
        h = self.history
        self.semaphore = asyncio.Semaphore(max_concurrency)
        calendar = self.plan.calendar_spend
        starts = self.plan.period_starts if calendar else ()
        ends = self.plan.period_ends if calendar else ()
        self.total = len(self.range_keys) * len(chunks) + len(starts) + len(ends)
        self.chunks = chunks
        self.missing = [len(self.range_keys)] * len(chunks)
        for i in starts:
            self.missing[self._chunk_of(i)] += 1
        self._hand_on()  # chunks that wait for no query (none, unless a policy needs none)
        # The spend-so-far queries first (a few cheap instant queries the first moments of
        # each period wait for), then the chunks in time order, each chunk's series
        # together, so that moments complete from the start (and the progress bar means
        # something); the end-of-period spend checks last.
        bases = [self._base(i) for i in starts]
        ranges = [self._range(c, key) for c in range(len(chunks)) for key in self.range_keys]
        checks = [self._spent(i, "spend check") for i in ends]
        gathered = await asyncio.gather(*bases, *ranges, *checks)
        h.queries = h.stats.queries
        h.warnings = list(h.stats.warnings)
        if calendar:
            exact = gathered[len(bases) + len(ranges) :]
            self._check_spend(ends, [e for e in exact if isinstance(e, dict)])

    async def _bounded(self, make: Callable[[], Awaitable[tuple[_T, FetchStats]]], what: str) -> _T:
        """One query, within the concurrency bound; a failure names the query."""
        async with self.semaphore:
            try:
                result, st = await make()
            except MetricsError as exc:
                raise BacktestDataError(f"{what}: {exc}") from exc
        for key, error in st.errors.items():
            query = getattr(error, "query", None)
            raise BacktestDataError(
                f"the query for {key} failed: {error}" + (f"\n  query: {query}" if query else "")
            )
        _merge(self.history.stats, st)
        self.done += 1
        if self.on_query is not None:
            self.on_query(self.done, self.total, what)
        return result

    async def _range(self, chunk: int, key: SeriesKey) -> None:
        """One key over one chunk of the grid, as one range query."""
        grid, chunks = self.grid, self.chunks
        lo, hi = chunks[chunk]
        what = f"{key} [{lo + 1}-{hi + 1}/{grid.size}]" if len(chunks) > 1 else str(key)
        keeper = _KeepPoints(self.backend)
        table = await self._bounded(
            lambda: fetch_range(
                keeper,
                {key: self.agent_set},
                grid.at(lo),
                grid.at(hi),
                grid.step,
                self.catalog,
                namespace_label=self.namespace_label,
                max_concurrency=1,
            ),
            what,
        )
        self._fill(self.columns[key], table, key, keeper, lo, hi)
        self._landed(chunk)

    async def _spent(self, i: int, what: str) -> dict[AgentId, float | None]:
        """The exact period-to-date spend at moment ``i``, as the live loop queries it."""
        key = self.plan.needs.spend_key(i)
        assert key is not None
        at = self.grid.at(i)
        table = await self._bounded(
            lambda: fetch_samples(
                self.backend,
                {key: self.agent_set},
                at,
                self.catalog,
                namespace_label=self.namespace_label,
                max_concurrency=1,
            ),
            f"{what} at {at:%Y-%m-%d %H:%M}",
        )
        return {a: table.get(a, {}).get(key) for a in self.agents}

    async def _base(self, i: int) -> None:
        self.bases[i] = await self._spent(i, "spend so far")
        self._landed(self._chunk_of(i))

    def _check_spend(
        self, ends: Sequence[int], exact: Sequence[Mapping[AgentId, float | None]]
    ) -> None:
        """Compare the accumulated spend with the exact query at the end of each period."""
        h, grid = self.history, self.grid
        assert h.spend is not None
        spend = h.spend
        for i, values in zip(ends, exact, strict=True):
            h.spend_check.append(
                SpendCheck(
                    grid.at(i),
                    sum(v for a in self.agents if (v := spend[a][i]) == v),
                    sum(v for v in values.values() if v is not None),
                )
            )
        worst = max(h.spend_check, key=lambda c: c.relative_error, default=None)
        if worst is not None and worst.relative_error > SPEND_WARN:
            h.warnings.append(
                f"budget spend is reconstructed from per-step increases; at "
                f"{worst.at.isoformat()} it is ${worst.accumulated_usd:.4g} against "
                f"${worst.exact_usd:.4g} from the exact query ({worst.relative_error:.1%} off). "
                "A step shorter than twice the scrape interval loses spend; try a longer --step"
            )

    def _fill(
        self,
        col: dict[AgentId, array[float]],
        table: Mapping[AgentId, Mapping[SeriesKey, list[tuple[datetime, float]]]],
        key: SeriesKey,
        keeper: _KeepPoints,
        lo: int,
        hi: int,
    ) -> None:
        t0 = self.grid.start.timestamp()
        step_s = self.grid.step.total_seconds()
        for agent, per_key in table.items():
            stand_in = per_key.get(key)
            if not stand_in:
                continue
            points = keeper.answers[round(stand_in[0][0].timestamp())].points
            if not points:
                continue
            column = col[agent]
            first = round((points[0][0] - t0) / step_s)
            last = round((points[-1][0] - t0) / step_s)
            if last - first + 1 == len(points) and lo <= first and last <= hi:
                # One unbroken run of steps (the usual case): copied in one go.
                column[first : last + 1] = array("d", [v for _, v in points])
                continue
            for ts, value in points:
                j = round((ts - t0) / step_s)
                if lo <= j <= hi:
                    column[j] = value


class _KeepPoints:
    """A backend wrapper that lets ``fetch_range`` join series to agents without touching
    their points.

    ``fetch_range`` turns every point into a ``(datetime, value)`` pair before it joins
    series to agents: about a microsecond a point, and a week of a hundred agents at a
    one-minute step is a million points per series. This wrapper answers it with one
    stand-in point per series whose time is the series' position in :attr:`answers`, so
    the join (agent and namespace labels, ambiguous names, malformed results) stays
    ``fetch_range``'s own and the points are read from the stored answer afterwards.
    """

    def __init__(self, backend: MetricsBackend) -> None:
        self.backend = backend
        self.answers: list[RangeSeries] = []

    async def query(self, promql: str, at: datetime) -> QueryResult:
        return await self.backend.query(promql, at)

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        result = await self.backend.query_range(promql, start, end, step)
        first = len(self.answers)
        self.answers.extend(result.series)
        stand_ins = tuple(
            RangeSeries(s.labels, ((float(first + k), 0.0),)) for k, s in enumerate(result.series)
        )
        return RangeResult(series=stand_ins, warnings=result.warnings, timing=result.timing)

    async def aclose(self) -> None:
        """The wrapped backend belongs to the caller, who closes it."""


def _accumulate_into(
    spend: Mapping[AgentId, array[float]],
    increments: Mapping[AgentId, array[float]],
    bases: Mapping[int, Mapping[AgentId, float | None]],
    running: dict[AgentId, float],
    lo: int,
    hi: int,
) -> None:
    """Period-to-date spend over moments ``lo`` to ``hi - 1``, from (and updating) each
    agent's ``running`` total at ``lo``: the exact value at each period's first moment
    (``bases``), then that plus each later step's increase. No data stays NaN until the
    first value."""
    for agent, column in spend.items():
        inc = increments.get(agent)
        total = running[agent]
        for i in range(lo, hi):
            base = bases.get(i)
            if base is not None:
                v = base.get(agent)
                total = _NAN if v is None else v
            elif inc is not None:
                d = inc[i]
                if d == d:
                    total = d if total != total else total + d
            column[i] = total
        running[agent] = total


def _merge(into: FetchStats, st: FetchStats) -> None:
    into.queries += st.queries
    into.request_seconds += st.request_seconds
    into.parse_seconds += st.parse_seconds
    into.join_seconds += st.join_seconds
    if st.server_seconds is not None:
        into.server_seconds = (into.server_seconds or 0.0) + st.server_seconds
    into.warnings.extend(st.warnings)
    into.errors.update(st.errors)
