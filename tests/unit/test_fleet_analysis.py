"""The fleet report's pure parts: quantiles, tiers, robust z-scores, and analyse()."""

from __future__ import annotations

import json
import math
import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.series import AgentId
from agentmedic.metrics import QueryError, QueryResult, Sample
from agentmedic.report.fleet import FleetData, FleetQuery, analyse, gather, sort_rows
from agentmedic.report.render import CSV_COLUMNS, to_csv, to_json_dict
from agentmedic.report.stats import SCORE_CAP, Floors, anomalies, quantile, robust_z_scores, tiers

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


def test_tiers_split_only_at_natural_breaks_in_the_fleet() -> None:
    latencies = {f"quick{i}": 800.0 + 10 * i for i in range(3)}
    latencies |= {f"usual{i}": 3000.0 + 50 * i for i in range(10)}
    latencies |= {f"laggard{i}": 12_000.0 + 100 * i for i in range(2)}
    assigned, bounds = tiers(latencies, min_gap=100)
    assert bounds == (820.0, 12_000.0)
    assert {k for k, t in assigned.items() if t == "fast"} == {"quick0", "quick1", "quick2"}
    assert {k for k, t in assigned.items() if t == "slow"} == {"laggard0", "laggard1"}
    assert sum(t == "normal" for t in assigned.values()) == 10


def test_tiers_never_split_4_52_s_from_4_53_s() -> None:
    # The reported case: a fleet spread in hundredths of a second, no real difference.
    latencies = {f"a{i}": 4500.0 + 10 * i for i in range(8)}  # 4.50 s .. 4.57 s
    assigned, bounds = tiers(latencies, min_gap=100)
    assert assigned["a2"] == assigned["a3"] == "normal"  # 4.52 s and 4.53 s
    assert set(assigned.values()) == {"normal"}
    assert bounds == (None, None)


