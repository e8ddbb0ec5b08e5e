"""Leader election on a Lease and optimistic writes of an AgentPolicy, against the API
emulator. The electors' clocks are one shared fake monotonic clock, stepped by the test:
no assertion depends on the wall clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from agentmedic.operator.leader import LeaderElector, LeaseConfig
from agentmedic.operator.persistence import PolicyStore, Snapshot, StoreError, SupersededError
from agentmedic_sandbox.emulator import ApiEmulator

NS = "agents"
API = "agentmedic.io/v1alpha1"
STATE = "agentmedic.io/state"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu() -> Iterator[ApiEmulator]:
    with ApiEmulator() as api:
        yield api


def _elector(emu: ApiEmulator, identity: str, clock: Clock, log: list[Any]) -> LeaderElector:
    api = kubernetes.client.CoordinationV1Api(
        kubernetes.client.ApiClient(emu.client_configuration())
    )

    async def changed(leading: bool) -> None:
        log.append((identity, leading))

    return LeaderElector(
        api,
        LeaseConfig(NS, "am", identity, duration=15, renew_deadline=10, retry=2),
        on_change=changed,
        clock=clock,
    )


def test_of_replicas_started_together_exactly_one_leads(emu: ApiEmulator) -> None:
    clock, log = Clock(), []
    electors = [_elector(emu, f"r{i}", clock, log) for i in range(3)]

    async def scenario() -> None:
        await asyncio.gather(*(e.step() for e in electors))
        for _ in range(3):
            clock.now += 2
            await asyncio.gather(*(e.step() for e in electors))

    asyncio.run(scenario())
    leaders = [e.config.identity for e in electors if e.is_leader()]
    assert len(leaders) == 1
    lease = emu.get("coordination.k8s.io/v1", "Lease", NS, "am")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == leaders[0]
    assert log == [(leaders[0], True)]


def test_a_standby_takes_over_only_after_the_lease_expired_and_the_old_leader_stopped_first(
    emu: ApiEmulator,
) -> None:
    clock, log = Clock(), []
    a, b = _elector(emu, "a", clock, log), _elector(emu, "b", clock, log)

    async def scenario() -> list[tuple[float, bool, bool]]:
        await a.step()
        await b.step()
        seen = []
        # a is frozen from here on (no more steps); b keeps checking every 2 s.
        for _ in range(10):
            clock.now += 2
            await b.step()
            seen.append((clock.now - 1000.0, a.is_leader(), b.is_leader()))
        return seen

    seen = asyncio.run(scenario())
    # Never two leaders at once, and the old one's term ends before the new one's begins.
    assert all(not (old and new) for _, old, new in seen)
    a_until = max(t for t, old, _ in seen if old)
    b_from = min(t for t, _, new in seen if new)
    assert a_until < 10 <= 15 <= b_from
    assert log == [("a", True), ("b", True)]


def test_a_leader_that_stops_hands_the_lease_over_at_once(emu: ApiEmulator) -> None:
    clock, log = Clock(), []
    a, b = _elector(emu, "a", clock, log), _elector(emu, "b", clock, log)

    async def scenario() -> None:
        await a.step()
        await b.step()
        await a.stop()
        clock.now += 2  # one retry period, far less than the lease
        await b.step()

    asyncio.run(scenario())
    assert not a.is_leader()
    assert b.is_leader()
    assert log == [("a", True), ("a", False), ("b", True)]


def test_a_leader_that_cannot_renew_stops_acting_at_its_renew_deadline(emu: ApiEmulator) -> None:
    clock, log = Clock(), []
    a = _elector(emu, "a", clock, log)

    async def scenario() -> list[bool]:
        await a.step()
        emu.inject(method="*", path_regex=r"/leases/am$", status=503, times=100)
        states = []
        for _ in range(6):
            clock.now += 2
            await a.step()
            states.append(a.is_leader())
        return states

    assert asyncio.run(scenario()) == [True, True, True, True, False, False]
    assert log == [("a", True), ("a", False)]


# --------------------------------------------------------------------------- persistence


def _policy(emu: ApiEmulator) -> dict[str, Any]:
    return emu.create(
        {
            "apiVersion": API,
            "kind": "AgentPolicy",
            "metadata": {"name": "p", "namespace": NS, "annotations": {STATE: '{"v":1}'}},
            "spec": {
                "selector": {"matchLabels": {"team": "a"}},
                "rules": [
                    {
                        "name": "r",
                        "all": [{"metric": "error_rate", "window": "5m", "op": ">", "value": 1}],
                    }
                ],
            },
        }
    )


def _store(emu: ApiEmulator) -> PolicyStore:
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.client.ApiClient(emu.client_configuration())
    )

    async def no_wait(_: float) -> None:
        return None

    return PolicyStore(api, sleep=no_wait)


def test_a_write_meeting_another_writers_change_elsewhere_is_retried_from_a_fresh_read(
    emu: ApiEmulator,
) -> None:
    snapshot = Snapshot.of(_policy(emu), (STATE,))
    # kopf (say) writes its own annotation after our read: our resourceVersion is stale.
    emu.patch(API, "AgentPolicy", NS, "p", {"metadata": {"annotations": {"kopf": "x"}}})
    for status in (500, 429, 503):
        emu.inject(method="PATCH", path_regex=r"/agentpolicies/p$", status=status)
    after = asyncio.run(_store(emu).write_annotations(NS, "p", snapshot, {STATE: '{"v":2}'}))
    stored = emu.get(API, "AgentPolicy", NS, "p")
    assert stored is not None
    assert stored["metadata"]["annotations"] == {STATE: '{"v":2}', "kopf": "x"}
    assert after.resource_version == stored["metadata"]["resourceVersion"]
    ours = [
        r
        for r in emu.requests
        if r.method == "PATCH" and not r.injected and isinstance(r.body, dict)
    ]
    assert [r.status for r in ours] == [409, 200]
    assert all(r.body["metadata"]["resourceVersion"] for r in ours)


def test_a_write_over_state_another_replica_changed_is_abandoned(emu: ApiEmulator) -> None:
    snapshot = Snapshot.of(_policy(emu), (STATE,))
    emu.patch(API, "AgentPolicy", NS, "p", {"metadata": {"annotations": {STATE: '{"v":9}'}}})
    with pytest.raises(SupersededError):
        asyncio.run(_store(emu).write_annotations(NS, "p", snapshot, {STATE: '{"v":2}'}))
    stored = emu.get(API, "AgentPolicy", NS, "p")
    assert stored is not None
    assert stored["metadata"]["annotations"][STATE] == '{"v":9}'


def test_a_status_write_after_a_conflict_is_rebuilt_on_the_fresh_status(
    emu: ApiEmulator,
) -> None:
    snapshot = Snapshot.of(_policy(emu), ())
    emu.patch(
        API, "AgentPolicy", NS, "p", {"status": {"observedGeneration": 7}}, subresource="status"
    )
    bases: list[Any] = []

    def build(base: dict[str, Any] | None) -> dict[str, Any]:
        bases.append(base)
        return {"observedGeneration": 1 + ((base or {}).get("observedGeneration") or 0)}

    asyncio.run(_store(emu).write_status(NS, "p", snapshot, build))
    stored = emu.get(API, "AgentPolicy", NS, "p")
    assert stored is not None
    assert stored["status"]["observedGeneration"] == 8
    assert json.dumps(bases[-1]) == json.dumps({"observedGeneration": 7})


def test_a_fenced_store_writes_nothing(emu: ApiEmulator) -> None:
    snapshot = Snapshot.of(_policy(emu), (STATE,))
    store = _store(emu)
    store._fence = lambda: False
    with pytest.raises(StoreError, match="not the leader"):
        asyncio.run(store.write_annotations(NS, "p", snapshot, {STATE: '{"v":2}'}))
    assert not [r for r in emu.requests if r.method == "PATCH"]
