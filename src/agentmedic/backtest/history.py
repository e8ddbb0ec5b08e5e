"""Fetch the history a policy needs, batched like the live loop, into per-step columns.

What is fetched, and how
========================

The engine says what it needs at each moment (:func:`agentmedic.engine.requirements.
requirements`). Over a backtest's grid (``start + i * step``) those needs split in two:

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

Agents come from ``--agents`` or from the history itself: every ``(agent, namespace)``
with ``agent_info`` or ``agent_executions_total`` samples in the range (one coarse range
query each, which also gives each agent's model at the start of the range: the workload's
model the engine starts from).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from agentmedic.api.durations import format_duration
from agentmedic.api.metric_names import AGENT_INFO
from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.periods import budget_period
from agentmedic.engine.requirements import requirements, spend_key
from agentmedic.engine.series import AgentId, Samples, SeriesKey
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    SERIES,
    Catalog,
    FetchStats,
    MetricsBackend,
    MetricsError,
    QueryResult,
    RangeResult,
    RangeSeries,
    fetch_range,
    fetch_samples,
    promql,
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
MODEL_LABEL = "model"
"""The SDK's label for the model an agent runs (``agent_info``, ``agent_executions_total``)."""
SPEND_WARN = 0.02
"""Accumulated spend further than this from the exact query triggers a warning."""
MAX_RANGE_KEYS = 200
"""More distinct fixed keys than this is not a policy but a mistake; refuse to send them."""

OnQuery = Callable[[int, int, str], None]
"""Progress callback: ``(queries done, queries planned, what just finished)``."""

_NAN = math.nan
_T = TypeVar("_T")


class BacktestDataError(RuntimeError):
    """The history could not be fetched: the backend failed or refused a query."""


class NoHistoryError(BacktestDataError):
    """The range holds no data for the policy's agents or metrics."""


@dataclass(frozen=True)
class Grid:
    """The moments a backtest evaluates at: ``start + i * step`` up to ``end``."""

    start: datetime
    end: datetime
    step: timedelta

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if self.step <= timedelta(0):
            raise ValueError(f"step must be positive, got {self.step}")
        if self.end < self.start:
            raise ValueError(
                f"the range ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()}); swap --from and --to"
            )

    @property
    def size(self) -> int:
        """The number of moments."""
        return int((self.end - self.start) / self.step) + 1

    @property
    def last(self) -> datetime:
        """The last moment (``end`` rounded down to the grid)."""
        return self.at(self.size - 1)

    def at(self, i: int) -> datetime:
        return self.start + i * self.step

    def times(self) -> list[datetime]:
        return [self.at(i) for i in range(self.size)]

    def index(self, moment: datetime) -> int:
        """The grid index of a moment on the grid (rounded to the nearest)."""
        return round((moment - self.start) / self.step)

    def chunks(self, max_points: int) -> list[tuple[int, int]]:
        """``[first, last]`` index ranges of at most ``max_points`` moments each."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        return [(lo, min(lo + max_points, self.size) - 1) for lo in range(0, self.size, max_points)]


@dataclass(frozen=True)
class SpendCheck:
    """The accumulated period-to-date spend against the exact query, at one moment."""

    at: datetime
    accumulated_usd: float
    exact_usd: float

    @property
    def relative_error(self) -> float:
        if self.exact_usd == 0:
            return 0.0 if self.accumulated_usd == 0 else math.inf
        return abs(self.accumulated_usd - self.exact_usd) / abs(self.exact_usd)


@dataclass(repr=False)
class History:
    """What the backtest replays: per key, per agent, a value per grid moment.

    Columns are ``array('d')`` with NaN for "no data" (handed to the engine as None).
    """

    spec: AgentPolicySpec
    grid: Grid
    agents: list[AgentId]
    models: dict[AgentId, str | None]
    columns: dict[SeriesKey, dict[AgentId, array[float]]]
    """Fixed keys, fetched with range queries."""
    spend: dict[AgentId, array[float]] | None = None
    """Calendar budgets: period-to-date spend per agent and moment, assembled client-side."""
    spend_check: list[SpendCheck] = field(default_factory=list)
    """The accumulated spend against the exact query, at the end of each period."""
    queries: int = 0
    """Queries sent."""
    fetch_seconds: float = 0.0
    stats: FetchStats = field(default_factory=FetchStats)
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # A summary, not the generated repr of millions of column values.
        g = self.grid
        return (
            f"History({g.start.isoformat()} to {g.last.isoformat()} every "
            f"{format_duration(g.step)} ({g.size} moments), {len(self.agents)} agents, "
            f"keys=[{', '.join(str(k) for k in self.columns)}], "
            f"calendar_spend={self.spend is not None}, queries={self.queries})"
        )

    def series(self, key: SeriesKey, agent: AgentId) -> list[float]:
        """One agent's values of a fixed key over the grid (NaN: no data)."""
        col = self.columns.get(key, {})
        return list(col[agent]) if agent in col else [_NAN] * self.grid.size

    def spend_series(self, agent: AgentId) -> list[float]:
        """One agent's period-to-date spend over the grid (NaN: no data)."""
        if self.spend is not None:
            return list(self.spend.get(agent, array("d", [_NAN] * self.grid.size)))
        key = spend_key(self.spec, self.grid.start)
        return self.series(key, agent) if key is not None else [_NAN] * self.grid.size

    def timeline(self) -> Iterator[tuple[datetime, Samples]]:
        """``(moment, samples)`` for every grid moment, built lazily (a week of a hundred
        agents never sits in memory as dicts)."""
        sample = self.sampler()
        for i in range(self.grid.size):
            yield self.grid.at(i), sample(i)

    def sampler(self) -> Callable[[int], Samples]:
        """A function from a grid index to that moment's samples."""
        rows = _Rows(self)
        rows.fill(0, self.grid.size)
        return rows.sample

    def has_data(self) -> bool:
        """True when some agent has a value of some series (or spend) at some moment."""
        columns = [c for col in self.columns.values() for c in col.values()]
        columns += list(self.spend.values()) if self.spend is not None else []
        return any(v == v for column in columns for v in column)