@pytest.mark.parametrize("seed", range(20))
def test_agents_within_a_quarter_of_each_other_share_a_tier(seed: int) -> None:
    rng = random.Random(seed)
    latencies = {f"a{i}": rng.lognormvariate(8, 0.8) for i in range(rng.randint(4, 60))}
    assigned, _ = tiers(latencies)
    order = ["fast", "normal", "slow"]
    for a, x in latencies.items():
        for b, y in latencies.items():
            if x <= y < x * 1.25:
                assert assigned[a] == assigned[b], (x, y)
            if x < y:  # tiers never cross: a faster agent is never in a slower tier
                assert order.index(assigned[a]) <= order.index(assigned[b])
    median_agent = sorted(latencies, key=latencies.__getitem__)[(len(latencies) - 1) // 2]
    assert assigned[median_agent] == "normal"


def test_a_fleet_of_equals_is_all_normal_and_a_tiny_fleet_has_no_tiers() -> None:
    assert set(tiers({f"a{i}": 2.0 for i in range(6)})[0].values()) == {"normal"}
    assert tiers({"a": 1.0, "b": 9.0, "c": 5.0}) == ({}, None)


def test_a_gap_below_the_absolute_minimum_is_no_tier_boundary() -> None:
    latencies = {"a": 10.0, "b": 11.0, "c": 40.0, "d": 41.0, "e": 42.0}  # ms: 4x, but 30 ms
    assert set(tiers(latencies, min_gap=100)[0].values()) == {"normal"}
    assert tiers(latencies)[0]["a"] == "fast"


def test_a_constant_fleet_flags_nobody_and_scores_zero() -> None:
    values = {f"a{i}": 1500.0 for i in range(10)}
    flagged, scores, median = anomalies(values, Floors(scale=1.0, gap=50.0))
    assert flagged == {}
    assert median == 1500.0
    assert set(scores.values()) == {0.0}


def test_one_token_above_a_constant_fleet_is_not_an_anomaly() -> None:
    # The reported case: 1,501 tokens against a median of 1,500 scored 95,433,933,989.
    values = {f"a{i}": 1500.0 for i in range(10)} | {"x": 1501.0}
    flagged, scores, _ = anomalies(values, Floors(scale=1.0, gap=50.0))
    assert flagged == {}
    assert 0 < scores["x"] < 1
    # Nor is float noise from rate() around one value, without any absolute floor.
    noisy = {f"a{i}": 1500.0 + i * 1e-9 for i in range(10)} | {"x": 1501.0}
    flagged, scores, _ = anomalies(noisy)
    assert flagged == {}
    assert abs(scores["x"]) < 1


def test_a_genuine_threefold_outlier_is_flagged() -> None:
    values = {f"a{i}": 1500.0 + 20 * (i % 5) for i in range(20)} | {"bloated": 4500.0}
    flagged, scores, median = anomalies(values, Floors(scale=1.0, gap=50.0))
    assert set(flagged) == {"bloated"}
    assert median == 1540.0
    # Far, and said in a human-sized number: the scale is floored at 5% of the median.
    assert flagged["bloated"] == scores["bloated"] == pytest.approx((4500 - 1540) / 77, abs=0.01)
    assert scores["bloated"] < SCORE_CAP


def test_a_flag_needs_both_a_high_z_score_and_a_quarter_above_the_median() -> None:
    # A tight fleet around 1000: 1200 is 4 (floored) sigmas off, but only 20% above.
    tight = {f"a{i}": 1000.0 + (i % 3) - 1 for i in range(30)} | {"x": 1200.0}
    raw, _ = robust_z_scores(tight)
    assert raw["x"] > 3.5
    assert anomalies(tight)[0] == {}
    # A spread fleet: 1500 is 50% above the median, but within its usual spread.
    spread = {f"a{i}": 500.0 + 100 * i for i in range(10)} | {"x": 1500.0}
    raw, median = robust_z_scores(spread)
    assert median == 1000.0
    assert raw["x"] < 3.5
    assert anomalies(spread)[0] == {}


def test_error_rates_need_five_points_above_a_median_of_zero() -> None:
    values = {f"a{i}": 0.0 for i in range(10)} | {"fails": 0.4, "sometimes": 0.02}
    flagged, scores, median = anomalies(values, Floors(scale=0.01, gap=0.05))
    assert median == 0.0
    assert set(flagged) == {"fails"}
    assert scores["a0"] == 0.0
    assert math.isfinite(scores["sometimes"])


def test_robust_z_needs_a_fleet_to_compare_with() -> None:
    assert robust_z_scores({"a": 1.0, "b": 100.0}) == ({}, None)
    assert anomalies({"a": 1.0, "b": 100.0, "c": 1.0, "d": 1.0}) == ({}, {}, None)


def test_the_outlier_is_flagged_not_its_neighbours() -> None:
    values = {f"a{i}": 100.0 + i for i in range(20)} | {"outlier": 400.0}
    flagged, _, median = anomalies(values)
    assert median == 110.0
    assert set(flagged) == {"outlier"}


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
    # The rare agent's 90 s did not make a slow tier of the others' 1.00 s to 1.07 s.
    assert report.fleet.tier_bounds_ms == (None, None)
    assert {r.tier for r in report.agents if r.agent != agent("rare")} == {"normal"}


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


def test_the_json_of_a_near_constant_fleet_has_no_flags_and_small_finite_scores() -> None:
    agents = {agent(f"a{i}"): 100.0 for i in range(10)}
    tokens = dict.fromkeys(agents, 1500.0) | {agent("a0"): 1501.0}
    latency = {a: 4500.0 + 10 * i for i, a in enumerate(agents)}
    report = analyse(
        data(
            executions=agents,
            tokens_per_execution=tokens,
            latency_p95_ms=latency,
            success_rate=dict.fromkeys(agents, 1.0),
            cost_usd=dict.fromkeys(agents, 0.2),
        ),
        QUERY,
    )
    doc = json.loads(json.dumps(to_json_dict(report), allow_nan=False))
    rows = {r["agent"]: r for r in doc["agents"]}
    assert all(r["anomalies"] == [] for r in rows.values())
    assert rows["a0"]["scores"]["tokensPerExecution"] == 0.01
    assert all(abs(s) <= 1 for r in rows.values() for s in r["scores"].values())
    assert set(rows["a0"]["scores"]) == {
        "costPerExecution",
        "errorRate",
        "latencyP95Ms",
        "tokensPerExecution",
    }
    assert {r["tier"] for r in rows.values()} == {"normal"}
    assert doc["fleet"]["tierBoundsMs"] == {"fast": None, "slow": None}


def test_the_json_names_the_tier_bounds_and_the_flagged_agents_score() -> None:
    agents = {agent(f"a{i}"): 100.0 for i in range(10)}
    latency = {a: 2000.0 + 20 * i for i, a in enumerate(agents)} | {agent("a9"): 9000.0}
    report = analyse(
        data(executions=agents, latency_p95_ms=latency, success_rate=dict.fromkeys(agents, 1.0)),
        QUERY,
    )
    doc = to_json_dict(report)
    assert doc["fleet"]["tierBoundsMs"] == {"fast": None, "slow": 9000.0}
    [slow] = [r for r in doc["agents"] if r["tier"] == "slow"]
    assert slow["agent"] == "a9"
    [flag] = slow["anomalies"]
    assert flag["metric"] == "latency_p95_ms"
    assert flag["fleetMedian"] == 2090.0
    assert flag["score"] == round((9000 - 2090) / (0.05 * 2090), 2)
