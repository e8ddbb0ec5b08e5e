"""Fetch the history a policy needs, batched like the live loop, into per-step columns.

What is fetched, and how
========================

The engine says what it needs at each moment (:func:`agentmedic.engine.requirements.
requirements`). Over a backtest's grid (``start + i * step``) those needs split in two:

- **Keys that do not depend on the moment** (every condition's metric and window, the
  ``executions`` behind ``minSamples``, the budget's burn window, a rolling budget's
  window): ONE ``query_range`` per distinct key for all agents, grouped by agent and
  namespace exactly as :func:`agentmedic.metrics.fetch_range` groups the live instant
  queries, split into consecutive chunks of at most ``max_points`` points (11,000 is
  Prometheus' per-series limit for a range query).
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
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    fetch_range,
    fetch_samples,
    promql,
)

__all__ = [
    "MAX_POINTS",
    "MODEL_LABEL",
    "BacktestDataError",
    "Grid",
    "History",
    "NoHistoryError",
    "OnQuery",
    "SpendCheck",
    "discover_agents",
    "fetch_history",
]

MAX_POINTS = 11_000
"""Prometheus refuses range queries of more than 11,000 points per series."""
MODEL_LABEL = "model"
"""The SDK's label for the model an agent runs (``agent_info``, ``agent_executions_total``)."""
SPEND_WARN = 0.02
"""Accumulated spend further than this from the exact query triggers a warning."""
MAX_RANGE_KEYS = 200
"""More distinct fixed keys than this is not a policy but a mistake; refuse to send them."""

OnQuery = Callable[[int, int, str], None]
"""Progress callback: ``(queries done, queries planned, what just finished)``."""

_NAN = math.nan


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


