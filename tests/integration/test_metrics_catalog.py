"""Every catalog metric against a real Prometheus fed with backfilled history of known rates.

One server per module. 56 agents run at distinct constant rates, so each metric's value at
``AT`` is known in closed form; latency quantiles are checked against an independent
implementation of Prometheus' bucket interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    BackendConfig,
    PrometheusBackend,
    QueryError,
    fetch_range,
    fetch_samples,
    merge_needs,
)
from agentmedic_sandbox.prometheus import Series, counter, histogram, openmetrics_text

pytestmark = pytest.mark.prometheus

T0 = 1_700_000_000
"""Counters are 0 here (rate * (t - T0)); samples exist from T0 + 2000 on."""
AT_S = T0 + 3000
AT = datetime.fromtimestamp(AT_S, UTC)
STEP = 15
LATENCY_BOUNDS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOOL_BOUNDS = (0.05, 0.1, 0.5, 1.0)
NS = "agents"


@dataclass(frozen=True)
class Agent:
    """Per-second rates of one simulated agent."""

    name: str
    namespace: str | None  # the namespace label on its series; None: no label
    success: float
    error: float
    tokens_in: float
    tokens_out: float
    cost: float  # 0: the agent exports no cost series at all
    latency: Sequence[float]  # per-second observations per bucket, non-cumulative, + overflow
    tool_ok: float
    tool_err: float
    tool_latency: Sequence[float]

    @property
    def id(self) -> AgentId:
        return AgentId(self.namespace or NS, self.name)


def fleet() -> list[Agent]:
    agents = [
        Agent(
            name=f"bot-{i:02d}",
            namespace=NS,
            success=0.5 + 0.05 * i,
            error=0.01 * (i % 7),  # every 7th agent never fails: no error series at all
            tokens_in=40.0 + i,
            tokens_out=10.0 + i / 2,
            cost=0.0 if i % 11 == 0 else 0.001 * (1 + i),
            latency=(1 + i % 3, 2.0, 3 + i % 5, 1.0, float(i % 4), 0.5, 0.2 * (i % 2)),
            tool_ok=0.2 + 0.01 * i,
            tool_err=0.02 * (i % 3),
            tool_latency=(0.3, 1 + i % 2, 0.5, 0.1, 0.05 * (i % 3)),
        )
        for i in range(56)
    ]
    base = agents[3]
    agents += [
        Agent("dup", "team-a", 1.0, 0.1, 1, 1, 0.01, base.latency, 1, 0, base.tool_latency),
        Agent("dup", "team-b", 3.0, 0.9, 2, 2, 0.02, base.latency, 1, 1, base.tool_latency),
        Agent("legacy", None, 2.0, 0.5, 3, 3, 0.03, base.latency, 2, 1, base.tool_latency),
        Agent("elsewhere", "staging", 5.0, 5.0, 5, 5, 0.05, base.latency, 5, 5, base.tool_latency),
    ]
    return agents


IDLE = AgentId(NS, "idle")
GHOST = AgentId(NS, "ghost")
ELSEWHERE = AgentId(NS, "elsewhere")  # its metrics are in namespace "staging"
FLEET = fleet()
CHECKED = [a for a in FLEET if a.namespace != "staging"]


def _times() -> list[int]:
    return list(range(T0 + 2000, T0 + 3300 + 1, STEP))


def _counter(name: str, labels: dict[str, str], rate: float) -> Series:
    return counter(name, labels, [(t, rate * (t - T0)) for t in _times()])


def _histogram(
    name: str, labels: dict[str, str], bounds: Sequence[float], per_bucket: Sequence[float]
) -> list[Series]:
    cumulative = [sum(per_bucket[: i + 1]) for i in range(len(per_bucket))]
    points = [(t, [c * (t - T0) for c in cumulative], 0.0) for t in _times()]
    return histogram(name, labels, bounds, points)


def history() -> list[Series]:
    out: list[Series] = []
    for a in FLEET:
        lab = {"agent": a.name} | ({"namespace": a.namespace} if a.namespace else {})
        # Split executions over two models to prove the sum over label sets.
        for model, share in (("gpt-4o", 0.6), ("gpt-4o-mini", 0.4)):
            m = lab | {"model": model}
            out.append(
                _counter("agent_executions_total", m | {"status": "success"}, a.success * share)
            )
            if a.error:
                out.append(
                    _counter("agent_executions_total", m | {"status": "error"}, a.error * share)
                )
            out += _histogram(
                "agent_execution_duration_seconds",
                m,
                LATENCY_BOUNDS,
                [x * share for x in a.latency],
            )
            if a.cost:
                out.append(_counter("agent_cost_usd_total", m, a.cost * share))
        m = lab | {"model": "gpt-4o"}
        out.append(_counter("agent_tokens_total", m | {"type": "input"}, a.tokens_in))
        out.append(_counter("agent_tokens_total", m | {"type": "output"}, a.tokens_out))
        out.append(_counter("agent_tokens_total", m | {"type": "cached"}, 1000.0))  # not counted
        out.append(
            _counter(
                "agent_tool_calls_total", lab | {"tool": "search", "status": "success"}, a.tool_ok
            )
        )
        if a.tool_err:
            out.append(
                _counter(
                    "agent_tool_calls_total",
                    lab | {"tool": "search", "status": "error"},
                    a.tool_err,
                )
            )
        out += _histogram(
            "agent_tool_duration_seconds", lab | {"tool": "search"}, TOOL_BOUNDS, a.tool_latency
        )
    # Quality scores under two names, averaged over both: an eval at 0.9 once a second
    # and a user rating at 0.6 every other second make a mean of 0.8 for every agent.
    for a in FLEET:
        lab = {"agent": a.name} | ({"namespace": a.namespace} if a.namespace else {})
        for name, per_second, mean in (("eval", 1.0, 0.9), ("user", 0.5, 0.6)):
            q = lab | {"model": "gpt-4o", "name": name}
            out.append(_counter("agent_quality_score_count", q, per_second))
            out.append(_counter("agent_quality_score_sum", q, per_second * mean))
    # Spend as LiteLLM's proxy exports it: its own label for the caller, its own namespace.
    out.append(
        _counter(
            "litellm_spend_metric_total",
            {"end_user": "bot-01", "namespace": "litellm", "model": "gpt-4o"},
            0.25,
        )
    )
    # An idle agent: its counters exist but do not move.
    idle = {"agent": IDLE.name, "namespace": NS, "model": "gpt-4o"}
    out.append(_counter("agent_executions_total", idle | {"status": "success"}, 0.0))
    out += _histogram("agent_execution_duration_seconds", idle, LATENCY_BOUNDS, [0.0] * 7)
    out.append(_counter("agent_tool_calls_total", idle | {"tool": "x", "status": "success"}, 0.0))
    return out


def bucket_quantile(q: float, bounds: Sequence[float], per_bucket: Sequence[float]) -> float:
    """Prometheus' histogram_quantile (promql/quantile.go, v2.42) over bucket rates."""
    upper = [*bounds, math.inf]
    counts = [sum(per_bucket[: i + 1]) for i in range(len(per_bucket))]
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next((i for i, c in enumerate(counts[:-1]) if c >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return upper[-2]
    start = 0.0 if b == 0 else upper[b - 1]
    count = counts[b] - (counts[b - 1] if b else 0)
    rank -= counts[b - 1] if b else 0
    return start + (upper[b] - start) * (rank / count)


def expected(a: Agent, metric: str, window: float) -> float | None:
    execs = a.success + a.error
    tokens = a.tokens_in + a.tokens_out
    tools = a.tool_ok + a.tool_err
    return {
        "executions": execs * window,
        "success_rate": a.success / execs,
        "error_rate": a.error / execs,
        "latency_p50_ms": 1000 * bucket_quantile(0.5, LATENCY_BOUNDS, a.latency),
        "latency_p95_ms": 1000 * bucket_quantile(0.95, LATENCY_BOUNDS, a.latency),
        "latency_p99_ms": 1000 * bucket_quantile(0.99, LATENCY_BOUNDS, a.latency),
        "tokens": tokens * window,
        "tokens_per_execution": tokens / execs,
        "cost_usd": a.cost * window if a.cost else None,
        "cost_per_execution": a.cost / execs if a.cost else None,
        "tool_error_rate": a.tool_err / tools,
        "tool_latency_p95_ms": 1000 * bucket_quantile(0.95, TOOL_BOUNDS, a.tool_latency),
        "quality_score": (1.0 * 0.9 + 0.5 * 0.6) / 1.5,
    }[metric]


IDLE_EXPECTED: dict[str, float | None] = {
    "executions": 0.0,
    "success_rate": None,
    "error_rate": None,
    "latency_p50_ms": None,
    "latency_p95_ms": None,
    "latency_p99_ms": None,
    "tokens": 0.0,
    "tokens_per_execution": None,
    "cost_usd": None,
    "cost_per_execution": None,
    "tool_error_rate": None,
    "tool_latency_p95_ms": None,
    "quality_score": None,
}


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory) -> str:
    return prometheus_module_factory(backfill=openmetrics_text(history())).url


@pytest.fixture
async def backend(prom_url: str) -> Iterator[PrometheusBackend]:
    async with PrometheusBackend(BackendConfig(url=prom_url, query_stats=True)) as b:
        yield b


def keys(window: timedelta) -> list[SeriesKey]:
    return [SeriesKey(m, None, window) for m in BUILTIN_METRICS]


ALL_AGENTS = [a.id for a in CHECKED] + [IDLE, GHOST, ELSEWHERE]


@pytest.mark.parametrize(
    "window", [timedelta(minutes=5), timedelta(minutes=10), timedelta(seconds=90)]
)
async def test_every_catalog_metric_equals_the_known_value_for_every_agent(backend, window):
    needs = {k: ALL_AGENTS for k in keys(window)}
    table, stats = await fetch_samples(backend, needs, AT)

    assert not stats.errors
    assert stats.queries == len(BUILTIN_METRICS)  # one per metric, for 60 agents
    assert stats.server_seconds is not None
    assert stats.server_seconds > 0
    for a in CHECKED:
        for key in keys(window):
            want = expected(a, key.metric, window.total_seconds())
            got = table[a.id][key]
            if want is None:
                assert got is None, f"{a.id} {key}: {got} != no data"
            else:
                assert got == pytest.approx(want, rel=1e-9), f"{a.id} {key}: {got} != {want}"


async def test_an_agent_that_never_failed_has_error_rate_zero_not_no_data(backend):
    never_failed = AgentId(NS, "bot-07")
    table, _ = await fetch_samples(
        backend, {k: [never_failed] for k in keys(timedelta(minutes=5))}, AT
    )
    assert table[never_failed][SeriesKey("error_rate", None, timedelta(minutes=5))] == 0.0


async def test_an_agent_without_cost_series_has_no_spend_data_rather_than_zero(backend):
    unpriced = AgentId(NS, "bot-11")  # its model has no price: the SDK exports no cost
    table, _ = await fetch_samples(backend, {k: [unpriced] for k in keys(timedelta(minutes=5))}, AT)
    assert table[unpriced][SeriesKey("cost_usd", None, timedelta(minutes=5))] is None
    assert table[unpriced][SeriesKey("cost_per_execution", None, timedelta(minutes=5))] is None
    assert table[unpriced][SeriesKey("tokens", None, timedelta(minutes=5))] is not None


async def test_idle_agent_has_zero_counts_and_no_ratios(backend):
    table, stats = await fetch_samples(backend, {k: [IDLE] for k in keys(timedelta(minutes=5))}, AT)
    assert not stats.errors
    assert {k.metric: v for k, v in table[IDLE].items()} == IDLE_EXPECTED


async def test_agents_without_metrics_come_back_as_no_data(backend):
    table, stats = await fetch_samples(
        backend, {k: [GHOST, ELSEWHERE] for k in keys(timedelta(minutes=5))}, AT
    )
    assert not stats.errors
    for agent in (GHOST, ELSEWHERE):
        assert set(table[agent]) == set(keys(timedelta(minutes=5)))
        assert all(v is None for v in table[agent].values()), table[agent]


async def test_same_name_in_two_namespaces_gets_each_its_own_value(backend):
    a, b = AgentId("team-a", "dup"), AgentId("team-b", "dup")
    key = SeriesKey("executions", None, timedelta(minutes=5))
    table, _ = await fetch_samples(backend, {key: [a, b]}, AT)
    assert table[a][key] == pytest.approx(1.1 * 300)
    assert table[b][key] == pytest.approx(3.9 * 300)


async def test_series_without_namespace_label_match_the_only_agent_of_that_name(backend):
    key = SeriesKey("executions", None, timedelta(minutes=5))
    table, _ = await fetch_samples(backend, {key: [AgentId(NS, "legacy")]}, AT)
    assert table[AgentId(NS, "legacy")][key] == pytest.approx(2.5 * 300)


async def test_unlabelled_series_shared_by_two_requested_namespaces_is_ambiguous(backend):
    key = SeriesKey("executions", None, timedelta(minutes=5))
    a, b = AgentId("ns-1", "legacy"), AgentId("ns-2", "legacy")
    table, stats = await fetch_samples(backend, {key: [a, b]}, AT)
    assert table[a][key] is None
    assert table[b][key] is None
    assert any("legacy" in w and "several namespaces" in w for w in stats.warnings)


async def test_without_namespace_label_every_agent_of_the_name_gets_the_summed_value(backend):
    key = SeriesKey("executions", None, timedelta(minutes=5))
    a = AgentId("anywhere", "dup")
    table, _ = await fetch_samples(backend, {key: [a]}, AT, namespace_label=None)
    assert table[a][key] == pytest.approx((1.1 + 3.9) * 300)


async def test_identical_needs_from_two_policies_are_sent_once(backend):
    key = SeriesKey("error_rate", None, timedelta(minutes=5))
    policy_a = {key: [AgentId(NS, "bot-01"), AgentId(NS, "bot-02")]}
    policy_b = {key: [AgentId(NS, "bot-02"), AgentId(NS, "bot-03")]}
    table, stats = await fetch_samples(backend, merge_needs(policy_a, policy_b), AT)
    assert stats.queries == 1
    assert set(table) == {AgentId(NS, "bot-01"), AgentId(NS, "bot-02"), AgentId(NS, "bot-03")}


async def test_raw_query_gets_placeholders_substituted(backend):
    key = SeriesKey(
        None,
        "sum by ({{agent_label}}, namespace) "
        '(rate(agent_executions_total{ {{agents}}, status="success" }[{{window}}]))',
        timedelta(minutes=5),
    )
    agents = [a.id for a in CHECKED[:5]]
    table, stats = await fetch_samples(backend, {key: agents}, AT)
    assert not stats.errors
    for a in CHECKED[:5]:
        assert table[a.id][key] == pytest.approx(a.success)


async def test_raw_query_without_agent_label_fails_naming_the_label(backend):
    bad = SeriesKey(
        None, "sum(rate(agent_executions_total{ {{agents}} }[{{window}}]))", timedelta(minutes=5)
    )
    good = SeriesKey("executions", None, timedelta(minutes=5))
    agent = AgentId(NS, "bot-01")
    table, stats = await fetch_samples(backend, {bad: [agent], good: [agent]}, AT)
    assert isinstance(stats.errors[bad], QueryError)
    assert "'agent' label" in str(stats.errors[bad])
    assert table[agent][bad] is None
    assert table[agent][good] is not None  # one bad condition does not spoil the others


async def test_raw_query_with_one_series_per_model_asks_for_aggregation(backend):
    key = SeriesKey(
        None, "rate(agent_executions_total{ {{agents}} }[{{window}}])", timedelta(minutes=5)
    )
    _, stats = await fetch_samples(backend, {key: [AgentId(NS, "bot-01")]}, AT)
    assert "sum by (agent, namespace)" in str(stats.errors[key])


async def test_raw_query_syntax_error_carries_prometheus_message(backend):
    key = SeriesKey(
        None, "sum by (agent) (rate(agent_executions_total[{{window}}])", timedelta(minutes=5)
    )
    _, stats = await fetch_samples(backend, {key: [AgentId(NS, "bot-01")]}, AT)
    error = stats.errors[key]
    assert isinstance(error, QueryError)
    assert error.error_type == "bad_data"
    assert "parse error" in error.message
    assert error.query is not None
    assert "[5m]" in error.query


async def test_range_fetch_returns_each_agents_points_over_time(backend):
    start, end = AT - timedelta(minutes=10), AT
    executions = SeriesKey("executions", None, timedelta(minutes=5))
    error_rate = SeriesKey("error_rate", None, timedelta(minutes=5))
    agents = [a.id for a in CHECKED[:10]] + [GHOST]
    table, stats = await fetch_range(
        backend, {executions: agents, error_rate: agents}, start, end, timedelta(minutes=1)
    )
    assert stats.queries == 2
    assert not stats.errors
    for a in CHECKED[:10]:
        points = table[a.id][executions]
        assert [t for t, _ in points] == [start + timedelta(minutes=m) for m in range(11)]
        assert all(v == pytest.approx((a.success + a.error) * 300) for _, v in points)
        assert all(
            v == pytest.approx(a.error / (a.success + a.error)) for _, v in table[a.id][error_rate]
        )
    assert table[GHOST][executions] == []


async def test_an_overridden_template_reads_another_teams_metric_names(backend):
    catalog = DEFAULT_CATALOG.with_overrides(
        {
            "cost_usd": "sum by ({{agent_label}}) "
            "(increase(litellm_spend_metric_total{ {{agents}} }[{{window}}]))"
        }
    )
    key = SeriesKey("cost_usd", None, timedelta(minutes=5), agent_label="end_user")
    agent = AgentId(NS, "bot-01")
    table, stats = await fetch_samples(backend, {key: [agent]}, AT, catalog)
    assert not stats.errors
    assert table[agent][key] == pytest.approx(0.25 * 300)
