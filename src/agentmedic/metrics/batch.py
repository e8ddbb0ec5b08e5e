"""One query per series per cycle, for all agents at once.

The engine names what it needs as :class:`~agentmedic.engine.series.SeriesKey` values; the
operator gathers, over every policy of a cycle, which agents need which key
(:func:`merge_needs`). :func:`fetch_samples` then sends ONE instant query per distinct key,
covering all its agents with a label matcher and grouped ``by (<agent label>,
<namespace label>)``, runs the distinct queries concurrently (bounded), and joins the
answers into a table agent → key → value where ``None`` is "no data", never 0. Queries per
cycle grow with the number of distinct keys, not with the number of agents.

Only finite numbers are evidence (docs/architecture.md, "The evidence rule and the failure
stance"). An agent whose value is NaN (PromQL's 0/0: a ratio over nothing, the quantile of
no observations) gets ``None`` in the table and is listed in ``FetchStats.undefined``: the
answer says neither that it is healthy nor that its series is missing, and the operator
holds such an agent for the cycle. +Inf or -Inf, which no catalog metric produces and which
would compare as a breach, fail the whole key as ``NonFiniteValue``.
:func:`fetch_range` does the same over ``query_range`` for the backtest.

How namespaces are matched (``namespace_label``, default ``"namespace"``): an agent is
``(namespace, name)``, but metrics may or may not carry the namespace of the workload
(Prometheus Operator's pod and service monitors add ``namespace``; remote-write or
central exporters may not).

- A result sample whose namespace label equals the agent's namespace is that agent's.
- A sample without the namespace label is the agent's of that name when only one agent
  of the query has that name; when agents in several namespaces share the name, such a
  sample is ambiguous and they get no data (with a warning in :class:`FetchStats`).
- A sample with another namespace belongs to another workload and is ignored.
- ``namespace_label=None`` says the metrics carry no namespace at all: queries group by
  the agent label only and every agent of that name gets the value.

What only changes with the agent set is kept between cycles (:class:`_Scopes`): the query
text with its agent matcher (sorting and escaping 10,000 names), and which names occur in
several namespaces. A backend offering
:class:`~agentmedic.metrics.backend.AgentQueryBackend` (:class:`PrometheusBackend` does)
answers straight into per-namespace maps of agent names, which are joined without a
per-sample object; any other answer takes the general path.

Raw PromQL conditions (``SeriesKey.query``) get ``{{window}}``, ``{{agents}}`` (the agent
matcher and the namespace matcher: :func:`~agentmedic.metrics.promql.scope_matcher`) and
``{{agent_label}}`` substituted; their result must be a vector labelled with the agent
label, else the key fails with a :class:`~agentmedic.metrics.errors.QueryError` naming it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import promql
from agentmedic.metrics.backend import (
    AgentSamples,
    AgentValues,
    MetricsBackend,
    QueryResult,
    RangeResult,
    Timing,
    from_unix,
)
from agentmedic.metrics.catalog import DEFAULT_CATALOG, Catalog
from agentmedic.metrics.errors import (
    MetricsError,
    MetricsUnavailable,
    QueryError,
    UnavailableReason,
)

__all__ = [
    "FetchStats",
    "RangeTable",
    "SampleTable",
    "build_query",
    "fetch_range",
    "fetch_samples",
    "merge_needs",
]

SampleTable = dict[AgentId, dict[SeriesKey, float | None]]
"""Agent → key → value; every requested pair is present, ``None`` meaning no data."""
RangeTable = dict[AgentId, dict[SeriesKey, list[tuple[datetime, float]]]]
"""Agent → key → ``(time, value)`` points in time order; no data is an empty list."""

_T = TypeVar("_T")
_V = TypeVar("_V")
_R = TypeVar("_R", QueryResult | AgentSamples, RangeResult)


@dataclass
class FetchStats:
    """What one fetch cost and what went wrong, per key."""

    queries: int = 0
    """Queries sent (after dedup); independent of the number of agents."""
    request_seconds: float = 0.0
    """Sum over queries of the client-side round trip (queries overlap, see wall_seconds)."""
    server_seconds: float | None = None
    """Sum of the backend's own evaluation times, when it reports them."""
    parse_seconds: float = 0.0
    """Client-side time decoding answers."""
    join_seconds: float = 0.0
    """Client-side time joining answers to agents."""
    wall_seconds: float = 0.0
    """Elapsed time of the whole fetch."""
    warnings: list[str] = field(default_factory=list)
    """Backend warnings and ambiguous joins."""
    errors: dict[SeriesKey, MetricsError] = field(default_factory=dict)
    """Keys whose query failed; their agents have no data for them, which is not the
    absence of their series: nothing may be concluded from them."""
    undefined: dict[SeriesKey, set[AgentId]] = field(default_factory=dict)
    """Per key, the agents whose value was NaN: ``None`` in the table, yet not absent."""

    def _add(self, timing: Timing) -> None:
        self.request_seconds += timing.request
        self.parse_seconds += timing.parse
        if timing.server is not None:
            self.server_seconds = (self.server_seconds or 0.0) + timing.server