@dataclass
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

    def value(self, key: SeriesKey, agent: AgentId, i: int) -> float | None:
        """The value the engine sees for ``key`` and ``agent`` at grid index ``i``."""
        col = self.columns.get(key)
        if col is not None:
            v = col[agent][i] if agent in col else _NAN
        elif self.spend is not None and key == spend_key(self.spec, self.grid.at(i)):
            v = self.spend[agent][i] if agent in self.spend else _NAN
        else:
            return None
        return None if v != v else v

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

    def samples_at(self, i: int) -> Samples:
        """What the live loop would have fetched at grid index ``i``."""
        now = self.grid.at(i)
        fixed = [(k, self.columns[k]) for k in self.columns]
        skey = spend_key(self.spec, now) if self.spend is not None else None
        if skey is not None and skey in self.columns:
            skey = None  # the same window is fetched exactly; keep that
        out: dict[AgentId, dict[SeriesKey, float | None]] = {}
        for agent in self.agents:
            values: dict[SeriesKey, float | None] = {}
            for key, col in fixed:
                column = col.get(agent)
                v = column[i] if column is not None else _NAN
                values[key] = None if v != v else v
            if skey is not None and self.spend is not None:
                column = self.spend.get(agent)
                v = column[i] if column is not None else _NAN
                values[skey] = None if v != v else v
            out[agent] = values
        return out

    def timeline(self) -> Iterator[tuple[datetime, Samples]]:
        """``(moment, samples)`` for every grid moment, built lazily (a week of a hundred
        agents never sits in memory as dicts)."""
        for i in range(self.grid.size):
            yield self.grid.at(i), self.samples_at(i)

    def has_data(self, keys: Sequence[SeriesKey] | None = None) -> bool:
        """True when some agent has a value of some key (default: every fetched key)."""
        for key, col in self.columns.items():
            if keys is not None and key not in keys:
                continue
            for column in col.values():
                if any(v == v for v in column):
                    return True
        if self.spend is not None and keys is None:
            return any(any(v == v for v in column) for column in self.spend.values())
        return False


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
    for rank, series in enumerate(("agent_info", SERIES["executions"])):
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
    max_points: int = MAX_POINTS,
    max_concurrency: int = 4,
    on_query: OnQuery | None = None,
) -> History:
    """Fetch everything ``spec`` needs for ``agents`` over ``grid`` (see the module doc).

    Raises :class:`BacktestDataError` when the backend is unavailable or refuses a query
    (naming the series and the query), :class:`NoHistoryError` when nothing came back.
    """
    started = time.perf_counter()
    the_plan = plan(spec, grid)
    chunks = grid.chunks(max_points)
    range_keys = list(the_plan.range_keys)
    if the_plan.increment_key is not None and the_plan.increment_key not in range_keys:
        range_keys.append(the_plan.increment_key)
    total = len(range_keys) * len(chunks) + 2 * len(the_plan.period_starts)
    done = 0
    agent_set = frozenset(agents)
    stats = FetchStats()
    semaphore = asyncio.Semaphore(max_concurrency)

    def progress(what: str) -> None:
        nonlocal done
        done += 1
        if on_query is not None:
            on_query(done, total, what)

    async def bounded(
        make: Callable[[], Awaitable[tuple[object, FetchStats]]], what: str
    ) -> object:
        async with semaphore:
            try:
                result, st = await make()
            except MetricsError as exc:
                raise BacktestDataError(f"{what}: {exc}") from exc
        _merge(stats, st, what)
        progress(what)
        return result

    columns: dict[SeriesKey, dict[AgentId, array[float]]] = {
        key: {a: array("d", [_NAN]) * grid.size for a in agents} for key in range_keys
    }
    t0 = grid.start.timestamp()
    step_s = grid.step.total_seconds()

    async def one_range(key: SeriesKey, lo: int, hi: int) -> None:
        what = f"{key} [{lo + 1}-{hi + 1}/{grid.size}]" if len(chunks) > 1 else str(key)
        table = await bounded(
            lambda: fetch_range(
                backend,
                {key: agent_set},
                grid.at(lo),
                grid.at(hi),
                grid.step,
                catalog,
                namespace_label=namespace_label,
                max_concurrency=1,
            ),
            what,
        )
        assert isinstance(table, dict)
        col = columns[key]
        for agent, per_key in table.items():
            column = col[agent]
            for moment, value in per_key.get(key, ()):
                j = round((moment.timestamp() - t0) / step_s)
                if lo <= j <= hi:
                    column[j] = value

    async def one_instant(key: SeriesKey, i: int, what: str) -> dict[AgentId, float | None]:
        table = await bounded(
            lambda: fetch_samples(
                backend,
                {key: agent_set},
                grid.at(i),
                catalog,
                namespace_label=namespace_label,
                max_concurrency=1,
            ),
            what,
        )
        assert isinstance(table, dict)
        return {a: table.get(a, {}).get(key) for a in agents}

    tasks: list[Awaitable[object]] = [
        one_range(key, lo, hi) for key in range_keys for lo, hi in chunks
    ]
    bases: list[Awaitable[dict[AgentId, float | None]]] = []
    checks: list[Awaitable[dict[AgentId, float | None]]] = []
    if the_plan.calendar_spend:
        for i in the_plan.period_starts:
            key = spend_key(spec, grid.at(i))
            assert key is not None
            bases.append(one_instant(key, i, f"spend so far at {grid.at(i):%Y-%m-%d %H:%M}"))
        for i in the_plan.period_ends:
            key = spend_key(spec, grid.at(i))
            assert key is not None
            checks.append(one_instant(key, i, f"spend check at {grid.at(i):%Y-%m-%d %H:%M}"))
    gathered = await asyncio.gather(*tasks, *bases, *checks)
    base_values = gathered[len(tasks) : len(tasks) + len(bases)]
    check_values = gathered[len(tasks) + len(bases) :]
    if stats.errors:
        key, error = next(iter(stats.errors.items()))
        query = getattr(error, "query", None)
        raise BacktestDataError(
            f"the query for {key} failed: {error}" + (f"\n  query: {query}" if query else "")
        )

    history = History(
        spec=spec,
        grid=grid,
        agents=list(agents),
        models=dict(models or {}),
        columns={k: v for k, v in columns.items() if k in the_plan.range_keys},
        queries=stats.queries,
        stats=stats,
        warnings=list(stats.warnings),
    )
    if the_plan.calendar_spend:
        assert the_plan.increment_key is not None
        increments = columns[the_plan.increment_key]
        history.spend = _accumulate(
            agents,
            grid.size,
            increments,
            list(zip(the_plan.period_starts, base_values, strict=True)),  # type: ignore[arg-type]
        )
        for i, exact in zip(the_plan.period_ends, check_values, strict=True):
            assert isinstance(exact, dict)
            acc = sum(v for a in agents if (v := history.spend[a][i]) == v)
            ex = sum(v for v in exact.values() if v is not None)
            history.spend_check.append(SpendCheck(grid.at(i), acc, ex))
        worst = max(history.spend_check, key=lambda c: c.relative_error, default=None)
        if worst is not None and worst.relative_error > SPEND_WARN:
            history.warnings.append(
                f"budget spend is reconstructed from per-step increases; at "
                f"{worst.at.isoformat()} it is ${worst.accumulated_usd:.4g} against "
                f"${worst.exact_usd:.4g} from the exact query ({worst.relative_error:.1%} off). "
                "A step shorter than twice the scrape interval loses spend; try a longer --step"
            )
    history.fetch_seconds = time.perf_counter() - started
    return history


def _accumulate(
    agents: Sequence[AgentId],
    size: int,
    increments: Mapping[AgentId, array[float]],
    bases: Sequence[tuple[int, Mapping[AgentId, float | None]]],
) -> dict[AgentId, array[float]]:
    """Period-to-date spend: the exact value at each period's first moment, then that plus
    each later step's increase. No data stays NaN until the first value."""
    starts = {i: base for i, base in bases}
    out: dict[AgentId, array[float]] = {}
    for agent in agents:
        inc = increments.get(agent)
        column = array("d", [_NAN]) * size
        running = _NAN
        for i in range(size):
            base = starts.get(i)
            if base is not None:
                v = base.get(agent)
                running = _NAN if v is None else v
            elif inc is not None:
                d = inc[i]
                if d == d:
                    running = d if running != running else running + d
            column[i] = running
        out[agent] = column
    return out


def _merge(into: FetchStats, st: FetchStats, what: str) -> None:
    into.queries += st.queries
    into.request_seconds += st.request_seconds
    into.parse_seconds += st.parse_seconds
    into.join_seconds += st.join_seconds
    if st.server_seconds is not None:
        into.server_seconds = (into.server_seconds or 0.0) + st.server_seconds
    into.warnings.extend(st.warnings)
    into.errors.update(st.errors)
