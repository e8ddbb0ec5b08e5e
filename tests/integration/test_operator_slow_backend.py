"""A metrics backend that never answers: the cycle ends at its deadline having decided
nothing, and a person's restore request is served while the cycle still waits.

The operator runs in the test's loop against the API emulator; the backend is an
in-process MetricsBackend that hangs until released.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.actions.record import DISABLED, POLICY, RESTORE_REQUEST
from agentmedic.metrics import QueryResult, RangeResult
from agentmedic.operator.app import Operator
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.operator_support import in_loop_operator

NS = "agents"
API = "agentmedic.io/v1alpha1"
INTERVAL = timedelta(seconds=30)


class HungBackend:
    """Accepts queries and answers none of them until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()
        self.queries = 0

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.queries += 1
        self.asked.set()
        await self.release.wait()
        return QueryResult("vector")

    async def query_range(self, *args: Any) -> RangeResult:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        self.release.set()


def deployment(name: str, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"team": "a"},
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


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
            "noData": {"mode": "breach", "after": "0s"},
            "guardrails": {"maxDisabledPercent": 100},
        },
    }


def disabled_record(uid: str) -> dict[str, str]:
    record = {
        "replicas": 3,
        "policy": f"{NS}/p",
        "policyUid": uid,
        "rule": "low-success",
        "episode": f"{uid}:{NS}/gone-bot:low-success:1700000000",
        "reason": "success_rate below 0.8",
        "evidence": "success_rate[5m] = 0.4 < 0.8",
        "at": "2026-11-27T12:00:00Z",
    }
    return {DISABLED: json.dumps(record), POLICY: f"{NS}/p"}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ApiEmulator, Operator, HungBackend]]:
    with ApiEmulator(history_limit=5000) as emu:
        body = emu.create(policy())
        emu.create(deployment("busy-bot", 2, {}))
        backend = HungBackend()
        op = in_loop_operator(
            emu.client_configuration(),
            namespaces=[NS],
            clock=lambda: datetime(2026, 12, 1, tzinfo=UTC),
            backend=backend,
            cycle_deadline_seconds=0.5,
            restore_poll_seconds=0.05,
        )
        await op.start()
        try:
            await op.register(body)
            assert op.cache is not None
            for _ in range(1000):
                if op.cache.workloads(NS, op.entries[(NS, "p")].selector) is not None:
                    break
                await asyncio.sleep(0.01)
            yield emu, op, backend
        finally:
            backend.release.set()
            await op.stop()


def metrics_condition(emu: ApiEmulator) -> dict[str, Any]:
    obj = emu.get(API, "AgentPolicy", NS, "p") or {}
    found = [
        c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "MetricsAvailable"
    ]
    return found[0] if found else {}


async def test_a_cycle_whose_backend_never_answers_ends_at_its_deadline_deciding_nothing(
    setup: tuple[ApiEmulator, Operator, HungBackend],
) -> None:
    emu, op, backend = setup
    emu.clear_requests()
    await op.run_cycle(INTERVAL)  # returns: the fetch has a deadline of its own
    assert backend.queries >= 1
    condition = metrics_condition(emu)
    assert condition["status"] == "False"
    assert condition["reason"] == "Timeout"
    assert "cycleDeadlineSeconds" in condition["message"]
    writes = [r.path for r in emu.write_requests() if "/deployments" in r.path]
    assert writes == [], "noData: breach must not act on a fetch that never finished"
    deployment = emu.get("apps/v1", "Deployment", NS, "busy-bot")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2


async def test_a_restore_request_is_served_while_the_metrics_cycle_hangs(
    setup: tuple[ApiEmulator, Operator, HungBackend],
) -> None:
    """Issue #14: restores ran at the start of a cycle, so one hung backend blocked them."""
    emu, op, backend = setup
    # A long cycle deadline: the cycle surely still waits when the restore is checked.
    op.settings = op.settings.model_copy(update={"cycle_deadline_seconds": 300.0})
    cycle = asyncio.get_running_loop().create_task(op.run_cycle(INTERVAL))
    await backend.asked.wait()  # the cycle is now stuck in its fetch
    uid = op.entries[(NS, "p")].uid
    emu.create(deployment("gone-bot", 0, {**disabled_record(uid), RESTORE_REQUEST: "true"}))

    restored = None
    for _ in range(500):
        restored = emu.get("apps/v1", "Deployment", NS, "gone-bot")
        if restored is not None and restored["spec"]["replicas"] == 3:
            break
        await asyncio.sleep(0.01)
    assert restored is not None
    assert restored["spec"]["replicas"] == 3
    assert not cycle.done(), "the restore did not wait for the cycle"
    assert RESTORE_REQUEST not in restored["metadata"]["annotations"]
    backend.release.set()
    await cycle
