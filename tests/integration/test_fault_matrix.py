"""The fault matrix: every way a metrics backend can fail, under every noData mode, with the
real operator in front of a real Prometheus (behind a loopback fault proxy) and the API
emulator. The evidence rule (docs/architecture.md) must hold in every cell:

- no remediation: not one write to a workload while the fault lasts or after it clears;
- no duplicate and no lost notification: the breaching agent's page fired once before the
  fault and is neither resolved nor repeated; the outage message fires once when the fault
  has lasted noData.after and resolves once when it clears;
- MetricsAvailable=False with the fault's own reason while it lasts;
- MetricsAvailable=True again within two cycles of the fault clearing.

Cycles are driven directly (Operator.run_cycle) with an injected clock over backfilled
history. Run with ``-s`` to see the matrix.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.metrics import BackendConfig, PrometheusBackend
from agentmedic.operator.app import Operator
from agentmedic.operator.settings import load_settings
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.prometheus import Series, counter, openmetrics_text
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.fault_proxy import FAULTS, FaultProxy
from tests.integration.operator_support import ManualScheduler

pytestmark = pytest.mark.prometheus

NS = "agents"
API = "agentmedic.io/v1alpha1"
T0 = 1_700_000_000
AGENTS = {"sick": 0.5, "ok-1": 0.0, "ok-2": 0.0, "ok-3": 0.0}
"""Agent → error ratio in the history. Only sick breaches (error_rate > 0.2, notify)."""
MODES = ("keep", "breach", "notify")
FAULT_CYCLES = 3
INTERVAL = timedelta(seconds=30)

EXPECTED_REASON = {
    "redirect-302": "Redirected",
    "redirect-307": "Redirected",
    "unauthorized-401": "Unauthorized",
    "forbidden-403": "Unauthorized",
    "not-found-404": "NotFound",
    "timeout-408": "Timeout",
    "rate-limited-429": "RateLimited",
    "bad-request-400": "ClientError",
    "server-error-500": "ServerError",
    "bad-gateway-502": "ServerError",
    "unavailable-503": "ServerError",
    "bad-data-400": "QueryError",
    "not-json": "InvalidResponse",
    "empty-body": "InvalidResponse",
    "value-plus-inf": "NonFiniteValue",
    "value-minus-inf": "NonFiniteValue",
    "value-word": "InvalidResponse",
    "value-true": "InvalidResponse",
    "value-list": "InvalidResponse",
    "metric-string": "InvalidResponse",
    "metric-null": "InvalidResponse",
    "metric-list": "InvalidResponse",
    "warnings-number": "InvalidResponse",
    "stats-timings-string": "InvalidResponse",
    "result-object": "InvalidResponse",
    "status-error-200": "InvalidResponse",
    "scalar-result": "QueryError",
    "truncated": "InvalidResponse",
    "reset": "Unreachable",
    "hang": "Timeout",
    "drip": "Timeout",
    "oversized": "TooLarge",
}
"""The reason MetricsAvailable must give while the fault lasts."""
HELD_AGENTS = {"value-nan"}
"""Faults that leave a well-formed answer whose numbers are NaN: nothing is known of the
agents, so each is held (no judgement, no noData stance); the answer itself is good, so
MetricsAvailable stays True (NaN is also what an idle agent's ratios are)."""


def history() -> list[Series]:
    series: list[Series] = []
    steps = range(T0 - 3600, T0 + 900, 15)
    for agent, ratio in AGENTS.items():
        labels = {"agent": agent, "namespace": NS, "model": "gpt-4o"}
        ok = [(t, (t - steps[0]) * (1 - ratio)) for t in steps]
        bad = [(t, (t - steps[0]) * ratio) for t in steps]
        series.append(counter("agent_executions_total", {**labels, "status": "success"}, ok))
        series.append(counter("agent_executions_total", {**labels, "status": "error"}, bad))
    return series


def deployment(agent: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": agent, "namespace": NS, "labels": {"fleet": "matrix"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": agent}},
            "template": {
                "metadata": {"labels": {"app": agent}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


def policy(name: str, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"fleet": "matrix"}},
            "interval": "30s",
            "rules": [
                {
                    "name": "errors",
                    "all": [{"metric": "error_rate", "window": "5m", "op": ">", "value": 0.2}],
                    "actions": [{"notify": {"channels": ["hook"]}}],
                },
                {
                    # Only an agent with no data counted as breaching (noData: breach) or a
                    # misread answer could reach this: it is what must never happen.
                    "name": "severe",
                    "all": [{"metric": "error_rate", "window": "5m", "op": ">", "value": 0.9}],
                    "actions": [{"scaleToZero": {}}],
                },
            ],
            "noData": {"mode": mode, "after": "30s", "channels": ["hook"]},
            "guardrails": {
                "maxDisabledPercent": 100,
                "systemicPercent": 100,
                "systemicMinAgents": 100,
            },
            "notifications": {
                "channels": [
                    {"name": "hook", "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}
                ]
            },
        },
    }


@dataclass
class Cell:
    fault: str
    mode: str
    problems: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.problems


@pytest.fixture(scope="module")
def prometheus_url(prometheus_module_factory: Any) -> str:
    return str(prometheus_module_factory(backfill=openmetrics_text(history())).url)


@pytest.fixture
def world() -> Iterator[tuple[ApiEmulator, NotificationReceivers]]:
    with ApiEmulator(history_limit=20_000) as emu, NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.WEBHOOK)
        emu.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": NS},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        for agent in AGENTS:
            emu.create(deployment(agent))
        yield emu, receivers


