"""What a backtest replays: the time grid, the history's columns, and the feed to the replay.

:class:`History` holds, per series key and agent, one value per grid moment (NaN: no
data); :meth:`History.timeline` and :class:`HistoryFeed` turn it into the ``(moment,
samples)`` steps the engine's replay evaluates, the latter while the fetch
(:mod:`agentmedic.backtest.history`) is still filling it.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.durations import format_duration
from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.requirements import GridNeeds, requirements_over
from agentmedic.engine.series import AgentId, Samples, SeriesKey
from agentmedic.metrics import FetchStats

__all__ = [
    "BacktestDataError",
    "Grid",
    "History",
    "HistoryFeed",
    "NoHistoryError",
    "ReplayAbortedError",
    "SpendCheck",
]

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
    needs: GridNeeds | None = None
    """What the policy needs over the grid (the engine's answer); worked out on first use
    when not given."""

    def grid_needs(self) -> GridNeeds:
        """What the policy needs over the grid, asked of the engine once."""
        if self.needs is None:
            self.needs = requirements_over(self.spec, self.grid.times())
        return self.needs

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
        key = self.grid_needs().spend_key(0)
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
        self.needs = history.grid_needs() if history.spend is not None else None
        """Calendar spend: the engine's spend key at each moment."""
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
        skey = self.needs.spend_key(i) if self.needs is not None else None
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
