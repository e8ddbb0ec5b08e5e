"""Every PromQL expression the chart ships runs in a real Prometheus over real exports.

The data is produced by the code that exports it in production: agents recorded with the
SDK (``agentmedic.instrument.AgentMonitor``) and an operator's ``Telemetry``, sampled every
15 s of simulated time into ``PrometheusServer`` by promtool backfill (deterministic, no
waiting for scrapes). The operator's series carry the labels the chart's ServiceMonitor
gives them (job = the metrics Service, the release namespace, honorLabels).

Every dashboard query must return data (so its metric and label names match the exports),
and each alert must fire in exactly the situation the fixture stages: one replica down,
errors above the threshold, the metrics backend unreachable, and no other alert.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from agentmedic.instrument import AgentMonitor, LLMCall, ToolCallRecord
from agentmedic.operator.telemetry import Telemetry
from agentmedic_sandbox.prometheus import (
    INSTALL_HINT,
    PrometheusNotInstalledError,
    PrometheusServer,
    Series,
    openmetrics_text,
)

from .support import CHART_DIR, NAMESPACE, RELEASE, render_set

pytestmark = pytest.mark.prometheus

STEP_S = 15
STEPS = 80  # 20 minutes of history
START = (int(time.time()) - 3 * 3600) // STEP_S * STEP_S
END = START + (STEPS - 1) * STEP_S
JOB = f"{RELEASE}-metrics"
ACTIVE, STANDBY = "10.0.0.11:8080", "10.0.0.12:8080"

# agent → (model, share of failed executions)
AGENTS = {
    "support-bot": ("gpt-4o", 0.05),
    "research-bot": ("gpt-4o-mini", 0.10),
    "flaky-bot": ("gpt-4o-mini", 0.45),
}

GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "20m",
    "$namespace": ".*",
}


def _snapshot(
    registry: CollectorRegistry,
    ts: float,
    points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]],
    extra: dict[str, str] | None = None,
) -> None:
    """Record every sample of the registry at ``ts``, as one scrape would."""
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = {**(extra or {}), **sample.labels}  # honorLabels: the export wins
            key = (sample.name, tuple(sorted(labels.items())))
            points.setdefault(key, []).append((ts, sample.value))


def _to_series(
    points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]],
) -> list[Series]:
    return [Series(name, dict(labels), pts) for (name, labels), pts in points.items()]


def sdk_history() -> list[Series]:
    registry = CollectorRegistry()
    quiet = logging.getLogger("tests.chart.executions")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    monitors = {
        agent: AgentMonitor(agent, registry, model=model, logger=quiet)
        for agent, (model, _) in AGENTS.items()
    }
    rng = random.Random(8)
    points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    for step in range(STEPS):
        ts = START + step * STEP_S
        for agent, monitor in monitors.items():
            model, error_share = AGENTS[agent]
            for _ in range(4):
                ok = rng.random() >= error_share
                monitor.record_execution(
                    latency_s=rng.uniform(1.0, 12.0),
                    status="success" if ok else "error",
                    error_type=None if ok else "ToolFailed",
                    llm_calls=[
                        LLMCall(
                            request_model=model,
                            input_tokens=rng.randint(400, 1200),
                            output_tokens=rng.randint(50, 300),
                            duration_s=rng.uniform(0.5, 4.0),
                        )
                    ],
                    tools=[ToolCallRecord("search_kb", rng.uniform(0.01, 0.8), success=ok)],
                    timestamp=ts,
                )
        _snapshot(registry, ts, points)
    return _to_series(points)


def operator_history() -> list[Series]:
    """The active replica's telemetry while the metrics backend is unreachable, the
    standby replica down (up == 0), and `up` for both, as scraped through the chart."""
    telemetry = Telemetry()
    t = telemetry
    target = {"job": JOB, "namespace": NAMESPACE, "instance": ACTIVE}
    points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    t.policies.labels("True").set(2)
    t.policies.labels("False").set(1)
    for step in range(STEPS):
        ts = START + step * STEP_S
        t.cycles.labels("30s").inc()
        t.cycle_duration.labels("30s").observe(0.2 + (step % 5) / 10)
        t.queries.inc(6)
        t.errors.labels("metrics").inc()  # one failed query per 15 s: 0.067/s
        t.metrics_available.set(0)
        t.api_requests.labels("list").inc(2)
        if step == 3:  # long ago: no longer an overrun alert
            t.overruns.labels("30s").inc()
        if step % 10 == 0:
            t.decisions.labels("scaleToZero", "Applied").inc()
            t.decisions.labels("notify", "Suppressed").inc()
            t.notifications.labels("slack", "sent").inc()
        t.agents.labels("agents", "support", "healthy").set(5)
        t.agents.labels("agents", "support", "disabled").set(1)
        t.agents.labels("research", "research-dry-run", "breaching").set(2)
        _snapshot(telemetry.registry, ts, points, target)
    series = _to_series(points)
    times = [START + s * STEP_S for s in range(STEPS)]
    for instance, up in ((ACTIVE, 1.0), (STANDBY, 0.0)):
        labels = {"job": JOB, "namespace": NAMESPACE, "instance": instance}
        series.append(Series("up", labels, [(ts, up) for ts in times]))
    return series


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    text = openmetrics_text(sdk_history() + operator_history())
    try:
        server = PrometheusServer(backfill=text)
    except PrometheusNotInstalledError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must not skip the Prometheus tests)")
        pytest.skip(f"{exc}; or run `make deps` ({INSTALL_HINT})")
    with server:
        yield server


def query(prom: PrometheusServer, expr: str, at: float = END) -> list[dict[str, Any]]:
    response = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr, "time": at}, timeout=10)
    body = response.json()
    assert response.status_code == 200, f"{expr}\n-> {body.get('error')}"
    assert body["status"] == "success", f"{expr}\n-> {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query_range(prom: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{prom.url}/api/v1/query_range",
        params={"query": expr, "start": START + 600, "end": END, "step": 60},
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200, f"{expr}\n-> {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (CHART_DIR / "dashboards" / "agentmedic-fleet.json").read_text()
    )
    return loaded


def panel_targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, agent: str = ".*") -> str:
    for variable, value in {**GRAFANA_VARIABLES, "$agent": agent}.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def values(result: list[dict[str, Any]]) -> dict[str, float]:
    """label-set text → value of an instant vector."""
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}


def by_title(title: str) -> str:
    (expr,) = [t["expr"] for panel_title, t in panel_targets() if panel_title == title]
    return str(expr)


@pytest.mark.parametrize(
    ("title", "target"), panel_targets(), ids=[f"{t}/{x['refId']}" for t, x in panel_targets()]
)
def test_every_dashboard_query_returns_data_over_real_exports(
    prometheus: PrometheusServer, title: str, target: dict[str, Any]
) -> None:
    expr = substitute(target["expr"])
    assert query(prometheus, expr), f"{title}: no data for {expr}"
    if target.get("range", True):
        assert query_range(prometheus, expr), f"{title}: no data over time for {expr}"


def test_the_dashboard_variables_list_agents_and_policy_namespaces(
    prometheus: PrometheusServer,
) -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    found = {}
    for name in ("agent", "namespace"):
        metric, label = (
            variables[name]["query"]["query"].removeprefix("label_values(").rstrip(")").split(", ")
        )
        result = query(prometheus, f"group by ({label}) ({metric})")
        found[name] = {r["metric"][label] for r in result}
    assert found == {"agent": set(AGENTS), "namespace": {"agents", "research"}}


def test_fleet_cost_and_success_rate_follow_the_agent_selection(
    prometheus: PrometheusServer,
) -> None:
    fleet = values(query(prometheus, substitute(by_title("Fleet cost rate"))))
    one = values(query(prometheus, substitute(by_title("Fleet cost rate"), agent="support-bot")))
    (fleet_usd,), (one_usd,) = fleet.values(), one.values()
    assert 0 < one_usd < fleet_usd
    per_agent = values(query(prometheus, substitute(by_title("Cost by agent"))))
    assert sum(per_agent.values()) == pytest.approx(fleet_usd)

    success = query(prometheus, substitute(by_title("Success rate by agent")))
    rate = {r["metric"]["agent"]: float(r["value"][1]) for r in success}
    assert set(rate) == set(AGENTS)
    assert rate["flaky-bot"] < 0.75 < rate["research-bot"]
    assert all(0 <= v <= 1 for v in rate.values())


def test_p95_latency_by_agent_is_within_the_recorded_latencies(
    prometheus: PrometheusServer,
) -> None:
    result = query(prometheus, substitute(by_title("p95 latency by agent")))
    p95 = {r["metric"]["agent"]: float(r["value"][1]) for r in result}
    assert set(p95) == set(AGENTS)
    # Recorded latencies are 1..12 s; the bucket holding 12 s ends at 12.
    assert all(8 <= v <= 12 for v in p95.values()), p95


def test_agents_by_state_counts_each_policy_once_across_replicas(
    prometheus: PrometheusServer,
) -> None:
    result = query(prometheus, substitute(by_title("Agents by state")))
    assert {r["metric"]["state"]: float(r["value"][1]) for r in result} == {
        "healthy": 5,
        "disabled": 1,
        "breaching": 2,
    }


def alert_rules() -> list[dict[str, Any]]:
    rule = render_set("all-optional").one("PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alerts_fire_exactly_in_the_staged_situation(prometheus: PrometheusServer) -> None:
    firing = {rule["alert"] for rule in alert_rules() if query(prometheus, rule["expr"])}
    assert firing == {
        "AgentmedicReplicaDown",
        "AgentmedicErrors",
        "AgentmedicMetricsBackendDown",
    }


def test_the_operator_alerts_are_silent_when_the_operator_is_healthy(
    prometheus: PrometheusServer,
) -> None:
    # Before the first sample, nothing is known: absent() says the operator is down.
    before = {r["alert"] for r in alert_rules() if query(prometheus, r["expr"], at=START - 600)}
    assert before == {"AgentmedicOperatorDown"}


def test_promtool_accepts_the_rule_groups(tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        if os.environ.get("CI"):
            pytest.fail("promtool missing (CI must not skip the Prometheus tests)")
        pytest.skip(f"promtool not installed ({INSTALL_HINT})")
    rule = render_set("all-optional").one("PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout
