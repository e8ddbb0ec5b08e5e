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

Raw PromQL conditions (``SeriesKey.query``) get ``{{window}}``, ``{{agents}}`` (the agent
matcher and the namespace matcher: :func:`~agentmedic.metrics.promql.scope_matcher`) and
``{{agent_label}}`` substituted; their result must be a vector labelled with the agent
label, else the key fails with a :class:`~agentmedic.metrics.errors.QueryError` naming it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import promql
from agentmedic.metrics.backend import (
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
_R = TypeVar("_R", QueryResult, RangeResult)


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
    label = key.agent_label
    ns_label = _ns_label(label, namespace_label)
    agents = list(agents)
    try:
        matcher = promql.agent_matcher(label, (a.name for a in agents))
        if key.metric is not None:
            by = label if ns_label is None else f"{label}, {ns_label}"
            return catalog.render(
                key.metric, window=key.window, agents=matcher, agent_label=label, by=by
            )
        if key.query is None:
            raise ValueError("the series key has neither metric nor query")
        scope = promql.scope_matcher(label, ((a.namespace, a.name) for a in agents), ns_label)
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

    def run(query: str) -> Awaitable[QueryResult]:
        return backend.query(query, at)

    def values(result: QueryResult, key: SeriesKey) -> list[tuple[Mapping[str, str], float]]:
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

    joined, stats = await _fetch(needs, catalog, namespace_label, max_concurrency, run, values)
    table: SampleTable = {}
    for key, agents in needs.items():
        per_agent = joined.get(key, {})
        for agent in agents:
            value = per_agent.get(agent)
            if value is not None and value != value:  # NaN
                stats.undefined.setdefault(key, set()).add(agent)
                value = None
            table.setdefault(agent, {})[key] = value
    return table, stats


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

    def run(query: str) -> Awaitable[RangeResult]:
        return backend.query_range(query, start, end, step)

    infinite: dict[SeriesKey, int] = defaultdict(int)

    def values(
        result: RangeResult, key: SeriesKey
    ) -> list[tuple[Mapping[str, str], list[tuple[datetime, float]]]]:
        rows = []
        for s in result.series:
            points = [(from_unix(t), v) for t, v in s.points if math.isfinite(v)]
            infinite[key] += sum(1 for _, v in s.points if v in _INFINITIES)
            rows.append((s.labels, points))
        return rows

    joined, stats = await _fetch(needs, catalog, namespace_label, max_concurrency, run, values)
    for key, count in infinite.items():
        if count:
            stats.warnings.append(f"{key}: {count} infinite point(s) left out")
    table: RangeTable = {}
    for key, agents in needs.items():
        per_agent = joined.get(key, {})
        for agent in agents:
            table.setdefault(agent, {})[key] = per_agent.get(agent) or []
    return table, stats


_INFINITIES = (math.inf, -math.inf)


def _ns_label(agent_label: str, namespace_label: str | None) -> str | None:
    if namespace_label is None or namespace_label == agent_label:
        return None
    return promql.check_label_name(namespace_label, "namespace label")


async def _fetch(
    needs: Mapping[SeriesKey, Iterable[AgentId]],
    catalog: Catalog,
    namespace_label: str | None,
    max_concurrency: int,
    run: Callable[[str], Awaitable[_R]],
    values: Callable[[_R, SeriesKey], Sequence[tuple[Mapping[str, str], _T]]],
) -> tuple[dict[SeriesKey, dict[AgentId, _T]], FetchStats]:
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    started = time.perf_counter()
    stats = FetchStats()
    agents_of = {key: frozenset(agents) for key, agents in needs.items()}
    # Identical PromQL (the same key needed by several policies, or two keys rendering
    # alike) is sent once.
    keys_of_query: dict[str, list[SeriesKey]] = defaultdict(list)
    for key, agents in agents_of.items():
        if not agents:
            continue
        try:
            query = build_query(key, agents, catalog, namespace_label=namespace_label)
        except QueryError as exc:
            stats.errors[key] = exc
            continue
        keys_of_query[query].append(key)

    semaphore = asyncio.Semaphore(max_concurrency)

    async def one(query: str) -> _R | MetricsError:
        async with semaphore:
            try:
                return await run(query)
            except MetricsError as exc:
                return exc

    queries = list(keys_of_query)
    results = await asyncio.gather(*(one(q) for q in queries))
    stats.queries = len(queries)

    joined: dict[SeriesKey, dict[AgentId, _T]] = {}
    for query, result in zip(queries, results, strict=True):
        keys = keys_of_query[query]
        if isinstance(result, MetricsError):
            for key in keys:
                stats.errors[key] = _for_key(result, key, query)
            continue
        stats._add(result.timing)
        stats.warnings.extend(f"{keys[0]}: {w}" for w in result.warnings)
        t0 = time.perf_counter()
        for key in keys:
            try:
                rows = values(result, key)
                joined[key] = _join(
                    rows,
                    key,
                    agents_of[key],
                    _ns_label(key.agent_label, namespace_label),
                    stats.warnings,
                )
            except MetricsError as exc:
                stats.errors[key] = _for_key(exc, key, query)
        stats.join_seconds += time.perf_counter() - t0

    stats.wall_seconds = time.perf_counter() - started
    if queries and all(isinstance(r, MetricsUnavailable) for r in results):
        first = results[0]
        assert isinstance(first, MetricsUnavailable)
        raise first
    return joined, stats


def _for_key(error: MetricsError, key: SeriesKey, query: str) -> MetricsError:
    if isinstance(error, QueryError) and error.query is None:
        return QueryError(error.message, error_type=error.error_type, query=query)
    return error


def _join(
    rows: Sequence[tuple[Mapping[str, str], _T]],
    key: SeriesKey,
    agents: frozenset[AgentId],
    ns_label: str | None,
    warnings: list[str],
) -> dict[AgentId, _T]:
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

    namespaces_of: dict[str, int] = defaultdict(int)
    for agent in agents:
        namespaces_of[agent.name] += 1
    out: dict[AgentId, _T] = {}
    ambiguous: set[str] = set()
    for agent in agents:
        found: tuple[str | None, str]
        if ns_label is not None and (agent.namespace, agent.name) in exact:
            found = (agent.namespace, agent.name)
        elif (None, agent.name) in exact:
            if ns_label is not None and namespaces_of[agent.name] > 1:
                ambiguous.add(agent.name)
                continue
            found = (None, agent.name)
        else:
            continue
        out[agent] = exact[found]
    for name in sorted(ambiguous):
        warnings.append(
            f"{key}: the series of agent {name!r} carry no {ns_label!r} label, but agents of "
            "that name exist in several namespaces; they get no data (add the namespace label "
            "to the metrics)"
        )
    return out