def merge_needs(*needs: Mapping[SeriesKey, Iterable[AgentId]]) -> dict[SeriesKey, set[AgentId]]:
    """Union of several policies' needs: each key once, with all agents that need it."""
    out: dict[SeriesKey, set[AgentId]] = defaultdict(set)
    for mapping in needs:
        for key, agents in mapping.items():
            out[key].update(agents)
    return dict(out)


def build_query(
    key: SeriesKey,
    agents: Iterable[AgentId],
    catalog: Catalog = DEFAULT_CATALOG,
    *,
    namespace_label: str | None = "namespace",
) -> str:
    """The PromQL sent for ``key`` and ``agents``; raises ``QueryError`` for a bad key."""
    return _render_query(key, list(agents), catalog, namespace_label)


def _render_query(
    key: SeriesKey,
    agents: list[AgentId],
    catalog: Catalog,
    namespace_label: str | None,
    matchers: dict[tuple[str, str | None, bool], str] | None = None,
) -> str:
    """The query of ``key`` for ``agents``; ``matchers`` keeps their label matchers (the
    costly part: some 350 KiB of text at 10,000 agents) for the next query of the same
    agents."""
    label = key.agent_label
    ns_label = _ns_label(label, namespace_label)
    memo = {} if matchers is None else matchers
    try:
        slot: tuple[str, str | None, bool]
        if key.metric is not None:
            slot = (label, None, False)
            matcher = memo.get(slot)
            if matcher is None:
                matcher = memo[slot] = promql.agent_matcher(label, (a.name for a in agents))
            by = label if ns_label is None else f"{label}, {ns_label}"
            return catalog.render(
                key.metric, window=key.window, agents=matcher, agent_label=label, by=by
            )
        if key.query is None:
            raise ValueError("the series key has neither metric nor query")
        slot = (label, ns_label, True)
        scope = memo.get(slot)
        if scope is None:
            scope = memo[slot] = promql.scope_matcher(
                label, ((a.namespace, a.name) for a in agents), ns_label
            )
        return promql.substitute(
            key.query,
            {"window": promql.duration(key.window), "agents": scope, "agent_label": label},
        )
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise QueryError(f"{key}: {message}") from None