class _Rows:
    """A history's values laid out for the replay, moment by moment.

    The replay builds about a million samples dicts for a week of a hundred agents, so
    each agent's columns are interleaved into one row-major array: a moment's values are
    then one slice, zipped with the keys in C. NaN (no data) becomes None, as the live
    loop hands it to the engine. :meth:`fill` copies moments in as the fetch completes
    them (see :class:`HistoryFeed`).
    """

    def __init__(self, history: History) -> None:
        self.history = history
        self.keys = list(history.columns)
        self.width = len(self.keys)
        size = history.grid.size
        self.missing = array("d", [_NAN]) * size
        spend = history.spend
        self.rows: list[tuple[AgentId, array[float], array[float]]] = [
            (
                agent,
                array("d", [_NAN]) * (size * self.width),
                spend.get(agent, self.missing) if spend is not None else self.missing,
            )
            for agent in history.agents
        ]

    def fill(self, lo: int, hi: int) -> None:
        """Copy moments ``lo`` to ``hi - 1`` in from the history's columns."""
        if hi <= lo:
            return
        w, columns, missing = self.width, self.history.columns, self.missing
        for agent, interleaved, _ in self.rows:
            for j, k in enumerate(self.keys):
                interleaved[lo * w + j : hi * w : w] = columns[k].get(agent, missing)[lo:hi]

    def sample(self, i: int) -> Samples:
        h = self.history
        skey = spend_key(h.spec, h.grid.at(i)) if h.spend is not None else None
        if skey is not None and skey in h.columns:
            skey = None  # the same window is fetched exactly; keep that
        keys, isnan = self.keys, math.isnan
        lo, hi = i * self.width, (i + 1) * self.width
        out: dict[AgentId, dict[SeriesKey, float | None]] = {}
        for agent, interleaved, spend in self.rows:
            row = interleaved[lo:hi]
            values: dict[SeriesKey, float | None] = dict(zip(keys, row, strict=True))
            if any(map(isnan, row)):
                values = {k: (None if v is None or v != v else v) for k, v in values.items()}
            if skey is not None:
                v = spend[i]
                values[skey] = v if v == v else None
            out[agent] = values
        return out


class ReplayAbortedError(Exception):
    """The fetch feeding a replay failed or found nothing; the replay stops."""


