"""A policy registered while a cycle runs is evaluated right after that cycle, not a whole
interval later.

The operator runs in the test's loop against the API emulator with its real scheduler and
a ten-minute interval, so no tick can come during the test: whatever evaluates the second
policy is the trigger its registration queued while the first policy's cycle was stuck in
its fetch.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from agentmedic.metrics import QueryResult, RangeResult, Sample
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.operator_support import in_loop_operator

NS = "agents"
API = "agentmedic.io/v1alpha1"
INTERVAL = timedelta(minutes=10)


class GatedBackend:
    """Healthy answers, held back until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.asked.set()
        await self.release.wait()
        samples = (Sample({"agent": a, "namespace": NS}, 0.99) for a in ("a-bot", "b-bot"))
        return QueryResult("vector", samples=tuple(samples))

    async def query_range(self, *args: Any) -> RangeResult:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        self.release.set()


def policy(name: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"team": team}},
            "interval": "10m",
            "rules": [
                {
                    "name": "low-success",
                    "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.8}],
                    "actions": [{"scaleToZero": {}}],
                }
            ],
        },
    }


def deployment(name: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": team}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


def ready_reason(emu: ApiEmulator, name: str) -> str | None:
    obj = emu.get(API, "AgentPolicy", NS, name) or {}
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return str(c["reason"])
    return None


async def test_a_policy_registered_during_a_cycle_is_evaluated_right_after_it() -> None:
    with ApiEmulator(history_limit=5000) as emu:
        first = emu.create(policy("first", "a"))
        second = emu.create(policy("second", "b"))
        emu.create(deployment("a-bot", "a"))
        emu.create(deployment("b-bot", "b"))
        backend = GatedBackend()
        op = in_loop_operator(
            emu.client_configuration(),
            namespaces=[NS],
            backend=backend,
            manual=False,
        )
        await op.start()
        try:
            await op.register(first)
            await asyncio.wait_for(backend.asked.wait(), timeout=60)  # the cycle is stuck
            await op.register(second)
            for _ in range(600):  # its agents listed, its trigger is queued behind the cycle
                if op.scheduler.queued(INTERVAL):
                    break
                await asyncio.sleep(0.05)
            assert op.scheduler.queued(INTERVAL)
            assert ready_reason(emu, "second") is None, "not evaluated while the cycle is stuck"
            backend.release.set()
            for _ in range(600):
                if ready_reason(emu, "second") == "Evaluating":
                    break
                await asyncio.sleep(0.05)
            assert ready_reason(emu, "first") == "Evaluating"
            assert ready_reason(emu, "second") == "Evaluating"
        finally:
            await op.stop()