async def fetch_samples(
    backend: MetricsBackend,
    needs: Mapping[SeriesKey, Iterable[AgentId]],
    at: datetime,
    catalog: Catalog = DEFAULT_CATALOG,
    *,
    namespace_label: str | None = "namespace",
    max_concurrency: int = 8,
) -> tuple[SampleTable, FetchStats]:
    """Fetch every key for its agents at ``at``; one query per distinct key.

    A key whose query fails is recorded in ``FetchStats.errors`` and its agents get no
    data; when every query fails because the backend is unavailable, that
    :class:`MetricsUnavailable` is raised instead. NaN values are ``None`` in the table and
    listed in ``FetchStats.undefined``.
    """

    query_agents = getattr(backend, "query_agents", None)

    def run(query: str, keys: Sequence[SeriesKey]) -> Awaitable[QueryResult | AgentSamples]:
        label = keys[0].agent_label
        if query_agents is None or any(k.agent_label != label for k in keys):
            return backend.query(query, at)
        result: Awaitable[AgentSamples | QueryResult] = query_agents(
            query, at, label, _ns_label(label, namespace_label)
        )
        return result

    def join(
        result: QueryResult | AgentSamples, key: SeriesKey, scope: _Scope, ns_label: str | None
    ) -> tuple[list[float | None], list[str]]:
        if isinstance(result, AgentSamples):
            return _join_agents(result.values, key, scope, ns_label)
        return _join(_vector_rows(result, key), key, scope, ns_label)

    joined, scopes, stats = await _fetch(
        needs, catalog, namespace_label, max_concurrency, run, join
    )
    t0 = time.perf_counter()
    table: SampleTable = {}
    for scope, keys in _by_scope(scopes):
        columns = []
        for key in keys:
            column = joined.get(key)
            if column is None:
                column = [None] * len(scope.order)
            else:
                column = _without_nan(column, key, scope, stats)
            columns.append(column)
        _add_rows(table, scope, keys, columns)
    stats.join_seconds += time.perf_counter() - t0
    return table, stats


def _by_scope(scopes: Mapping[SeriesKey, _Scope]) -> list[tuple[_Scope, list[SeriesKey]]]:
    """The keys grouped by their agent set, so that each set's rows are built at once."""
    groups: dict[int, tuple[_Scope, list[SeriesKey]]] = {}
    for key, scope in scopes.items():
        groups.setdefault(id(scope), (scope, []))[1].append(key)
    return list(groups.values())


def _add_rows(
    table: dict[AgentId, dict[SeriesKey, _V]],
    scope: _Scope,
    keys: list[SeriesKey],
    columns: list[list[_V]],
) -> None:
    """Each agent's row of ``keys``, from columns aligned with ``scope.order``."""
    for agent, values in zip(scope.order, zip(*columns, strict=True), strict=True):
        row = table.get(agent)
        if row is None:
            table[agent] = dict(zip(keys, values, strict=True))
        else:
            row.update(zip(keys, values, strict=True))


def _without_nan(
    column: list[float | None], key: SeriesKey, scope: _Scope, stats: FetchStats
) -> list[float | None]:
    """NaN replaced by ``None``, its agents listed in ``stats.undefined``. The test is a
    sum in C: NaN propagates through it (infinities never reach a column)."""
    total = sum(filter(None, column))
    if total == total:
        return column
    undefined = {a for a, v in zip(scope.order, column, strict=True) if v != v}
    stats.undefined.setdefault(key, set()).update(undefined)
    return [None if v != v else v for v in column]


def _vector_rows(result: QueryResult, key: SeriesKey) -> list[tuple[Mapping[str, str], float]]:
    """A general instant answer as (labels, value) rows; an infinity fails the key."""
    if result.result_type != "vector":
        raise QueryError(
            f"{key}: the query returned a {result.result_type}; it must return an "
            f"instant vector with one sample per agent, labelled {key.agent_label!r}"
        )
    rows = []
    for s in result.samples:
        value = s.value
        if value in _INFINITIES:
            name = s.labels.get(key.agent_label, "?")
            raise MetricsUnavailable(
                UnavailableReason.NON_FINITE_VALUE,
                f"{key}: agent {name!r} has the value {value}, which no metric has; "
                "nothing is concluded from this query until it answers with numbers",
            )
        rows.append((s.labels, value))
    return rows


