"""The engine's memory of each policy: read from the API server, written back on change.

Per agent it lives in ``agentmedic.io/state.<policy>`` on the agent's workload; per policy
in ``agentmedic.io/state`` on the AgentPolicy, stored in one optimistic PATCH together with
the delivery ledger and outbox (``agentmedic.io/notifications``) before any message of the
cycle is sent. A replica reads a policy again whenever its term as leader starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from agentmedic.actions import ActionError, ActionExecutor, WorkloadRef
from agentmedic.actions import record as rec
from agentmedic.engine import AgentId, PolicyState
from agentmedic.operator.entry import (
    OWNED_ANNOTATIONS,
    POLICY_STATE_ANNOTATION,
    PolicyEntry,
    dumps,
    loads,
    parse_status,
)
from agentmedic.operator.notices import Deliveries
from agentmedic.operator.persistence import (
    NOTIFICATIONS_ANNOTATION,
    PolicyStore,
    Snapshot,
    StoreError,
)
from agentmedic.operator.status_writer import PolicyWriter
from agentmedic.operator.watch import CachedWorkload

__all__ = ["Memory", "rebuild_state"]

log = logging.getLogger(__name__)


class Memory:
    """Loads and persists policies' memory."""

    def __init__(
        self,
        store: PolicyStore,
        executor: ActionExecutor,
        writer: PolicyWriter,
        deliveries: Deliveries,
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
    ) -> None:
        self._store = store
        self._executor = executor
        self._writer = writer
        self._deliveries = deliveries
        self._clock = clock
        self._leading = leading

    def forget(self, entry: PolicyEntry) -> None:
        """Drop what this replica holds of the policy, its ledger included."""
        entry.forget()
        self._deliveries.notifier.ledger.import_policy(entry.namespace, entry.name, None)

    async def load(self, entry: PolicyEntry) -> None:
        """Memory of one policy from the API server: the engine's policy state, the
        delivery ledger, status, and the outbox, whose reserved sends go out again."""
        try:
            obj = await self._store.get(entry.namespace, entry.name)
        except StoreError as exc:
            log.warning("cannot read %s/%s: %s", entry.namespace, entry.name, exc)
            return
        self.forget(entry)
        if obj is None:
            return
        entry.snapshot = Snapshot.of(obj, OWNED_ANNOTATIONS)
        entry.stored_policy_state = loads(entry.snapshot.annotations.get(POLICY_STATE_ANNOTATION))
        entry.status = parse_status(obj.get("status"))
        notes = loads(entry.snapshot.annotations.get(NOTIFICATIONS_ANNOTATION)) or {}
        try:
            ledger = notes.get("ledger")
            self._deliveries.notifier.ledger.import_policy(
                entry.namespace, entry.name, ledger if isinstance(ledger, dict) else None
            )
        except ValueError as exc:
            log.warning("ignoring the delivery ledger of %s/%s: %s", *entry.key, exc)
        outbox = notes.get("outbox")
        entry.outbox = dict(outbox) if isinstance(outbox, dict) else {}
        entry.fresh = True
        # A send of this process still in flight settles its own item.
        pending = [i for i in entry.outbox if not self._deliveries.in_flight(entry, i)]
        if pending:
            log.info(
                "%d message(s) of %s/%s were reserved by an earlier term; sending them",
                len(pending),
                *entry.key,
            )
            self._deliveries.spawn(self._deliveries.send(entry, pending))

    async def persist(
        self, entry: PolicyEntry, state: PolicyState, agents: Mapping[AgentId, CachedWorkload]
    ) -> None:
        """Write the engine's memory where it belongs, only the parts that changed; then
        send the cycle's messages whose reservation was stored."""
        if not self._leading():
            # The term ended during this cycle: what it decided is not stored or sent; the
            # next leader decides again from the API server.
            entry.due = []
            entry.state = None
            entry.fresh = False
            return
        prior = entry.state or PolicyState()
        entry.state = state
        entry.agent_writes = {}
        await self._agent_states(entry, state, prior, agents)
        due, entry.due = entry.due, []
        async with entry.lock:
            ids, channels = await self._deliveries.reserve(entry, due, self._clock())
            policy_part = state.policy_to_dict()
            wanted: dict[str, str | None] = {}
            if policy_part != entry.stored_policy_state:
                wanted[POLICY_STATE_ANNOTATION] = dumps(policy_part)
            if ids:
                wanted[NOTIFICATIONS_ANNOTATION] = self._deliveries.notes(entry)
            if not wanted:
                entry.agent_writes = {}  # the memory in hand is the one to go on with
                return
            if not await self._writer.annotations(entry, wanted):
                # Not stored, so not sent: the next cycle decides again from what the API
                # server holds, and announces it then.
                self._deliveries.unreserve(entry, ids)
                entry.state = None
                entry.fresh = False
                return
            entry.stored_policy_state = policy_part
            entry.agent_writes = {}
        if ids:
            self._deliveries.spawn(self._deliveries.send(entry, ids, channels))

    async def _agent_states(
        self,
        entry: PolicyEntry,
        state: PolicyState,
        prior: PolicyState,
        agents: Mapping[AgentId, CachedWorkload],
    ) -> None:
        for agent in state.changed_agents(prior):
            w = agents.get(agent)
            if w is None:
                continue
            ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
            agent_state = state.agents.get(agent)
            payload = None if agent_state is None or agent_state.empty else agent_state.to_dict()
            try:
                wrote = await asyncio.to_thread(
                    self._executor.write_agent_state,
                    ref,
                    entry.name,
                    payload,
                    annotations=w.annotations,
                )
            except ActionError as exc:
                log.warning("cannot store state on %s: %s", ref, exc)
                continue
            if wrote:
                entry.agent_writes[agent] = (w.annotations.get(rec.state_key(entry.name)), payload)


def rebuild_state(entry: PolicyEntry, agents: Mapping[AgentId, CachedWorkload]) -> PolicyState:
    """The engine's memory after a restart, or after a cycle whose policy state was not
    stored: the policy's annotation plus each workload's.

    A workload whose cache still shows the state this replica replaced in that cycle
    (the watch has not delivered the write yet) is read as what was written: otherwise,
    for one interval, the engine would go on from the state before, with a re-apply's
    backoff one behind. Any other value (a newer write, a person's) is read as it is.
    """
    key = rec.state_key(entry.name)
    own, entry.agent_writes = entry.agent_writes, {}
    parts = {}
    for agent, w in agents.items():
        raw = w.annotations.get(key)
        mine = own.get(agent)
        value = mine[1] if mine is not None and raw == mine[0] else loads(raw)
        if value is not None:
            parts[agent] = value
    return PolicyState.from_parts(entry.stored_policy_state, parts)