class HistoryFeed:
    """Hands a history to a replay in another thread while it is still being fetched.

    :func:`fetch_history` calls :meth:`advance` (in the event loop's thread) each time
    the first ``upto`` moments are complete; :meth:`moments` (in the replay's thread)
    yields each moment as soon as it is. The replay of a week then runs while Prometheus
    evaluates the later days instead of after the last query.
    """

    def __init__(self) -> None:
        self._ready = 0
        self._rows: _Rows | None = None
        self._aborted = False
        self._changed = threading.Condition()

    def advance(self, history: History, upto: int) -> None:
        """Moments ``0`` to ``upto - 1`` of ``history`` are complete."""
        if self._rows is None:
            self._rows = _Rows(history)
        self._rows.fill(self._ready, upto)
        with self._changed:
            self._ready = max(self._ready, upto)
            self._changed.notify_all()

    def abort(self) -> None:
        """Stop the replay: :meth:`moments` raises :class:`ReplayAbortedError`."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def moments(self, grid: Grid) -> Iterator[tuple[datetime, Samples]]:
        """``(moment, samples)`` for every moment of ``grid``, each once it is complete."""
        for i in range(grid.size):
            if self._ready <= i:
                with self._changed:
                    while self._ready <= i and not self._aborted:
                        self._changed.wait()
            if self._aborted:
                raise ReplayAbortedError
            assert self._rows is not None
            yield grid.at(i), self._rows.sample(i)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """Which range queries and which spend reconstruction a backtest needs."""

    range_keys: list[SeriesKey]
    calendar_spend: bool
    """The budget's period-to-date spend changes window every step (calendar period)."""
    increment_key: SeriesKey | None
    """``cost_usd`` over one step (calendar spend only)."""
    period_starts: list[int]
    """Grid index of the first moment in each budget period the range touches."""
    period_ends: list[int]
    """Grid index of the last moment in each of those periods."""


def plan(spec: AgentPolicySpec, grid: Grid) -> Plan:
    """Work out the queries: fixed keys once each, calendar spend by accumulation."""
    budget = spec.budget
    calendar = budget is not None and not budget_period(budget, grid.start).rolling
    keys: set[SeriesKey] = set()
    starts: list[int] = []
    ends: list[int] = []
    current: datetime | None = None
    for i in range(grid.size):
        now = grid.at(i)
        needed = requirements(spec, now)
        if calendar:
            assert budget is not None
            skey = spend_key(spec, now)
            if skey is not None:
                needed.discard(skey)
            period = budget_period(budget, now).start
            if period != current:
                if starts:
                    ends.append(i - 1)
                starts.append(i)
                current = period
        keys |= needed
    if starts:
        ends.append(grid.size - 1)
    if len(keys) > MAX_RANGE_KEYS:
        raise ValueError(
            f"the policy needs {len(keys)} distinct series over the range; at most "
            f"{MAX_RANGE_KEYS} are fetched (check raw queries and windows)"
        )
    increment = SeriesKey("cost_usd", None, grid.step, spec.agent_label) if calendar else None
    return Plan(
        range_keys=sorted(keys, key=str),
        calendar_spend=calendar,
        increment_key=increment,
        period_starts=starts,
        period_ends=ends,
    )


# --------------------------------------------------------------------------- discovery