async def fetch_range(
    backend: MetricsBackend,
    needs: Mapping[SeriesKey, Iterable[AgentId]],
    start: datetime,
    end: datetime,
    step: timedelta,
    catalog: Catalog = DEFAULT_CATALOG,
    *,
    namespace_label: str | None = "namespace",
    max_concurrency: int = 4,
) -> tuple[RangeTable, FetchStats]:
    """Like :func:`fetch_samples` over ``query_range``: per agent and key, the points from
    ``start`` to ``end`` every ``step``; points that are not finite numbers (NaN: nothing
    happened at that time; ±Inf) are left out, the infinite ones with a warning."""

    def run(query: str, keys: Sequence[SeriesKey]) -> Awaitable[RangeResult]:
        return backend.query_range(query, start, end, step)

    infinite: dict[SeriesKey, int] = defaultdict(int)

    def join(
        result: RangeResult, key: SeriesKey, scope: _Scope, ns_label: str | None
    ) -> tuple[list[list[tuple[datetime, float]] | None], list[str]]:
        rows = []
        for s in result.series:
            points = [(from_unix(t), v) for t, v in s.points if math.isfinite(v)]
            infinite[key] += sum(1 for _, v in s.points if v in _INFINITIES)
            rows.append((s.labels, points))
        return _join(rows, key, scope, ns_label)

    joined, scopes, stats = await _fetch(
        needs, catalog, namespace_label, max_concurrency, run, join
    )
    for key, count in infinite.items():
        if count:
            stats.warnings.append(f"{key}: {count} infinite point(s) left out")
    table: RangeTable = {}
    for scope, keys in _by_scope(scopes):
        columns = []
        for key in keys:
            column = joined.get(key) or [None] * len(scope.order)
            columns.append([points or [] for points in column])
        _add_rows(table, scope, keys, columns)
    return table, stats


_INFINITIES = (math.inf, -math.inf)
_MISSING = object()


def _ns_label(agent_label: str, namespace_label: str | None) -> str | None:
    if namespace_label is None or namespace_label == agent_label:
        return None
    return promql.check_label_name(namespace_label, "namespace label")


class _Scope:
    """What only changes with an agent set: its queries and its names found in several
    namespaces. One per distinct set, shared by every key that needs that set."""

    __slots__ = ("_shared_names", "agents", "matchers", "names", "namespace", "order")

    def __init__(self, agents: frozenset[AgentId]) -> None:
        self.agents = agents
        self.order = list(agents)
        """The agents in the order of every column joined for this set."""
        self.names = [a.name for a in self.order]
        namespaces = {a.namespace for a in self.order}
        self.namespace = namespaces.pop() if len(namespaces) == 1 else None
        """The namespace of every agent of the set, if they share one."""
        self.matchers: dict[tuple[str, str | None, bool], str] = {}
        """The set's label matchers, per (agent label, namespace label, raw query): a few
        per set, whatever the queries. The queries themselves are not kept: a key whose
        window moves every cycle (a calendar budget's spend so far) would leave one more
        text of the size of the matcher behind each cycle."""
        self._shared_names: frozenset[str] | None = None

    @property
    def shared_names(self) -> frozenset[str]:
        """Agent names that occur in more than one namespace of the set."""
        if self._shared_names is None:
            count: dict[str, int] = defaultdict(int)
            for agent in self.agents:
                count[agent.name] += 1
            self._shared_names = frozenset(n for n, c in count.items() if c > 1)
        return self._shared_names

    def query(self, key: SeriesKey, catalog: Catalog, namespace_label: str | None) -> str:
        """``build_query`` for this set, its matchers built once."""
        return _render_query(key, self.order, catalog, namespace_label, self.matchers)


