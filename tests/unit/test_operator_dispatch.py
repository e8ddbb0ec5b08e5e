"""Decision dispatch: agents in parallel within a bounded pool, one agent's decisions in
order, results in the engine's order."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.actions import ActionResult
from agentmedic.actions import ExecutionOutcome as ActionOutcome
from agentmedic.actions.request import ActionRequest
from agentmedic.actions.result import ActionKind
from agentmedic.api.types import ActionOutcome as StatusOutcome
from agentmedic.api.types import AgentPolicySpec, Severity
from agentmedic.engine import AgentId, Decision, DecisionKind, Evidence
from agentmedic.operator.dispatch import Dispatcher, Order
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import CachedWorkload

NS = "agents"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SPEC = AgentPolicySpec.model_validate(
    {
        "selector": {"matchLabels": {"team": "a"}},
        "rules": [
            {
                "name": "low-success",
                "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.8}],
                "actions": [{"scaleToZero": {}}],
            }
        ],
    }
)


class GatedExecutor:
    """Each request waits at a gate the test opens; records what ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.gate = threading.Semaphore(0)
        self.in_flight: set[str] = set()
        self.max_in_flight = 0
        self.overlaps: list[str] = []
        self.calls: list[tuple[str, str]] = []

    def execute(self, request: ActionRequest) -> ActionResult:
        ref, record = request.workload, request.record
        with self.lock:
            if ref.name in self.in_flight:
                self.overlaps.append(ref.name)
            self.in_flight.add(ref.name)
            self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
            self.calls.append((ref.name, record.rule))
            self.lock.notify_all()
        self.gate.acquire()
        with self.lock:
            self.in_flight.discard(ref.name)
        return ActionResult(ActionKind.SCALE_TO_ZERO, ref, ActionOutcome.APPLIED, "scaled")

    def wait_in_flight(self, n: int) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.in_flight) >= n, timeout=30)


def decision(agent: str, rule: str) -> Decision:
    return Decision(
        kind=DecisionKind.SCALE_TO_ZERO,
        agent=AgentId(NS, agent),
        workload=f"Deployment/{agent}",
        rule=rule,
        severity=Severity.HIGH,
        episode=f"uid:{NS}/{agent}:{rule}:1",
        reason_code="RuleFiring",
        reason=f"{rule} fires",
        evidence=Evidence("all", (), None, timedelta(0), AT),
        at=AT,
    )


def workload(agent: str) -> CachedWorkload:
    return CachedWorkload("Deployment", NS, agent, "u", "1", agent, 1, {}, {}, {})


async def test_agents_run_in_parallel_within_the_pool_and_each_agents_decisions_in_order() -> None:
    entry = PolicyEntry(NS, "p", "uid", 1, None, [])
    names = [f"bot-{i}" for i in range(6)]
    agents = {AgentId(NS, n): workload(n) for n in names}
    orders = [
        Order(entry, SPEC, decision(n, rule), agents, overruled=False)
        for rule in ("first", "second")
        for n in names
    ]
    executor = GatedExecutor()
    events: list[Any] = []

    async def event(*args: Any) -> None:
        events.append(args)

    dispatcher = Dispatcher(executor, Telemetry(), event, max_concurrent=3)  # type: ignore[arg-type]
    run = asyncio.get_running_loop().create_task(dispatcher.run(orders))
    # Three agents are carried out at once, none waiting for another.
    assert await asyncio.to_thread(executor.wait_in_flight, 3)
    executor.gate.release(len(orders))
    results = await run

    assert executor.max_in_flight == 3, "the pool bounds the actions in flight"
    assert executor.overlaps == [], "one agent's decisions must not overlap"
    for n in names:
        assert [rule for agent, rule in executor.calls if agent == n] == ["first", "second"]
    assert [(r.agent, r.rule) for r in results] == [
        (f"{NS}/{o.decision.agent.name}", o.decision.rule) for o in orders
    ]
    assert {r.outcome for r in results} == {StatusOutcome.APPLIED}
    assert events == []


async def test_an_overruled_decision_is_reported_as_suppressed_without_acting() -> None:
    entry = PolicyEntry(NS, "p", "uid", 1, None, [])
    agents = {AgentId(NS, "bot"): workload("bot")}
    executor = GatedExecutor()
    events: list[Any] = []

    async def event(*args: Any) -> None:
        events.append(args)

    dispatcher = Dispatcher(executor, Telemetry(), event, max_concurrent=8)  # type: ignore[arg-type]
    results = await dispatcher.run([Order(entry, SPEC, decision("bot", "r"), agents, True)])
    assert [r.outcome for r in results] == [StatusOutcome.SUPPRESSED]
    assert executor.calls == []
    assert [e[1] for e in events] == ["ActionSuppressed"]
