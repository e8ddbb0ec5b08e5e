"""Batching and joining, with an in-memory MetricsBackend (the join needs no server).

The same behaviour against a real Prometheus is in tests/integration/test_metrics_catalog.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    MetricsUnavailable,
    QueryError,
    QueryResult,
    RangeResult,
    RangeSeries,
    Sample,
    UnavailableReason,
    build_query,
    fetch_range,
    fetch_samples,
    merge_needs,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
W = timedelta(minutes=5)
ERRORS = SeriesKey("error_rate", None, W)
EXECS = SeriesKey("executions", None, W)


def vector(*rows: tuple[Mapping[str, str], float]) -> QueryResult:
    return QueryResult("vector", samples=tuple(Sample(labels, value) for labels, value in rows))


class FakeBackend:
    """Answers every query with ``answer(promql)``; records queries and peak concurrency."""

    def __init__(self, answer: Callable[[str], QueryResult | Exception]) -> None:
        self.answer = answer
        self.queries: list[str] = []
        self.in_flight = 0
        self.peak = 0

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.queries.append(promql)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0)  # let the other queries start, to measure concurrency
        await asyncio.sleep(0)
        self.in_flight -= 1
        result = self.answer(promql)
        if isinstance(result, Exception):
            raise result
        return result

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        self.queries.append(promql)
        t = start.timestamp()
        return RangeResult(
            series=(
                RangeSeries({"agent": "a", "namespace": "ns"}, ((t, 1.0), (t + 60, math.nan))),
                RangeSeries({"agent": "b", "namespace": "ns"}, ((t, 2.0), (t + 60, 3.0))),
            )
        )

    async def aclose(self) -> None:
        pass


def agents(n: int, ns: str = "ns") -> list[AgentId]:
    return [AgentId(ns, f"agent-{i}") for i in range(n)]


@pytest.mark.parametrize("n", [1, 10, 1000])
async def test_queries_per_cycle_do_not_grow_with_the_number_of_agents(n):
    fake = FakeBackend(lambda q: vector())
    keys = [ERRORS, EXECS, SeriesKey("latency_p95_ms", None, W)]
    await fetch_samples(fake, {k: agents(n) for k in keys}, AT)
    assert len(fake.queries) == 3


async def test_no_data_is_none_and_zero_stays_zero():
    fake = FakeBackend(
        lambda q: vector(
            ({"agent": "agent-0", "namespace": "ns"}, 0.0),
            ({"agent": "agent-1", "namespace": "ns"}, math.nan),
        )
    )
    table, _ = await fetch_samples(fake, {ERRORS: agents(3)}, AT)
    assert table[AgentId("ns", "agent-0")][ERRORS] == 0.0
    assert table[AgentId("ns", "agent-1")][ERRORS] is None  # NaN: 0/0, nothing ran
    assert table[AgentId("ns", "agent-2")][ERRORS] is None  # absent


async def test_every_requested_pair_is_in_the_table():
    fake = FakeBackend(lambda q: vector())
    needs = {ERRORS: agents(2), EXECS: agents(1)}
    table, _ = await fetch_samples(fake, needs, AT)
    assert table == {
        AgentId("ns", "agent-0"): {ERRORS: None, EXECS: None},
        AgentId("ns", "agent-1"): {ERRORS: None},
    }


async def test_concurrency_is_bounded():
    fake = FakeBackend(lambda q: vector())
    needs = {SeriesKey("executions", None, timedelta(minutes=m)): agents(2) for m in range(1, 21)}
    _, stats = await fetch_samples(fake, needs, AT, max_concurrency=3)
    assert stats.queries == 20
    assert fake.peak == 3


async def test_one_failing_key_is_reported_and_the_others_are_fetched():
    def answer(q: str) -> QueryResult | Exception:
        if "histogram_quantile" in q:
            return QueryError("boom", error_type="execution")
        return vector(({"agent": "agent-0", "namespace": "ns"}, 5.0))

    latency = SeriesKey("latency_p95_ms", None, W)
    table, stats = await fetch_samples(
        FakeBackend(answer), {EXECS: agents(1), latency: agents(1)}, AT
    )
    assert table[AgentId("ns", "agent-0")] == {EXECS: 5.0, latency: None}
    assert list(stats.errors) == [latency]
    assert "histogram_quantile" in (stats.errors[latency].query or "")


async def test_backend_down_for_every_query_raises_unavailable():
    down = MetricsUnavailable(UnavailableReason.CONNECTION_FAILED, "refused")
    with pytest.raises(MetricsUnavailable, match="refused"):
        await fetch_samples(FakeBackend(lambda q: down), {EXECS: agents(1), ERRORS: agents(1)}, AT)


async def test_unknown_metric_fails_its_key_without_a_query():
    fake = FakeBackend(lambda q: vector())
    bogus = SeriesKey("cost_eur", None, W)
    _, stats = await fetch_samples(fake, {bogus: agents(1), EXECS: agents(1)}, AT)
    assert "unknown metric 'cost_eur'" in str(stats.errors[bogus])
    assert len(fake.queries) == 1


async def test_a_raw_query_returning_a_scalar_is_a_query_error_naming_the_label():
    fake = FakeBackend(lambda q: QueryResult("scalar", scalar=1.0))
    raw = SeriesKey(None, "vector(1)", W)
    _, stats = await fetch_samples(fake, {raw: agents(1)}, AT)
    assert "instant vector with one sample per agent, labelled 'agent'" in str(stats.errors[raw])


async def test_a_raw_query_with_another_agent_label_is_joined_on_that_label():
    fake = FakeBackend(lambda q: vector(({"bot": "agent-0"}, 7.0)))
    raw = SeriesKey(None, "sum by ({{agent_label}}) (x{ {{agents}} })", W, agent_label="bot")
    table, stats = await fetch_samples(fake, {raw: agents(1)}, AT)
    assert fake.queries == ['sum by (bot) (x{ bot="agent-0", namespace="ns" })']
    assert table[AgentId("ns", "agent-0")][raw] == 7.0
    assert not stats.errors


async def test_samples_of_another_namespace_are_not_taken_for_this_agent():
    fake = FakeBackend(lambda q: vector(({"agent": "agent-0", "namespace": "staging"}, 9.0)))
    table, _ = await fetch_samples(fake, {EXECS: agents(1, ns="prod")}, AT)
    assert table[AgentId("prod", "agent-0")][EXECS] is None


async def test_empty_agent_sets_send_nothing():
    fake = FakeBackend(lambda q: vector())
    table, stats = await fetch_samples(fake, {EXECS: []}, AT)
    assert table == {}
    assert stats.queries == 0
    assert fake.queries == []


def test_build_query_groups_by_agent_and_namespace_unless_told_otherwise():
    both = build_query(EXECS, agents(2))
    assert "sum by (agent, namespace)" in both
    assert 'agent=~"agent-0|agent-1"' in both
    assert "sum by (agent) " in build_query(EXECS, agents(2), namespace_label=None)
    assert "sum by (agent) " in build_query(EXECS, agents(1), namespace_label="agent")


def test_build_query_substitutes_raw_placeholders_and_rejects_unknown_ones():
    raw = SeriesKey(None, "sum by ({{agent_label}}) (rate(x{ {{agents}} }[{{window}}]))", W)
    assert (
        build_query(raw, agents(1))
        == 'sum by (agent) (rate(x{ agent="agent-0", namespace="ns" }[5m]))'
    )
    with pytest.raises(QueryError, match=r"unknown placeholder \{\{windw\}\}"):
        build_query(SeriesKey(None, "rate(x[{{windw}}])", W), agents(1))


def test_a_raw_query_selects_only_the_namespaces_of_its_agents():
    raw = SeriesKey(None, "sum by (agent) (rate(x{ {{agents}} }[{{window}}]))", W)
    two = [AgentId("team-a", "bot"), AgentId("team.b", "bot")]
    assert build_query(raw, two) == (
        'sum by (agent) (rate(x{ agent="bot", namespace=~"team-a|team\\\\.b" }[5m]))'
    )


def test_a_raw_query_matches_only_agents_when_the_metrics_carry_no_namespace():
    raw = SeriesKey(None, "sum by (agent) (x{ {{agents}} })", W)
    assert build_query(raw, agents(1), namespace_label=None) == (
        'sum by (agent) (x{ agent="agent-0" })'
    )


def test_merge_needs_unions_agents_per_key():
    merged = merge_needs({EXECS: agents(2)}, {EXECS: agents(3)[1:], ERRORS: agents(1)})
    assert merged == {EXECS: set(agents(3)), ERRORS: set(agents(1))}


async def test_range_fetch_drops_nan_points_and_converts_times():
    fake = FakeBackend(lambda q: vector())
    needs = {EXECS: [AgentId("ns", "a"), AgentId("ns", "b"), AgentId("ns", "c")]}
    table, stats = await fetch_range(
        fake, needs, AT, AT + timedelta(minutes=1), timedelta(minutes=1)
    )
    assert stats.queries == 1
    assert table[AgentId("ns", "a")][EXECS] == [(AT, 1.0)]
    assert table[AgentId("ns", "b")][EXECS] == [(AT, 2.0), (AT + timedelta(minutes=1), 3.0)]
    assert table[AgentId("ns", "c")][EXECS] == []