class _Scopes:
    """The recently used agent sets, least recently used dropped first; bounded by the
    number of sets and by the agents they hold together."""

    def __init__(self, max_sets: int = 128, max_agents: int = 100_000) -> None:
        self._sets: OrderedDict[frozenset[AgentId], _Scope] = OrderedDict()
        self._agents = 0
        self.max_sets = max_sets
        self.max_agents = max_agents

    def get(self, agents: frozenset[AgentId]) -> _Scope:
        scope = self._sets.get(agents)
        if scope is not None:
            self._sets.move_to_end(agents)
            return scope
        scope = _Scope(agents)
        self._sets[agents] = scope
        self._agents += len(agents)
        while len(self._sets) > 1 and (
            len(self._sets) > self.max_sets or self._agents > self.max_agents
        ):
            _, dropped = self._sets.popitem(last=False)
            self._agents -= len(dropped.agents)
        return scope


_SCOPES = _Scopes()


@dataclass
class _Joined(Generic[_T]):
    """One query's answer once joined: its columns, warnings and errors by key (the
    decoded answer itself is not kept)."""

    timing: Timing
    warnings: list[str]
    columns: dict[SeriesKey, list[_T | None]] = field(default_factory=dict)
    key_warnings: list[str] = field(default_factory=list)
    errors: dict[SeriesKey, MetricsError] = field(default_factory=dict)
    seconds: float = 0.0


