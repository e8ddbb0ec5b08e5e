"""The engine's memory rebuilt after a cycle whose policy state was not stored
(operator/memory.py): the agents' states this replica wrote in that cycle are not lost to
a workload cache that does not show them yet."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from agentmedic.actions import record as rec
from agentmedic.engine import AgentId, PolicyState
from agentmedic.engine.state import AgentState
from agentmedic.operator.entry import PolicyEntry, dumps
from agentmedic.operator.memory import Memory, rebuild_state
from agentmedic.operator.watch import CachedWorkload

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = rec.state_key("p")


class Executor:
    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any] | None]] = []

    def write_agent_state(
        self, ref: Any, policy: str, payload: dict[str, Any] | None, *, annotations: Any
    ) -> bool:
        self.written.append((ref.name, payload))
        return True


class Writer:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    async def annotations(self, entry: PolicyEntry, wanted: dict[str, str | None]) -> bool:
        return self.ok


class Deliveries:
    async def reserve(self, entry: PolicyEntry, due: Any, now: datetime) -> tuple[list[str], Any]:
        return [], {}

    def unreserve(self, entry: PolicyEntry, ids: Any) -> None:
        pass


def workload(name: str, state: dict[str, Any] | None) -> CachedWorkload:
    annotations = {} if state is None else {KEY: dumps(state)}
    return CachedWorkload(
        "Deployment", "team", name, f"uid-{name}", "7", name, 1, {}, annotations, {}
    )


def memory(ok: bool) -> tuple[Memory, Executor]:
    executor = Executor()
    mem = Memory(
        None,  # type: ignore[arg-type]  # not read by persist
        executor,  # type: ignore[arg-type]
        Writer(ok),  # type: ignore[arg-type]
        Deliveries(),  # type: ignore[arg-type]
        lambda: NOW,
        lambda: True,
    )
    return mem, executor


def entry() -> PolicyEntry:
    e = PolicyEntry("team", "p", "uid-p", 1, None, [])
    e.stored_policy_state = {"v": 1, "stale": True}  # so the policy state is written
    return e


BEFORE = AgentState(healthy_since=datetime(2026, 12, 1, tzinfo=UTC))
AFTER = dataclasses.replace(BEFORE, changed_at=NOW)


async def persisted(ok: bool) -> tuple[PolicyEntry, dict[AgentId, CachedWorkload], Executor]:
    a, b = AgentId("team", "a"), AgentId("team", "b")
    agents = {a: workload("a", BEFORE.to_dict()), b: workload("b", BEFORE.to_dict())}
    e = entry()
    e.state = rebuild_state(e, agents)
    mem, executor = memory(ok)
    new = dataclasses.replace(e.state, agents={**e.state.agents, a: AFTER})
    await mem.persist(e, new, agents)
    return e, agents, executor


async def test_a_state_written_before_a_failed_policy_write_survives_a_lagging_cache() -> None:
    e, agents, executor = await persisted(ok=False)
    assert executor.written == [("a", AFTER.to_dict())]
    assert e.state is None  # rebuilt from the API server's copy next cycle
    # The watch has not delivered the write: the cache still shows the state replaced.
    state = rebuild_state(e, agents)
    assert state.agents[AgentId("team", "a")] == AFTER
    assert state.agents[AgentId("team", "b")] == BEFORE
    # What was remembered is used once: a later rebuild reads the cache as it is.
    assert e.agent_writes == {}
    assert rebuild_state(e, agents).agents[AgentId("team", "a")] == BEFORE


async def test_a_value_the_replica_did_not_replace_is_read_as_it_is() -> None:
    e, agents, _ = await persisted(ok=False)
    other = AgentState(healthy_since=datetime(2026, 12, 2, tzinfo=UTC))
    a = AgentId("team", "a")
    agents[a] = workload("a", other.to_dict())  # another write since (a person, a replica)
    assert rebuild_state(e, agents).agents[a] == other


async def test_after_a_stored_cycle_nothing_is_kept() -> None:
    e, _, executor = await persisted(ok=True)
    assert executor.written
    assert e.agent_writes == {}
    assert e.state is not None
    assert isinstance(e.state, PolicyState)
