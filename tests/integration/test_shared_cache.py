"""The watch of shared channels and backends (operator/shared_cache.py) against the API
emulator: lazy, tolerant of a CRD that is not installed, and quiet about status writes; and
the two capabilities of ResourceWatch it rests on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentmedic.kube import AsyncKube
from agentmedic.operator.budget_watch import ResourceWatch
from agentmedic.operator.shared_cache import SharedCache
from agentmedic_sandbox.emulator import ApiEmulator

API = "agentmedic.io/v1alpha1"


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(what)


def backend(name: str, tenant: str) -> dict[str, object]:
    return {
        "apiVersion": API,
        "kind": "MetricsBackend",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"url": "https://mimir.example/prometheus", "tenant": tenant},
    }


def write_status(emu: ApiEmulator, name: str) -> None:
    """What the operator's status writer does."""
    patch = {"status": {"conditions": []}}
    emu.patch(API, "MetricsBackend", "team", name, patch, subresource="status")


async def test_a_kind_is_watched_once_wanted_and_status_writes_are_not_changes() -> None:
    with ApiEmulator() as emu:
        http = AsyncKube(emu.client_configuration())
        cache = SharedCache(http)
        changes: list[str] = []
        cache.on_change = changes.append
        try:
            emu.create(backend("mimir", "a"))
            await asyncio.sleep(0.1)
            assert cache.requests == 0  # nothing refers to the kind yet: no request
            cache.want("MetricsBackend")
            cache.want("MetricsBackend")
            await until(lambda: cache.synced("MetricsBackend", "team"), "the first list")
            found = cache.get("MetricsBackend", "team", "mimir")
            assert found is not None
            assert found.body["spec"]["tenant"] == "a"
            assert cache.get("MetricsBackend", "other", "mimir") is None
            assert changes == ["MetricsBackend"]

            emu.patch(API, "MetricsBackend", "team", "mimir", {"spec": {"tenant": "b"}})
            await until(lambda: len(changes) == 2, "the spec change")
            write_status(emu, "mimir")
            emu.create(backend("thanos", "c"))
            await until(lambda: cache.get("MetricsBackend", "team", "thanos") is not None, "add")
            # The spec change and the new object are changes; the status write is not.
            assert changes == ["MetricsBackend"] * 3
            emu.delete(API, "MetricsBackend", "team", "thanos")
            await until(lambda: cache.get("MetricsBackend", "team", "thanos") is None, "delete")
        finally:
            await cache.aclose()
            await http.aclose()


async def test_a_kind_whose_crd_is_not_installed_is_listed_as_empty_and_not_installed() -> None:
    with ApiEmulator(install_crd=False) as emu:
        http = AsyncKube(emu.client_configuration())
        cache = SharedCache(http)
        try:
            cache.want("ClusterNotificationChannel")
            await until(lambda: cache.synced("ClusterNotificationChannel", "x"), "the list")
            assert not cache.installed("ClusterNotificationChannel", "x")
            assert cache.get("ClusterNotificationChannel", "x", "oncall") is None
        finally:
            await cache.aclose()
            await http.aclose()


def test_an_operator_watching_namespaces_does_not_watch_cluster_kinds() -> None:
    cache = SharedCache(None, ["team"])  # type: ignore[arg-type]
    assert cache.watchable("MetricsBackend")
    assert not cache.watchable("ClusterMetricsBackend")
    cache.want("ClusterMetricsBackend")  # refused quietly: no watch, no request
    assert cache.requests == 0


async def test_a_kind_installed_later_is_picked_up_by_its_resource_watch() -> None:
    """ResourceWatch (the loop SharedCache, budgets and silences share): a path not served
    counts as none, is listed again, and its installation is a change."""
    with ApiEmulator(install_crd=False) as emu:
        http = AsyncKube(emu.client_configuration())
        changes: list[bool] = []
        watch = ResourceWatch(
            http,
            "/apis/agentmedic.io/v1alpha1/namespaces/team/metricsbackends",
            lambda: changes.append(watch.installed),
            ignore_status=True,
            absent_retry_seconds=0.05,
            signal_first_list=True,
        )
        watch.start()
        try:
            await until(watch.synced.is_set, "the first list")
            assert not watch.installed
            assert watch.items == {}
            assert changes == [False]
            emu.apply_crd()
            await until(lambda: watch.installed, "the CRD picked up")
            assert changes == [False, True], "installed: the kind is listed again, a change"
            emu.create(backend("mimir", "a"))
            await until(lambda: ("team", "mimir") in watch.items, "the new object")
            assert len(changes) == 3
            write_status(emu, "mimir")
            await until(lambda: "status" in watch.items[("team", "mimir")], "the status write")
            emu.patch(API, "MetricsBackend", "team", "mimir", {"metadata": {"labels": {"x": "y"}}})
            mimir = ("team", "mimir")
            await until(lambda: "labels" in watch.items[mimir]["metadata"], "the label change")
            assert len(changes) == 4, "the status write updated the object, not a change"
            assert watch.items[mimir]["status"] == {"conditions": []}
        finally:
            await watch.aclose()
            await http.aclose()
