"""The operator's users of the Kubernetes layer without a server: the workload cache on
``httpx.MockTransport``, the policy store and the leader elector on a scripted client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from agentmedic.kube import AsyncKube
from agentmedic.operator.leader import LeaderElector, LeaseConfig
from agentmedic.operator.persistence import PolicyStore, Snapshot, StoreError
from agentmedic.operator.watch import CachedWorkload, WorkloadCache
from tests.unit.test_kube import ScriptedKube, _api_error


def _deployment(name: str, rv: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "agents",
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"team": "a"},
            "annotations": {"agentmedic.io/x": "1", "other": "dropped"},
        },
        "spec": {"replicas": replicas},
    }


def test_the_cache_lists_watches_and_lists_again_when_the_version_expired() -> None:
    lists = {"Deployment": 0, "StatefulSet": 0}
    list_versions: list[str | None] = []
    watches = {"Deployment": 0, "StatefulSet": 0}
    hold = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        kind = "Deployment" if "deployments" in request.url.path else "StatefulSet"
        assert request.url.params["labelSelector"] == "team=a"
        if request.url.params.get("watch") != "true":
            lists[kind] += 1
            if kind == "Deployment":
                list_versions.append(request.url.params.get("resourceVersion"))
            items = [_deployment("bot", "1")] if kind == "Deployment" else []
            if kind == "Deployment" and lists[kind] > 1:  # what the watch saw, and more
                items = [_deployment("bot", "2", replicas=0), _deployment("late", "5")]
            return httpx.Response(200, json={"items": items, "metadata": {"resourceVersion": "1"}})
        watches[kind] += 1
        if kind == "Deployment" and watches[kind] == 1:
            events = [
                {"type": "MODIFIED", "object": _deployment("bot", "2", replicas=0)},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "old"}},
            ]
            body = "\n".join(json.dumps(e) for e in events)
            return httpx.Response(200, content=body.encode())
        await hold.wait()  # a quiet watch
        return httpx.Response(200, content=b"")

    changes: list[tuple[str, int | None, int | None]] = []
    late_seen = asyncio.Event()

    def on_change(before: CachedWorkload | None, after: CachedWorkload | None) -> None:
        either = after or before
        assert either is not None
        changes.append(
            (
                either.name,
                None if before is None else before.replicas,
                None if after is None else after.replicas,
            )
        )
        if after is not None and after.name == "late":
            late_seen.set()

    async def run() -> list[CachedWorkload]:
        http = AsyncKube(
            k8s.Configuration(host="http://127.0.0.1:1"), transport=httpx.MockTransport(handler)
        )
        cache = WorkloadCache(http, on_change=on_change)
        try:
            cache.subscribe("p", "agents", "team=a", ())
            async with asyncio.timeout(30):
                await late_seen.wait()
                await cache.wait_synced()
            found = cache.workloads("agents", "team=a")
            assert found is not None
            return found
        finally:
            await cache.aclose()
            await http.aclose()

    found = asyncio.run(run())
    assert [w.name for w in found] == ["bot", "late"]
    bot = found[0]
    assert bot.replicas == 0
    assert bot.annotations == {"agentmedic.io/x": "1"}
    # listed, then changed by the watch, then the list after 410 adds what was missed
    assert changes == [("bot", None, 1), ("bot", 1, 0), ("late", None, 1)]
    assert lists["Deployment"] == 2
    # The first list may come from the server's watch cache; after 410 the current state.
    assert list_versions == ["0", None]


def test_the_cache_s_annotated_view_follows_the_watch_and_asks_for_no_timeout() -> None:
    """What the restore poll reads: only the workloads carrying one of the keys, sorted,
    kept while nothing changes and rebuilt when the watch changes one. Watches ask for
    between one and two timeouts (so watches opened together do not all end together)."""
    step = asyncio.Event()
    timeouts: list[int] = []

    def marked(name: str, rv: str, mark: bool) -> dict[str, Any]:
        obj = _deployment(name, rv)
        obj["metadata"]["annotations"] = {"agentmedic.io/restore": "true"} if mark else {}
        return obj

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") != "true":
            items = (
                [marked("b", "1", True), marked("a", "1", False), marked("c", "1", True)]
                if "deployments" in request.url.path
                else []
            )
            return httpx.Response(200, json={"items": items, "metadata": {"resourceVersion": "1"}})
        timeouts.append(int(request.url.params["timeoutSeconds"]))
        if "deployments" in request.url.path and len(timeouts) <= 2:
            await step.wait()
            event = {"type": "MODIFIED", "object": marked("a", "2", True)}
            return httpx.Response(200, content=json.dumps(event).encode())
        await asyncio.Event().wait()  # quiet
        raise AssertionError

    async def run() -> list[list[str] | None]:
        http = AsyncKube(
            k8s.Configuration(host="http://127.0.0.1:1"), transport=httpx.MockTransport(handler)
        )
        changed = asyncio.Event()
        cache = WorkloadCache(
            http, watch_timeout_seconds=100, on_change=lambda before, after: changed.set()
        )
        keys = frozenset({"agentmedic.io/restore"})
        seen: list[list[str] | None] = [cache.annotated("agents", "team=a", keys)]
        try:
            cache.subscribe("p", "agents", "team=a", ())
            await asyncio.wait_for(cache.wait_synced(), 30)
            first = cache.annotated("agents", "team=a", keys)
            assert first is not None
            first.clear()  # a copy: the caller's to keep or change
            for _ in range(2):
                found = cache.annotated("agents", "team=a", keys)
                seen.append(None if found is None else [w.name for w in found])
            changed.clear()  # the lists' changes are in
            step.set()
            await asyncio.wait_for(changed.wait(), 30)
            found = cache.annotated("agents", "team=a", keys)
            seen.append(None if found is None else [w.name for w in found])
            everyone = cache.workloads("agents", "team=a")
            seen.append(None if everyone is None else [w.name for w in everyone])
        finally:
            await cache.aclose()
            await http.aclose()
        return seen

    seen = asyncio.run(run())
    assert seen == [None, ["b", "c"], ["b", "c"], ["a", "b", "c"], ["a", "b", "c"]]
    assert timeouts
    assert all(100 <= t <= 200 for t in timeouts)


def test_a_fenced_store_sends_nothing_and_a_leader_s_write_is_counted() -> None:
    kube = ScriptedKube([b'{"metadata": {"resourceVersion": "8", "annotations": {"s": "2"}}}'])
    verbs: list[str] = []
    leading = [False]

    async def no_wait(_: float) -> None:
        return None

    store = PolicyStore(kube, sleep=no_wait, observe=verbs.append, fence=lambda: leading[0])
    snapshot = Snapshot("7", {"s": "1"})
    with pytest.raises(StoreError, match="not the leader"):
        asyncio.run(store.write_annotations("agents", "p", snapshot, {"s": "2"}))
    assert kube.sent == []
    leading[0] = True
    after = asyncio.run(store.write_annotations("agents", "p", snapshot, {"s": "2"}))
    assert after.resource_version == "8"
    assert after.annotations == {"s": "2"}
    assert verbs == ["patch"]
    assert kube.sent[0]["body"]["metadata"]["resourceVersion"] == "7"


def test_a_store_read_failing_for_good_is_a_store_error_naming_the_policy() -> None:
    kube = ScriptedKube([_api_error(403)])

    async def no_wait(_: float) -> None:
        return None

    with pytest.raises(StoreError, match="cannot read agents/p: 403 Forbidden"):
        asyncio.run(PolicyStore(kube, sleep=no_wait).get("agents", "p"))


def test_the_elector_creates_a_missing_lease_and_leads() -> None:
    created = json.dumps({"metadata": {"resourceVersion": "1"}}).encode()
    kube = ScriptedKube([_api_error(404), created])
    changes: list[bool] = []

    async def changed(leading: bool) -> None:
        changes.append(leading)

    elector = LeaderElector(
        kube, LeaseConfig("ops", "am", "me"), on_change=changed, clock=lambda: 100.0
    )
    asyncio.run(elector.step())
    assert changes == [True]
    assert elector.is_leader()
    get, create = kube.sent
    assert get["method"] == "GET"
    assert create["method"] == "POST"
    assert create["body"]["spec"]["holderIdentity"] == "me"


def test_the_elector_waits_out_another_holder_s_lease_then_takes_it_over() -> None:
    lease = {
        "metadata": {"resourceVersion": "4"},
        "spec": {"holderIdentity": "other", "renewTime": "t1", "leaseTransitions": 2},
    }
    raw = json.dumps(lease).encode()
    now = [100.0]
    kube = ScriptedKube([raw, raw, b"{}"])

    async def changed(_: bool) -> None:
        return None

    elector = LeaderElector(
        kube, LeaseConfig("ops", "am", "me", duration=15), on_change=changed, clock=lambda: now[0]
    )
    asyncio.run(elector.step())
    assert not elector.is_leader()
    now[0] += 16  # the holder's record has not moved for longer than the lease duration
    asyncio.run(elector.step())
    assert elector.is_leader()
    put = kube.sent[-1]
    assert put["method"] == "PUT"
    assert put["body"]["metadata"]["resourceVersion"] == "4"
    assert put["body"]["spec"]["leaseTransitions"] == 3