def _selector(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={promql.quote_string(v)}" for k, v in sorted(labels.items()))


async def discover_agents(
    backend: MetricsBackend,
    grid: Grid,
    *,
    agent_label: str,
    namespace: str,
    namespace_label: str | None,
    names: Sequence[str] | None = None,
    on_query: Callable[[str], None] | None = None,
) -> tuple[list[AgentId], dict[AgentId, str | None], int]:
    """The agents with ``agent_info`` or ``agent_executions_total`` samples in the range,
    and the model each ran at its first appearance; returns ``(agents, models, queries)``.

    With ``names``, only those agents are looked up (and returned even without data).
    """
    promql.check_label_name(agent_label, "agent label")
    if namespace_label is not None:
        promql.check_label_name(namespace_label, "namespace label")
    matchers = {namespace_label: namespace} if namespace_label else {}
    sel = _selector(matchers)
    if names:
        sel = ", ".join(s for s in (sel, promql.agent_matcher(agent_label, names)) if s)
    by = ", ".join(x for x in (agent_label, namespace_label, MODEL_LABEL) if x)
    # One point per 1/240 of the range (at least one per step): cheap, and an agent seen in
    # any window shows up because each point looks back over its whole stride.
    stride = max(
        grid.step, timedelta(seconds=math.ceil((grid.end - grid.start).total_seconds() / 240))
    )
    window = promql.duration(stride)
    first_seen: dict[AgentId, tuple[float, int, str | None]] = {}
    queries = 0
    for rank, series in enumerate((AGENT_INFO, SERIES["executions"])):
        query = f"group by ({by}) (last_over_time({series}{{{sel}}}[{window}]))"
        try:
            result = await backend.query_range(query, grid.start, grid.end, stride)
        except MetricsError as exc:
            raise BacktestDataError(f"discovering agents failed: {exc}") from exc
        queries += 1
        if on_query is not None:
            on_query(f"agents from {series}")
        for s in result.series:
            name = s.labels.get(agent_label)
            if not name or not s.points:
                continue
            ns = s.labels.get(namespace_label, namespace) if namespace_label else namespace
            if ns != namespace:
                continue
            agent = AgentId(ns, name)
            seen = (s.points[0][0], rank, s.labels.get(MODEL_LABEL))
            if agent not in first_seen or seen < first_seen[agent]:
                first_seen[agent] = seen
    models = {a: v[2] for a, v in first_seen.items()}
    if names:
        agents = sorted(AgentId(namespace, n) for n in set(names))
        for a in agents:
            models.setdefault(a, None)
    else:
        agents = sorted(first_seen)
    return agents, models, queries


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
        )
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
        grid, the_plan, h = self.grid, self.plan, self.history
        semaphore = asyncio.Semaphore(max_concurrency)
        calendar = the_plan.calendar_spend
        starts = the_plan.period_starts if calendar else []
        ends = the_plan.period_ends if calendar else []
        self.total = len(self.range_keys) * len(chunks) + len(starts) + len(ends)
        self.chunks = chunks
        self.missing = [len(self.range_keys)] * len(chunks)
        for i in starts:
            self.missing[self._chunk_of(i)] += 1
        self._hand_on()  # chunks that wait for no query (none, unless a policy needs none)

        async def bounded(make: Callable[[], Awaitable[tuple[_T, FetchStats]]], what: str) -> _T:
            async with semaphore:
                try:
                    result, st = await make()
                except MetricsError as exc:
                    raise BacktestDataError(f"{what}: {exc}") from exc
            for key, error in st.errors.items():
                query = getattr(error, "query", None)
                raise BacktestDataError(
                    f"the query for {key} failed: {error}"
                    + (f"\n  query: {query}" if query else "")
                )
            _merge(h.stats, st)
            self.done += 1
            if self.on_query is not None:
                self.on_query(self.done, self.total, what)
            return result

        async def one_range(chunk: int, key: SeriesKey) -> None:
            lo, hi = chunks[chunk]
            what = f"{key} [{lo + 1}-{hi + 1}/{grid.size}]" if len(chunks) > 1 else str(key)
            keeper = _KeepPoints(self.backend)
            table = await bounded(
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

        async def spent(i: int, what: str) -> dict[AgentId, float | None]:
            key = spend_key(h.spec, grid.at(i))
            assert key is not None
            table = await bounded(
                lambda: fetch_samples(
                    self.backend,
                    {key: self.agent_set},
                    grid.at(i),
                    self.catalog,
                    namespace_label=self.namespace_label,
                    max_concurrency=1,
                ),
                f"{what} at {grid.at(i):%Y-%m-%d %H:%M}",
            )
            return {a: table.get(a, {}).get(key) for a in self.agents}

        async def base(i: int) -> None:
            self.bases[i] = await spent(i, "spend so far")
            self._landed(self._chunk_of(i))

        # The spend-so-far queries first (a few cheap instant queries the first moments of
        # each period wait for), then the chunks in time order, each chunk's series
        # together, so that moments complete from the start (and the progress bar means
        # something); the end-of-period spend checks last.
        bases = [base(i) for i in starts]
        ranges = [one_range(c, key) for c in range(len(chunks)) for key in self.range_keys]
        checks = [spent(i, "spend check") for i in ends]
        gathered = await asyncio.gather(*bases, *ranges, *checks)
        h.queries = h.stats.queries
        h.warnings = list(h.stats.warnings)
        if not calendar:
            return
        assert h.spend is not None
        spend = h.spend
        check_values = gathered[len(bases) + len(ranges) :]
        for i, exact in zip(ends, check_values, strict=True):
            assert isinstance(exact, dict)
            h.spend_check.append(
                SpendCheck(
                    grid.at(i),
                    sum(v for a in self.agents if (v := spend[a][i]) == v),
                    sum(v for v in exact.values() if v is not None),
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
