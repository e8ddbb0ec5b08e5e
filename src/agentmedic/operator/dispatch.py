"""Decision dispatch: each engine decision carried out on its workload, or why not.

The engine has already decided everything, guardrail counts included (maxDisabledPercent,
maxActionsPerHour, cooldown), so carrying decisions out in parallel changes no outcome.
Decisions on different agents run concurrently, at most ``max_concurrent_actions`` at a
time; those on one agent run one after another, in the engine's order (a workload gets one
change per cycle across policies, the others are reported as suppressed).

Each decision becomes a :class:`~agentmedic.api.types.RecentAction` for status: applied,
refused, suppressed or failed (a failure is retried by the engine on a later cycle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from agentmedic.actions import ActionError, ActionExecutor, WorkloadRef
from agentmedic.actions.request import (
    ActionRequest,
    probation_recent_action,
    recent_action,
    unexecuted_recent_action,
)
from agentmedic.api.types import ActionOutcome as StatusOutcome
from agentmedic.api.types import AgentPolicySpec, RecentAction
from agentmedic.engine import AgentId, Decision
from agentmedic.engine.outcome import ProbationOutcome
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import CachedWorkload

__all__ = ["Dispatcher", "Order"]

log = logging.getLogger(__name__)

PolicyEvent = Callable[[PolicyEntry, str, str], Awaitable[None]]
"""Posts a Normal Event on the policy: (entry, reason, message)."""


@dataclass(frozen=True)
class Order:
    """One decision to carry out, with what it needs."""

    entry: PolicyEntry
    spec: AgentPolicySpec
    decision: Decision
    agents: Mapping[AgentId, CachedWorkload]
    overruled: bool
    """Another policy's change to this agent wins this cycle."""


class Dispatcher:
    """Carries out decisions through the actions layer, agents in parallel."""

    def __init__(
        self,
        executor: ActionExecutor,
        telemetry: Telemetry,
        policy_event: PolicyEvent,
        *,
        max_concurrent: int,
    ) -> None:
        self._executor = executor
        self._telemetry = telemetry
        self._policy_event = policy_event
        self._max_concurrent = max(1, max_concurrent)

    async def run(self, orders: Sequence[Order]) -> list[RecentAction]:
        """Carry out every order; the results in the orders' order."""
        results: list[RecentAction | None] = [None] * len(orders)
        by_agent: dict[AgentId, list[int]] = {}
        for i, order in enumerate(orders):
            by_agent.setdefault(order.decision.agent, []).append(i)
        pool = asyncio.Semaphore(self._max_concurrent)

        async def one_agent(indices: list[int]) -> None:
            async with pool:
                for i in indices:  # one agent's decisions in the engine's order
                    results[i] = await self.carry_out(orders[i])

        await asyncio.gather(*(one_agent(ix) for ix in by_agent.values()))
        return [r for r in results if r is not None]

    async def verdicts(
        self, entry: PolicyEntry, outcomes: Sequence[ProbationOutcome]
    ) -> list[RecentAction]:
        """Verdicts on changes on probation: an Event on the policy and a status line each
        (the revert a regression leads to is a decision of its own, carried out by run)."""
        lines = []
        for p in outcomes:
            self._telemetry.decisions.labels("verify", p.verdict).inc()
            await self._policy_event(entry, f"Probation{p.verdict}", p.summary)
            lines.append(probation_recent_action(p))
        return lines

    async def carry_out(self, order: Order) -> RecentAction:
        """Apply one decision (or record why not) and describe it for status."""
        d, entry = order.decision, order.entry
        kind = str(d.kind)
        if d.suppressed_by is not None or order.overruled:
            why = (
                "another policy acts on this agent this cycle"
                if order.overruled
                else d.suppressed_by
            )
            self._telemetry.decisions.labels(kind, "Suppressed").inc()
            await self._policy_event(
                entry, "ActionSuppressed", f"{kind} on {d.agent} suppressed ({why}): {d.reason}"
            )
            return unexecuted_recent_action(
                d, StatusOutcome.SUPPRESSED, f"suppressed ({why}): {d.reason}"
            )
        w = order.agents.get(d.agent)
        if w is None:
            return unexecuted_recent_action(d, StatusOutcome.FAILED, "the agent's workload is gone")
        ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
        request = ActionRequest.from_decision(d, entry.ref, ref, order.spec)
        try:
            result = await asyncio.to_thread(self._executor.execute, request)
        except ActionError as exc:  # transient or a lost race: the engine decides it again
            self._telemetry.errors.labels("kubernetes").inc()
            self._telemetry.decisions.labels(kind, "Failed").inc()
            log.warning("%s on %s failed, will retry: %s", kind, ref, exc)
            return unexecuted_recent_action(d, StatusOutcome.FAILED, f"{exc}; retried next cycle")
        line = recent_action(request, result)
        self._telemetry.decisions.labels(kind, str(line.outcome)).inc()
        return line
