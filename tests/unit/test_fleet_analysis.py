"""The fleet report's pure parts: quantiles, tiers, robust z-scores, and analyse()."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.series import AgentId
from agentmedic.metrics import QueryError, QueryResult, Sample
from agentmedic.report.fleet import FleetData, FleetQuery, analyse, gather, sort_rows
from agentmedic.report.render import CSV_COLUMNS, to_csv, to_json_dict
from agentmedic.report.stats import quantile, robust_z_scores, tiers

AT = datetime(2025, 8, 15, 12, 0, tzinfo=UTC)
QUERY = FleetQuery(at=AT, window=timedelta(hours=24))


def agent(name: str, namespace: str = "agents") -> AgentId:
    return AgentId(namespace, name)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_quantile_interpolates_like_the_inclusive_method(q: float) -> None:
    values = [3.0, 1.0, 10.0, 4.0, 7.5, 2.0]
    if 0 < q < 1 and q * 100 == int(q * 100):
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        assert quantile(values, q) == pytest.approx(cuts[int(q * 100) - 1])
    assert min(values) <= quantile(values, q) <= max(values)
    assert quantile(values, 0.0) == 1.0
    assert quantile(values, 1.0) == 10.0


def test_tiers_split_the_fleet_at_its_quartiles() -> None:
    latencies = {f"a{i}": float(v) for i, v in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9])}
    assigned, bounds = tiers(latencies)
    assert bounds == (3.0, 7.0)
    assert [assigned[f"a{i}"] for i in range(9)] == (["fast"] * 3 + ["normal"] * 3 + ["slow"] * 3)


def test_a_fleet_of_equals_is_all_normal_and_a_tiny_fleet_has_no_tiers() -> None:
    assert set(tiers({f"a{i}": 2.0 for i in range(6)})[0].values()) == {"normal"}
    assert tiers({"a": 1.0, "b": 9.0, "c": 5.0}) == ({}, None)


def test_robust_z_flags_the_outlier_not_its_neighbours() -> None:
    values = {f"a{i}": 100.0 + i for i in range(20)} | {"outlier": 400.0}
    scores, median = robust_z_scores(values)
    assert median == 110.0
    assert scores["outlier"] > 3.5
    assert all(abs(scores[f"a{i}"]) < 3.5 for i in range(20))


def test_robust_z_uses_mean_deviation_when_most_agents_share_a_value() -> None:
    values = {f"a{i}": 0.0 for i in range(10)} | {"fails": 0.4, "sometimes": 0.02}
    scores, median = robust_z_scores(values)
    assert median == 0.0
    assert scores["fails"] > 3.5
    assert scores["a0"] == 0.0
    assert robust_z_scores({f"a{i}": 1.0 for i in range(8)}) == ({}, 1.0)
    assert robust_z_scores({"a": 1.0, "b": 100.0}) == ({}, None)


def data(**values: dict[AgentId, float]) -> FleetData:
    return FleetData(values=dict(values), queries=10)


def test_missing_numbers_stay_unknown_and_idle_agents_have_no_ratios() -> None:
    busy, idle, unpriced = agent("busy"), agent("idle"), agent("unpriced")
    report = analyse(
        data(
            executions={busy: 100.0, idle: 0.0, unpriced: 50.0},
            cost_usd={busy: 3.0, idle: 0.0},
            success_rate={busy: 0.9, unpriced: 1.0},
            latency_p95_ms={busy: 2000.0},
        ),
        QUERY,
    )
    rows = {r.agent: r for r in report.agents}
    assert rows[busy].cost_share == 1.0
    assert rows[busy].cost_per_execution == pytest.approx(0.03)
    assert rows[busy].error_rate == pytest.approx(0.1)
    assert rows[idle].success_rate is None
    assert rows[idle].cost_per_execution is None
    assert rows[unpriced].cost_usd is None
    assert rows[unpriced].cost_share is None
    assert rows[unpriced].latency_p95_ms is None
    assert report.fleet.active_agents == 2
    assert report.fleet.success_rate == pytest.approx((90 + 50) / 150)
    assert [r.agent for r in report.agents] == [busy, idle, unpriced]  # dearest first


def test_agents_below_min_executions_get_no_tier_and_no_flags() -> None:
    agents = {agent(f"a{i}"): 100.0 for i in range(8)} | {agent("rare"): 5.0}
    latency = {a: 1000.0 + 10 * i for i, a in enumerate(agents)} | {agent("rare"): 90_000.0}
    report = analyse(
        data(executions=agents, latency_p95_ms=latency, success_rate=dict.fromkeys(agents, 1.0)),
        QUERY,
    )
    rare = next(r for r in report.agents if r.agent == agent("rare"))
    assert rare.tier is None
    assert rare.anomalies == []
    assert report.fleet.tier_bounds_ms is not None
    assert report.fleet.tier_bounds_ms[1] < 2000  # the rare agent did not shape the bounds


def test_model_comes_from_agent_info_then_from_the_busiest_model() -> None:
    a, b = agent("a"), agent("b")
    report = analyse(
        FleetData(
            values={"executions": {a: 10.0, b: 10.0}},
            model_info={a: "gpt-4o-mini"},
            model_executions={a: {"gpt-4o": 9.0}, b: {"gpt-4o": 3.0, "o4-mini": 7.0}},
        ),
        QUERY,
    )
    models = {r.agent: r.model for r in report.agents}
    assert models == {a: "gpt-4o-mini", b: "o4-mini"}


def test_tools_are_ranked_with_enough_calls_and_attached_to_their_agent() -> None:
    a = agent("a")
    report = analyse(
        FleetData(
            values={"executions": {a: 100.0}},
            tools={
                (a, "fast"): {"calls": 100.0, "error_rate": 0.0, "latency_p95_ms": 50.0},
                (a, "slow"): {"calls": 50.0, "error_rate": 0.1, "latency_p95_ms": 9000.0},
                (a, "rare"): {"calls": 2.0, "error_rate": 0.5, "latency_p95_ms": 20000.0},
            },
        ),
        QUERY,
        min_tool_calls=10,
    )
    row = report.agents[0]
    assert row.slowest_tool is not None
    assert row.slowest_tool.tool == "rare"  # the agent's own view keeps every tool
    assert row.most_error_prone_tool is not None
    assert row.most_error_prone_tool.tool == "rare"
    assert [t.tool for t in report.slowest_tools] == ["slow", "fast"]
    assert [t.tool for t in report.most_error_prone_tools] == ["slow"]


def test_sort_puts_unknowns_last() -> None:
    a, b, c = agent("a"), agent("b"), agent("c")
    report = analyse(
        data(
            executions={a: 10.0, b: 10.0, c: 10.0},
            success_rate={a: 0.5, b: 0.99},
            latency_p95_ms={b: 10.0, c: 500.0},
        ),
        QUERY,
    )
    assert [r.agent.name for r in sort_rows(report.agents, "errors")] == ["a", "b", "c"]
    assert [r.agent.name for r in sort_rows(report.agents, "latency")] == ["c", "b", "a"]
    assert [r.agent.name for r in sort_rows(report.agents, "name")] == ["a", "b", "c"]


def test_json_and_csv_say_no_data_as_null_and_empty() -> None:
    a = agent("a")
    report = analyse(data(executions={a: 0.0}), QUERY)
    doc = to_json_dict(report)
    assert doc["schema"] == "agentmedic.io/fleet-report/v1"
    assert doc["at"] == "2025-08-15T12:00:00Z"
    assert doc["window"] == "1d"
    assert doc["agents"][0]["successRate"] is None
    assert doc["fleet"]["tierBoundsMs"] is None
    lines = to_csv(report).splitlines()
    assert lines[0].split(",") == CSV_COLUMNS
    assert lines[1].startswith("agents,a,,0.0,,")


def test_namespace_filter_is_a_quoted_matcher() -> None:
    query = FleetQuery(at=AT, window=timedelta(hours=1), namespace='team "a"')
    assert query.matcher() == 'agent!="", namespace="team \\"a\\""'
    texts = query.queries()
    assert len(texts) == 10
    assert all('namespace="team \\"a\\""' in t for t in texts.values())
    assert "by (agent, namespace, tool" in texts["tool_calls"]
    with pytest.raises(ValueError, match="namespace label"):
        FleetQuery(at=AT, window=timedelta(hours=1), namespace="x", namespace_label=None).matcher()


class FakeBackend:
    """Answers by query name; one query fails."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.sent.append(promql)
        if "tool_duration" in promql:
            raise QueryError("bad_data: boom", query=promql)
        labels = {"agent": "a", "namespace": "agents", "model": "gpt-4o", "tool": "t"}
        return QueryResult("vector", samples=(Sample(labels, 5.0),))

    async def query_range(self, *args: object) -> object:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


async def test_gather_sends_ten_queries_and_keeps_going_when_one_fails() -> None:
    backend = FakeBackend()
    progress: list[tuple[int, int, str]] = []
    result = await gather(
        backend,  # type: ignore[arg-type]
        QUERY,
        on_progress=lambda done, total, what: progress.append((done, total, what)),
    )
    assert len(backend.sent) == 10
    assert [p[0] for p in progress] == list(range(1, 11))
    assert result.values["executions"] == {agent("a"): 5.0}
    assert result.model_info == {agent("a"): "gpt-4o"}
    assert any("tool_latency_p95_ms" in w and "boom" in w for w in result.warnings)
    assert "latency_p95_ms" not in result.tools.get((agent("a"), "t"), {})
