"""``agentmedic fleet`` against a real Prometheus holding the SDK's series for 200 agents.

The fleet is recorded with the SDK (each agent on its own registry, its series labelled
with its namespace as a scrape would), backfilled, and the report's JSON is compared with
values computed here from the script: spend and shares, executions, success rates, p95
latencies (Prometheus' bucket interpolation re-implemented), tokens per execution, models,
tools, tiers and anomaly flags (checked against independent implementations of the
documented rules).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentmedic.cli.main import main
from agentmedic.instrument import AgentMonitor, LLMCall, ModelPrice, PriceTable, ToolCallRecord
from agentmedic.instrument.series import (
    AGENT_INFO,
    EXECUTION_DURATION_BUCKETS,
    TOOL_DURATION_BUCKETS,
)
from agentmedic.metrics import SERIES
from agentmedic_sandbox.fleet_sim import registry_series
from agentmedic_sandbox.prometheus import Series, openmetrics_text

pytestmark = pytest.mark.prometheus

WINDOW_S = 3600
AT_S = 1_700_006_400  # a multiple of 60
START_S = AT_S - WINDOW_S
PRICES = {
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "o4-mini": (1.10, 0.275, 4.40),
}
PRICE_TABLE = PriceTable(
    {m: ModelPrice(input=i, cached_input=c, output=o) for m, (i, c, o) in PRICES.items()}
)
TOOLS = ("search_kb", "crm_lookup", "send_email", "web_fetch")


@dataclass
class Profile:
    namespace: str
    name: str
    models: list[str]  # in order of use; the last one is current
    runs: int  # executions in the window
    error_rate: float
    latency: float  # median seconds
    tokens: int
    tools: dict[str, tuple[float, float]]  # name -> (median seconds, error rate)


@dataclass
class Run:
    at: float
    model: str
    ok: bool
    latency: float
    input_tokens: int
    output_tokens: int
    tools: list[tuple[str, float, bool]] = field(default_factory=list)

    @property
    def cost(self) -> float:
        i, _, o = PRICES[self.model]
        return (self.input_tokens * i + self.output_tokens * o) / 1e6


def profiles() -> list[Profile]:
    rng = random.Random(2024)
    out = []
    for i in range(200):
        namespace = "agents" if i < 150 else "research"
        first = rng.choice(list(PRICES))
        models = [first] if i % 9 else [first, rng.choice([m for m in PRICES if m != first])]
        tools = {
            t: (rng.uniform(0.05, 1.5), rng.choice([0.0, 0.01, 0.03]))
            for t in rng.sample(TOOLS, rng.randint(1, 3))
        }
        out.append(
            Profile(
                namespace,
                f"agent-{i:03d}",
                models,
                runs=rng.randint(40, 160) if i % 25 else rng.randint(3, 12),  # some quiet ones
                error_rate=rng.uniform(0.0, 0.05),
                latency=rng.uniform(1.0, 4.0),
                tokens=rng.randint(600, 1800),
                tools=tools,
            )
        )
    # Engineered outliers, and one name in two namespaces.
    out[10] = Profile("agents", "flaky-bot", ["gpt-4o-mini"], 150, 0.45, 2.0, 900, {})
    out[11] = Profile("agents", "slow-bot", ["gpt-4.1-mini"], 120, 0.01, 70.0, 900, {})
    out[12] = Profile("agents", "chatty-bot", ["gpt-4o"], 120, 0.01, 2.0, 24_000, {})
    out[13] = Profile(
        "agents",
        "stuck-bot",
        ["gpt-4o-mini"],
        150,
        0.02,
        2.5,
        900,
        {"legacy_erp": (25.0, 0.3), "search_kb": (0.2, 0.0)},
    )
    out[14] = Profile("agents", "idle-bot", ["gpt-4o-mini"], 0, 0.0, 1.0, 900, {})
    out[160] = Profile("research", "shared-bot", ["o4-mini"], 80, 0.02, 2.0, 1000, {})
    out[161] = Profile("agents", "shared-bot", ["gpt-4o"], 50, 0.02, 2.0, 1000, {})
    return out


def record_fleet() -> tuple[list[Series], dict[tuple[str, str], list[Run]], list[Profile]]:
    """Warm-up executions (every model, every tool) before the window, so every series has
    a sample at the window's start; then the window's executions, with snapshots at its
    start, middle and end."""
    rng = random.Random(7)
    fleet = profiles()
    keep = {*SERIES.values(), AGENT_INFO}
    monitors = {}
    registries = {}
    for p in fleet:
        registries[(p.namespace, p.name)] = registry = CollectorRegistry()
        monitors[(p.namespace, p.name)] = AgentMonitor(p.name, registry, prices=PRICE_TABLE)
    runs: dict[tuple[str, str], list[Run]] = {(p.namespace, p.name): [] for p in fleet}

    def execute(p: Profile, at: float, model: str, *, warm: bool) -> None:
        ok = rng.random() >= p.error_rate
        latency = p.latency * math.exp(rng.gauss(0, 0.4))
        tools = []
        for tool, (median, error_rate) in p.tools.items():
            tools.append((tool, median * math.exp(rng.gauss(0, 0.3)), rng.random() >= error_rate))
        run = Run(at, model, ok, latency, int(p.tokens * 0.8), int(p.tokens * 0.2), tools)
        monitors[(p.namespace, p.name)].set_model(model)
        monitors[(p.namespace, p.name)].record_execution(
            latency_s=latency,
            status="success" if ok else "error",
            error_type=None if ok else "AgentError",
            model=model,
            llm_calls=[LLMCall(model, None, run.input_tokens, run.output_tokens)],
            tools=[ToolCallRecord(n, d, s) for n, d, s in tools],
            timestamp=at - latency,
        )
        if not warm:
            runs[(p.namespace, p.name)].append(run)

    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}

    def snapshot(at: int) -> None:
        for (namespace, _), registry in registries.items():
            for s in registry_series(registry, at, {"namespace": namespace}, names=keep):
                key = (s.name, tuple(sorted(s.labels.items())))
                series.setdefault(key, []).extend(s.points)

    for p in fleet:
        for model in p.models:
            execute(p, START_S - 120, model, warm=True)
    snapshot(START_S)
    middle = START_S + WINDOW_S // 2
    for half, (begin, end) in enumerate(((START_S, middle), (middle, AT_S))):
        for p in fleet:
            count = p.runs // 2 + (p.runs % 2 if half else 0)
            for k in range(count):
                execute(p, begin + (k + 1) * (end - begin) / (count + 1), p.models[-1], warm=False)
        snapshot(end)
    return [Series(n, dict(lab), pts) for (n, lab), pts in series.items()], runs, fleet


@dataclass(frozen=True)
class Recorded:
    history: list[Series]
    runs: dict[tuple[str, str], list[Run]]
    fleet: list[Profile]


@functools.cache
def recorded() -> Recorded:
    """Recorded on first use, not at import: collecting the tests stays cheap."""
    return Recorded(*record_fleet())


def bucket_quantile(q: float, bounds: Sequence[float], values: Sequence[float]) -> float | None:
    """Prometheus' histogram_quantile (promql/quantile.go, v2.42) over raw observations."""
    if not values:
        return None
    upper = [*bounds, math.inf]
    counts = [sum(1 for v in values if v <= b) for b in upper]
    rank = q * counts[-1]
    b = next((i for i, c in enumerate(counts[:-1]) if c >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return upper[-2]
    start = 0.0 if b == 0 else upper[b - 1]
    below = counts[b - 1] if b else 0
    return 1000 * (start + (upper[b] - start) * ((rank - below) / (counts[b] - below)))


def expected_agent(key: tuple[str, str]) -> dict[str, Any]:
    runs = recorded().runs[key]
    n = len(runs)
    cost = sum(r.cost for r in runs)
    tools: dict[str, list[tuple[float, bool]]] = {}
    for r in runs:
        for name, duration, ok in r.tools:
            tools.setdefault(name, []).append((duration, ok))
    return {
        "executions": n,
        "cost": cost,
        "success": sum(r.ok for r in runs) / n if n else None,
        "p95": bucket_quantile(0.95, EXECUTION_DURATION_BUCKETS, [r.latency for r in runs]),
        "tokens": sum(r.input_tokens + r.output_tokens for r in runs) / n if n else None,
        "tools": {
            name: (
                len(calls),
                sum(not ok for _, ok in calls) / len(calls),
                bucket_quantile(0.95, TOOL_DURATION_BUCKETS, [d for d, _ in calls]),
            )
            for name, calls in tools.items()
        },
    }


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory) -> str:  # type: ignore[no-untyped-def]
    return prometheus_module_factory(backfill=openmetrics_text(recorded().history)).url


def fleet_cli(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    code = main(
        ["fleet", "--prometheus", url, "--window", "1h", "--at", str(AT_S), "--no-progress", *extra]
    )
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def report(prom_url: str) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        buffer = io.StringIO()
        mp.setattr("sys.stdout", buffer)
        code = main(
            [
                "fleet",
                "--prometheus",
                prom_url,
                "--window",
                "1h",
                "--at",
                str(AT_S),
                "--format",
                "json",
                "--no-progress",
            ]
        )
    assert code == 0
    parsed: dict[str, Any] = json.loads(buffer.getvalue())
    return parsed


def by_agent(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["namespace"], a["agent"]): a for a in report["agents"]}


def test_every_agent_gets_its_numbers_right(report: dict[str, Any]) -> None:
    rows = by_agent(report)
    assert set(rows) == set(recorded().runs)  # 200 agents, the idle one included
    total_cost = sum(expected_agent(k)["cost"] for k in recorded().runs)
    for key, row in rows.items():
        want = expected_agent(key)
        assert row["executions"] == pytest.approx(want["executions"]), key
        assert row["costUSD"] == pytest.approx(want["cost"], rel=1e-9, abs=1e-12), key
        assert row["costShare"] == pytest.approx(want["cost"] / total_cost, rel=1e-9), key
        if want["executions"]:
            assert row["costPerExecution"] == pytest.approx(want["cost"] / want["executions"])
            assert row["successRate"] == pytest.approx(want["success"], rel=1e-9), key
            assert row["errorRate"] == pytest.approx(1 - want["success"], abs=1e-9), key
            assert row["latencyP95Ms"] == pytest.approx(want["p95"], rel=1e-9), key
            assert row["tokensPerExecution"] == pytest.approx(want["tokens"], rel=1e-9), key
        else:
            assert row["successRate"] is None
            assert row["latencyP95Ms"] is None
            assert row["costPerExecution"] is None
        profile = next(p for p in recorded().fleet if (p.namespace, p.name) == key)
        assert row["model"] == profile.models[-1], key


def test_agents_are_listed_dearest_first_and_the_fleet_adds_up(report: dict[str, Any]) -> None:
    costs = [a["costUSD"] for a in report["agents"]]
    assert costs == sorted(costs, reverse=True)
    assert report["agents"][0]["agent"] == "chatty-bot"
    fleet = report["fleet"]
    runs = [r for rs in recorded().runs.values() for r in rs]
    assert fleet["agents"] == 200
    assert fleet["activeAgents"] == 199
    assert fleet["executions"] == pytest.approx(len(runs))
    assert fleet["costUSD"] == pytest.approx(sum(r.cost for r in runs))
    assert fleet["successRate"] == pytest.approx(sum(r.ok for r in runs) / len(runs))
    assert report["schema"] == "agentmedic.io/fleet-report/v1"
    assert report["window"] == "1h"
    assert report["windowSeconds"] == 3600
    assert report["at"] == "2023-11-15T00:00:00Z"
    assert report["queries"] == 10
    assert report["warnings"] == []


def test_one_name_in_two_namespaces_is_two_agents(report: dict[str, Any]) -> None:
    rows = by_agent(report)
    assert rows[("research", "shared-bot")]["model"] == "o4-mini"
    assert rows[("agents", "shared-bot")]["model"] == "gpt-4o"
    assert rows[("research", "shared-bot")]["executions"] == pytest.approx(80)
    assert rows[("agents", "shared-bot")]["executions"] == pytest.approx(50)


def test_tiers_split_the_fleet_only_at_gaps_of_a_quarter(report: dict[str, Any]) -> None:
    rows = by_agent(report)
    ranked = {k: r["latencyP95Ms"] for k, r in rows.items() if r["executions"] >= 20}
    for key, row in rows.items():
        if key not in ranked:
            assert row["tier"] is None, key  # too few executions to rank
    order = ["fast", "normal", "slow"]
    by_p95 = sorted(ranked, key=ranked.__getitem__)
    for lower, upper in itertools.pairwise(by_p95):
        a, b = rows[lower]["tier"], rows[upper]["tier"]
        assert order.index(a) <= order.index(b), (lower, upper)
        if a != b:  # a boundary: the gap between neighbours is at least 25% and 100 ms
            assert ranked[upper] >= 1.25 * ranked[lower], (lower, upper)
            assert ranked[upper] - ranked[lower] >= 100, (lower, upper)
    assert rows[by_p95[(len(by_p95) - 1) // 2]]["tier"] == "normal"
    bounds = report["fleet"]["tierBoundsMs"]
    slow = [ranked[k] for k in ranked if rows[k]["tier"] == "slow"]
    fast = [ranked[k] for k in ranked if rows[k]["tier"] == "fast"]
    assert bounds == {"fast": max(fast, default=None), "slow": min(slow, default=None)}
    # slow-bot's p95 sits in the histogram's top bucket, far beyond everyone else's.
    assert rows[("agents", "slow-bot")]["tier"] == "slow"
    assert sum(1 for k in ranked if rows[k]["tier"] == "normal") > len(ranked) // 2


FLOORS = {  # (least scale, least gap from the median), as documented in the method
    "cost_per_execution": (1e-6, 1e-5),
    "error_rate": (0.01, 0.05),
    "latency_p95_ms": (10.0, 250.0),
    "tokens_per_execution": (1.0, 50.0),
}


def flagged(values: dict[tuple[str, str], float], metric: str) -> dict[tuple[str, str], float]:
    """The documented rule, independently: robust z over a floored MAD, and a 25% gap."""
    median = statistics.median(values.values())
    mad = statistics.median(abs(v - median) for v in values.values())
    least_scale, least_gap = FLOORS[metric]
    scale = max(1.4826 * mad, 0.05 * abs(median), least_scale)
    return {
        k: (v - median) / scale
        for k, v in values.items()
        if (v - median) / scale > 3.5 and v - median >= max(0.25 * abs(median), least_gap)
    }


def test_anomaly_flags_mark_agents_far_above_the_fleet(report: dict[str, Any]) -> None:
    rows = by_agent(report)
    ranked = {k: r for k, r in rows.items() if r["executions"] >= 20}
    fields = {
        "cost_per_execution": "costPerExecution",
        "error_rate": "errorRate",
        "latency_p95_ms": "latencyP95Ms",
        "tokens_per_execution": "tokensPerExecution",
    }
    want: dict[tuple[str, str], set[str]] = {k: set() for k in rows}
    for metric, name in fields.items():
        for key in flagged({k: r[name] for k, r in ranked.items()}, metric):
            want[key].add(metric)
    got = {k: {a["metric"] for a in r["anomalies"]} for k, r in rows.items()}
    assert got == want
    # Exactly the engineered outliers: the rest of the fleet differs by chance, not by cause.
    assert {k: v for k, v in got.items() if v} == {
        ("agents", "flaky-bot"): {"error_rate"},
        ("agents", "slow-bot"): {"latency_p95_ms"},
        ("agents", "chatty-bot"): {"tokens_per_execution", "cost_per_execution"},
    }
    anomaly = next(a for a in rows[("agents", "flaky-bot")]["anomalies"])
    assert anomaly["value"] == pytest.approx(rows[("agents", "flaky-bot")]["errorRate"])
    assert 3.5 < anomaly["score"] <= 100
    assert anomaly["score"] == round(anomaly["score"], 2)
    scores = [s for r in ranked.values() for s in r["scores"].values()]
    assert all(math.isfinite(s) and abs(s) <= 100 for s in scores)


def test_tools_that_hold_agents_back_are_named(report: dict[str, Any]) -> None:
    rows = by_agent(report)
    stuck = rows[("agents", "stuck-bot")]
    want = expected_agent(("agents", "stuck-bot"))["tools"]
    assert stuck["slowestTool"]["tool"] == "legacy_erp"
    assert stuck["slowestTool"]["latencyP95Ms"] == pytest.approx(want["legacy_erp"][2])
    assert stuck["slowestTool"]["calls"] == pytest.approx(want["legacy_erp"][0])
    assert stuck["mostErrorProneTool"]["tool"] == "legacy_erp"
    assert stuck["mostErrorProneTool"]["errorRate"] == pytest.approx(want["legacy_erp"][1])
    assert rows[("agents", "flaky-bot")]["slowestTool"] is None  # it calls no tools
    slowest = report["tools"]["slowest"]
    assert (slowest[0]["agent"], slowest[0]["tool"]) == ("stuck-bot", "legacy_erp")
    assert len(slowest) == 5
    p95s = [t["latencyP95Ms"] for t in slowest]
    assert p95s == sorted(p95s, reverse=True)
    failing = report["tools"]["mostErrorProne"]
    assert (failing[0]["agent"], failing[0]["tool"]) == ("stuck-bot", "legacy_erp")
    for t in failing:
        calls, error_rate, _ = expected_agent((t["namespace"], t["agent"]))["tools"][t["tool"]]
        assert t["errorRate"] == pytest.approx(error_rate)
        assert t["calls"] == pytest.approx(calls)
        assert calls >= 10


def test_csv_has_one_row_per_agent_matching_the_json(
    capsys: pytest.CaptureFixture[str], prom_url: str, report: dict[str, Any]
) -> None:
    code, out, _ = fleet_cli(capsys, prom_url, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 200
    first = rows[0]
    top = report["agents"][0]
    assert (first["namespace"], first["agent"], first["model"]) == (
        top["namespace"],
        top["agent"],
        top["model"],
    )
    assert float(first["cost_usd"]) == pytest.approx(top["costUSD"])
    idle = next(r for r in rows if r["agent"] == "idle-bot")
    assert idle["success_rate"] == ""  # no data is an empty cell, not 0
    assert idle["executions"] == "0.0"


def test_namespace_filter_reports_only_that_namespace(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, out, _ = fleet_cli(capsys, prom_url, "--format", "json", "-n", "research")
    assert code == 0
    report = json.loads(out)
    assert report["namespace"] == "research"
    assert {a["namespace"] for a in report["agents"]} == {"research"}
    research_agents = sum(p.namespace == "research" for p in recorded().fleet)
    assert len(report["agents"]) == research_agents == 49
    research = [r for k, rs in recorded().runs.items() if k[0] == "research" for r in rs]
    assert report["fleet"]["costUSD"] == pytest.approx(sum(r.cost for r in research))


def test_table_for_people_names_the_problems(
    capsys: pytest.CaptureFixture[str], prom_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = fleet_cli(capsys, prom_url, "--sort", "latency", "--limit", "12")
    assert code == 0
    lines = out.splitlines()
    assert "Fleet: 200 agents (199 active), all namespaces, last 1h" in lines[0]
    slow_line = next(line for line in lines if "slow-bot" in line)
    assert "slow" in slow_line
    assert "latency" in slow_line  # its anomaly flag
    assert "... and 188 more agents" in out
    assert "Slowest tools (p95)" in out
    assert "legacy_erp" in out


def test_unreachable_backend_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fleet_cli(capsys, "http://127.0.0.1:9", "--query-timeout-seconds", "1")
    assert code == 1
    assert out == ""
    assert "agentmedic fleet:" in err
    assert "127.0.0.1:9" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "a day"], "not a duration"),
        (["--at", "yesterday-ish"], "now"),
        (["--agent-label", "bad-label"], "not a valid Prometheus label name"),
    ],
)
def test_invalid_arguments_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = fleet_cli(capsys, "http://127.0.0.1:9", *args)
    assert code == 2
    assert message in err


def test_a_window_without_agents_is_reported_as_such(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, _, err = fleet_cli(capsys, prom_url, "-n", "nobody-here")
    assert code == 1
    assert "no agent has metrics in namespace nobody-here" in err
