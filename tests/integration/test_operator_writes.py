"""API writes over many cycles: none in a flat fleet, a bounded trickle in a spending one.

The operator runs in the test's loop against the API emulator with an in-process metrics
backend and a clock the test moves, one interval per cycle, for an hour of cycles. Every
request the operator sends is recorded by the emulator, so the writes are counted, not
estimated.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.metrics import QueryResult, Sample
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.operator_support import InstantBackend, in_loop_operator

NS = "agents"
API = "agentmedic.io/v1alpha1"
INTERVAL = timedelta(seconds=30)
HOUR_OF_CYCLES = int(timedelta(hours=1) / INTERVAL)
AGENTS = ("a-bot", "b-bot", "c-bot")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FleetBackend(InstantBackend):
    """Healthy agents whose cost grows by ``usd_per_cycle`` (0: a flat fleet)."""

    def __init__(self, clock: Clock, usd_per_cycle: float) -> None:
        self.clock = clock
        self.usd_per_cycle = usd_per_cycle

    async def query(self, promql: str, at: datetime) -> QueryResult:
        if "agent_cost_usd_total" in promql:
            cycles = (at - T0) / INTERVAL
            value = 100.0 + self.usd_per_cycle * cycles
        else:
            value = 0.99  # a healthy success rate
        return QueryResult(
            "vector",
            samples=tuple(Sample({"agent": a, "namespace": NS}, value) for a in AGENTS),
        )


def policy() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"team": "a"}},
            "interval": "30s",
            "rules": [
                {
                    "name": "low-success",
                    "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.8}],
                    "actions": [{"scaleToZero": {}}],
                }
            ],
            "budget": {
                "period": "day",
                "limitUSD": 10_000,
                "scope": "policy",
                "hard": {"actions": [{"scaleToZero": {}}]},
            },
        },
    }


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "a"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


async def fleet(usd_per_cycle: float, refresh_seconds: float) -> list[str]:
    """Runs a fleet for an hour of cycles after a first one; the API writes of that hour."""
    with ApiEmulator(history_limit=5000) as emu:
        body = emu.create(policy())
        for name in AGENTS:
            emu.create(deployment(name))
        clock = Clock()
        op = in_loop_operator(
            emu.client_configuration(),
            namespaces=[NS],
            clock=clock,
            backend=FleetBackend(clock, usd_per_cycle),
            spend_refresh_seconds=refresh_seconds,
        )
        await op.start()
        try:
            await op.register(body)
            for _ in range(1000):
                if op.cache.workloads(NS, op.entries[(NS, "p")].selector) is not None:
                    break
                await asyncio.sleep(0.01)
            await op.run_cycle(INTERVAL)  # the first cycle writes status and state
            status = (emu.get(API, "AgentPolicy", NS, "p") or {}).get("status", {})
            assert status.get("spend", {}).get("usd") == 300.0  # three agents, 100 USD each
            emu.clear_requests()
            for _ in range(HOUR_OF_CYCLES):
                clock.now += INTERVAL
                await op.run_cycle(INTERVAL)
            return [f"{r.method} {r.path}" for r in emu.write_requests()]
        finally:
            await op.stop()


async def test_a_flat_fleet_costs_no_api_write_in_an_hour_of_cycles() -> None:
    writes = await fleet(0.0, 300.0)
    assert writes == []


async def test_a_spending_fleet_refreshes_spend_at_most_once_per_refresh_period() -> None:
    # 3 x 20 USD a cycle crosses a 0.5% step (50 USD of 10,000) nearly every cycle, and
    # stays below the limit for the hour (7,500 USD).
    every_change = await fleet(20.0, 0.0)
    assert len(every_change) >= HOUR_OF_CYCLES * 0.8, "spend must move nearly every cycle"

    writes = await fleet(20.0, 300.0)
    assert writes, "spend must still be refreshed"
    assert all(w.endswith("/agentpolicies/p/status") for w in writes), writes
    assert len(writes) <= 12  # one per 5 minutes in an hour