class Clock:
    def __init__(self) -> None:
        self.now = datetime.fromtimestamp(T0, UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def running(
    world: tuple[ApiEmulator, NotificationReceivers], prometheus_url: str
) -> AsyncIterator[tuple[Operator, FaultProxy, Clock]]:
    emu, _ = world
    async with FaultProxy(prometheus_url, drip_pause=0.02) as proxy:
        settings = load_settings(
            flags={
                "prometheus_url": proxy.url,
                "namespaces": [NS],
                "peering": "",
                "metrics_port": 0,
                "health_port": 0,
                "cycle_deadline_seconds": 2.0,
            },
            environ={},
        )
        backend = PrometheusBackend(
            BackendConfig(
                url=proxy.url,
                timeout=0.3,
                deadline=0.8,
                retries=1,
                backoff_base=0.01,
                backoff_cap=0.02,
                max_response_bytes=1 << 20,
            )
        )
        clock = Clock()
        op = Operator.build(settings, emu.client_configuration(), clock=clock, backend=backend)
        op.scheduler = ManualScheduler()  # type: ignore[assignment]
        await op.start()
        try:
            yield op, proxy, clock
        finally:
            await op.stop()


def condition(emu: ApiEmulator, name: str, kind: str) -> dict[str, Any]:
    obj = emu.get(API, "AgentPolicy", NS, name) or {}
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


def workload_writes(emu: ApiEmulator) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in emu.requests
        if r.is_write and ("/deployments" in r.path or "/statefulsets" in r.path)
    ]


async def listed(op: Operator, selector: str) -> None:
    """Wait until the operator's watch has listed the policy's workloads."""
    assert op.cache is not None
    for _ in range(1000):
        if op.cache.workloads(NS, selector) is not None:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the workloads were never listed")


async def settle(op: Operator) -> None:
    """Wait for the notifications a cycle spawned."""
    while op.parts.deliveries.tasks:
        await asyncio.wait(set(op.parts.deliveries.tasks))


async def run_cell(
    op: Operator,
    proxy: FaultProxy,
    clock: Clock,
    emu: ApiEmulator,
    receivers: NotificationReceivers,
    cell: Cell,
    index: int,
) -> None:
    name = f"m{index}"
    emu.create(policy(name, cell.mode))
    body = emu.get(API, "AgentPolicy", NS, name)
    assert body is not None
    await op.register(body)
    await listed(op, op.entries[(NS, name)].selector)
    clock.now = datetime.fromtimestamp(T0, UTC)
    receivers.clear()

    async def cycle() -> None:
        await op.run_cycle(INTERVAL)
        await settle(op)
        clock.now += INTERVAL

    problems = cell.problems
    await cycle()  # a good cycle: sick breaches and is paged
    if condition(emu, name, "MetricsAvailable").get("status") != "True":
        problems.append("the cycle before the fault had no metrics")

    emu.clear_requests()
    proxy.fault = cell.fault
    for i in range(FAULT_CYCLES):
        await cycle()
        metrics = condition(emu, name, "MetricsAvailable")
        if cell.fault in HELD_AGENTS:
            if metrics.get("status") != "True":
                problems.append(f"fault cycle {i + 1}: MetricsAvailable {metrics}")
        elif (metrics.get("status"), metrics.get("reason")) != (
            "False",
            EXPECTED_REASON[cell.fault],
        ):
            problems.append(
                f"fault cycle {i + 1}: MetricsAvailable {metrics.get('status')} "
                f"{metrics.get('reason')}, expected False {EXPECTED_REASON[cell.fault]}"
            )
    proxy.fault = None
    recovered_after = None
    for i in range(2):
        await cycle()
        if condition(emu, name, "MetricsAvailable").get("status") == "True":
            recovered_after = recovered_after or i + 1
    if recovered_after is None:
        problems.append("not recovered within two cycles of the fault clearing")
    writes = workload_writes(emu)
    if writes:
        problems.append(f"{len(writes)} workload write(s): {writes[:3]}")

    sent = Counter(
        (doc["rule"], (doc.get("agent") or {}).get("name"), doc["state"])
        for doc in (r.json() for r in receivers.accepted(ReceiverKind.WEBHOOK))
    )
    expected = Counter({("errors", "sick", "firing"): 1})
    if cell.fault not in HELD_AGENTS:
        expected[("metricsUnavailable", None, "firing")] = 1
        expected[("metricsUnavailable", None, "resolved")] = 1
    if sent != expected:
        missing, extra = expected - sent, sent - expected
        problems.append(f"notifications: lost {dict(missing)}, unexpected {dict(extra)}")

    await op.unregister(body)
    emu.delete(API, "AgentPolicy", NS, name)


async def test_every_backend_fault_under_every_nodata_mode_changes_nothing_and_recovers(
    world: tuple[ApiEmulator, NotificationReceivers],
    running: tuple[Operator, FaultProxy, Clock],
) -> None:
    emu, receivers = world
    op, proxy, clock = running
    cells = [Cell(fault, mode) for fault in FAULTS for mode in MODES]
    for index, cell in enumerate(cells):
        await run_cell(op, proxy, clock, emu, receivers, cell, index)

    width = max(len(f) for f in FAULTS)
    lines = [f"{'fault':<{width}}  " + "  ".join(f"{m:<6}" for m in MODES)]
    for fault in FAULTS:
        row = [c for c in cells if c.fault == fault]
        lines.append(
            f"{fault:<{width}}  " + "  ".join(f"{'held' if c.held else 'BROKE':<6}" for c in row)
        )
    held = sum(c.held for c in cells)
    summary = f"fault matrix: {len(cells)} cells tried, {held} held"
    print("\n" + "\n".join(lines) + "\n" + summary)
    broken = {f"{c.fault}/{c.mode}": c.problems for c in cells if not c.held}
    assert held == len(cells), json.dumps(broken, indent=1)[:6000]