async def _fetch(
    needs: Mapping[SeriesKey, Iterable[AgentId]],
    catalog: Catalog,
    namespace_label: str | None,
    max_concurrency: int,
    run: Callable[[str, Sequence[SeriesKey]], Awaitable[_R]],
    join: Callable[[_R, SeriesKey, _Scope, str | None], tuple[list[_T | None], list[str]]],
) -> tuple[dict[SeriesKey, list[_T | None]], dict[SeriesKey, _Scope], FetchStats]:
    """Send each distinct query once; per key, a column of values aligned with its agent
    set's ``order`` (``None``: no data), and the agent set of every key with agents."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    started = time.perf_counter()
    stats = FetchStats()
    scope_of: dict[SeriesKey, _Scope] = {}
    # Identical PromQL (the same key needed by several policies, or two keys rendering
    # alike) is sent once.
    keys_of_query: dict[str, list[SeriesKey]] = defaultdict(list)
    for key, agents in needs.items():
        scope = _SCOPES.get(frozenset(agents))
        if not scope.agents:
            continue
        scope_of[key] = scope
        try:
            query = scope.query(key, catalog, namespace_label)
        except QueryError as exc:
            stats.errors[key] = exc
            continue
        keys_of_query[query].append(key)

    semaphore = asyncio.Semaphore(max_concurrency)

    async def one(query: str) -> _Joined[_T] | MetricsError:
        """Send ``query`` and join its answer at once: the decoded answer (10,000 samples at
        10,000 agents) is dropped before another task runs, so a cycle holds one answer at
        a time instead of all of them."""
        async with semaphore:
            try:
                result = await run(query, keys_of_query[query])
            except MetricsError as exc:
                return exc
        t0 = time.perf_counter()
        done = _Joined[_T](timing=result.timing, warnings=list(result.warnings))
        for key in keys_of_query[query]:
            try:
                ns_label = _ns_label(key.agent_label, namespace_label)
                done.columns[key], warnings = join(result, key, scope_of[key], ns_label)
                done.key_warnings.extend(warnings)
            except MetricsError as exc:
                done.errors[key] = _for_key(exc, key, query)
        done.seconds = time.perf_counter() - t0
        return done

    queries = list(keys_of_query)
    results = await asyncio.gather(*(one(q) for q in queries))
    stats.queries = len(queries)

    # Assembled in the queries' order, whatever order the answers came in.
    joined: dict[SeriesKey, list[_T | None]] = {}
    for query, result in zip(queries, results, strict=True):
        keys = keys_of_query[query]
        if isinstance(result, MetricsError):
            for key in keys:
                stats.errors[key] = _for_key(result, key, query)
            continue
        stats._add(result.timing)
        stats.warnings.extend(f"{keys[0]}: {w}" for w in result.warnings)
        joined.update(result.columns)
        stats.warnings.extend(result.key_warnings)
        stats.errors.update(result.errors)
        stats.join_seconds += result.seconds

    stats.wall_seconds = time.perf_counter() - started
    if queries and all(isinstance(r, MetricsUnavailable) for r in results):
        first = results[0]
        assert isinstance(first, MetricsUnavailable)
        raise first
    return joined, scope_of, stats


def _for_key(error: MetricsError, key: SeriesKey, query: str) -> MetricsError:
    if isinstance(error, QueryError) and error.query is None:
        return QueryError(error.message, error_type=error.error_type, query=query)
    return error


def _ambiguous(key: SeriesKey, names: set[str], ns_label: str | None) -> list[str]:
    return [
        f"{key}: the series of agent {name!r} carry no {ns_label!r} label, but agents of "
        "that name exist in several namespaces; they get no data (add the namespace label "
        "to the metrics)"
        for name in sorted(names)
    ]


def _join_agents(
    values: AgentValues, key: SeriesKey, scope: _Scope, ns_label: str | None
) -> tuple[list[float | None], list[str]]:
    """:func:`_join` for an answer already keyed by namespace and agent name; the common
    cases (no namespace label at all, or every agent and sample in one namespace) are
    one ``map`` in C."""
    bare = values.get(None)
    if ns_label is None:
        return list(map((bare or _NO_VALUES).get, scope.names)), []
    if bare is None:
        if scope.namespace is not None:
            return list(map(values.get(scope.namespace, _NO_VALUES).get, scope.names)), []
        get = values.get
        return [get(namespace, _NO_VALUES).get(name) for namespace, name in scope.order], []
    column: list[float | None] = []
    ambiguous: set[str] = set()
    shared = scope.shared_names
    for namespace, name in scope.order:
        value = values.get(namespace, _NO_VALUES).get(name, _MISSING)
        if value is _MISSING:
            if name in bare and name in shared:
                ambiguous.add(name)
            value = None if name in shared else bare.get(name)
        column.append(value)  # type: ignore[arg-type]
    return column, _ambiguous(key, ambiguous, ns_label)


_NO_VALUES: dict[str, float] = {}


def _join(
    rows: Sequence[tuple[Mapping[str, str], _T]],
    key: SeriesKey,
    scope: _Scope,
    ns_label: str | None,
) -> tuple[list[_T | None], list[str]]:
    label = key.agent_label
    exact: dict[tuple[str | None, str], _T] = {}
    for labels, value in rows:
        name = labels.get(label)
        if name is None:
            shown = "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}"
            raise QueryError(
                f"{key}: a result series has no {label!r} label ({shown}); the query must "
                f"return one sample per agent, e.g. aggregate with `sum by ({label}) (...)`"
            )
        ns = labels.get(ns_label) if ns_label is not None else None
        if (ns, name) in exact:
            group = label if ns_label is None else f"{label}, {ns_label}"
            raise QueryError(
                f"{key}: the result has several series for agent {name!r}; aggregate them "
                f"with `sum by ({group}) (...)` or a similar aggregation"
            )
        exact[(ns, name)] = value

    column: list[_T | None] = []
    ambiguous: set[str] = set()
    for agent in scope.order:
        found: tuple[str | None, str]
        if ns_label is not None and (agent.namespace, agent.name) in exact:
            found = (agent.namespace, agent.name)
        elif (None, agent.name) in exact:
            if ns_label is not None and agent.name in scope.shared_names:
                ambiguous.add(agent.name)
                column.append(None)
                continue
            found = (None, agent.name)
        else:
            column.append(None)
            continue
        column.append(exact[found])
    return column, _ambiguous(key, ambiguous, ns_label)
