"""The shared channels and metrics backends, kept by list+watch: :class:`SharedCache`.

A kind is watched from the first time a policy refers to it (no policy with a
``channelRef`` or ``metricsBackendRef``: no watch, no request), cluster-wide, or in each
watched namespace when the operator watches namespaces (its Roles are per namespace; the
cluster-scoped kinds are then not watched and a reference to one is refused with a
reason saying so). Reads are in memory; a cycle sends no request for them. A kind whose
CRD is not installed (404) counts as listed and empty, and is listed again now and then.

What is kept is the object's ``metadata.resourceVersion`` and ``spec``, so that the
resolution (:mod:`agentmedic.operator.refs`) parses each version once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agentmedic.api.refs import CLUSTER_CHANNEL_KIND, CLUSTER_METRICS_BACKEND_KIND
from agentmedic.api.shared import (
    CHANNEL_PLURAL,
    CLUSTER_CHANNEL_PLURAL,
    CLUSTER_METRICS_BACKEND_PLURAL,
    METRICS_BACKEND_PLURAL,
)
from agentmedic.api.types import API_VERSION
from agentmedic.kube import AsyncKube, Gone, KubeError, NotFound, RetryPolicy

__all__ = ["CLUSTER_KINDS", "PLURALS", "SharedCache", "SharedObject"]

log = logging.getLogger(__name__)

PLURALS = {
    "NotificationChannel": CHANNEL_PLURAL,
    "ClusterNotificationChannel": CLUSTER_CHANNEL_PLURAL,
    "MetricsBackend": METRICS_BACKEND_PLURAL,
    "ClusterMetricsBackend": CLUSTER_METRICS_BACKEND_PLURAL,
}
CLUSTER_KINDS = frozenset({CLUSTER_CHANNEL_KIND, CLUSTER_METRICS_BACKEND_KIND})

_RECONNECT = RetryPolicy(base=0.5, cap=30.0)
_NOT_INSTALLED_RETRY = 60.0
"""Seconds between lists of a kind whose CRD is not installed."""


@dataclass(frozen=True)
class SharedObject:
    """What the cache keeps of one shared channel or backend."""

    kind: str
    namespace: str
    """'' for a cluster-scoped kind."""
    name: str
    resource_version: str
    body: dict[str, Any]
    """apiVersion, kind, metadata (name, namespace) and spec, as the models read them."""
    generation: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    """As last written (by this operator)."""


@dataclass
class _Watch:
    kind: str
    namespace: str
    items: dict[tuple[str, str], SharedObject] = field(default_factory=dict)
    synced: bool = False
    installed: bool = True
    """False while the API server does not serve the kind (its CRD is not installed)."""
    task: asyncio.Task[None] | None = None


class SharedCache:
    """One list+watch per shared kind (and watched namespace) that some policy refers to."""

    def __init__(
        self,
        http: AsyncKube,
        namespaces: Iterable[str] = (),
        *,
        watch_timeout_seconds: int = 300,
    ) -> None:
        self._http = http
        self._namespaces = tuple(namespaces)
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._timeout = watch_timeout_seconds
        self.on_change: Callable[[str], None] | None = None
        """Called with the kind after its list or any change of one of its objects."""
        self.requests = 0
        """LIST and WATCH requests sent since start."""

    def watchable(self, kind: str) -> bool:
        """Whether this operator may watch ``kind``: the cluster-scoped kinds need a
        cluster-wide install."""
        return not self._namespaces or kind not in CLUSTER_KINDS

    def want(self, kind: str) -> None:
        """Make sure ``kind`` is watched (idempotent)."""
        if not self.watchable(kind):
            return
        scopes = [""] if kind in CLUSTER_KINDS or not self._namespaces else self._namespaces
        for namespace in scopes:
            key = (kind, namespace)
            if key not in self._watches:
                watch = self._watches[key] = _Watch(kind, namespace)
                watch.task = asyncio.get_running_loop().create_task(
                    self._run(watch), name=f"watch {kind} {namespace or 'cluster'}"
                )

    def synced(self, kind: str, namespace: str) -> bool:
        """Whether ``kind`` has been listed where a policy of ``namespace`` looks for it."""
        watch = self._watch_for(kind, namespace)
        return watch is not None and watch.synced

    def installed(self, kind: str, namespace: str) -> bool:
        """Whether the API server served ``kind`` when it was last listed."""
        watch = self._watch_for(kind, namespace)
        return watch is None or watch.installed

    def get(self, kind: str, namespace: str, name: str) -> SharedObject | None:
        """The object a policy of ``namespace`` means by (kind, name), if it exists."""
        watch = self._watch_for(kind, namespace)
        if watch is None:
            return None
        scope = "" if kind in CLUSTER_KINDS else namespace
        return watch.items.get((scope, name))

    async def aclose(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watches.clear()

    def _watch_for(self, kind: str, namespace: str) -> _Watch | None:
        if kind in CLUSTER_KINDS or not self._namespaces:
            return self._watches.get((kind, ""))
        return self._watches.get((kind, namespace))

    def _path(self, watch: _Watch) -> str:
        base = f"/apis/{API_VERSION}"
        plural = PLURALS[watch.kind]
        if watch.namespace:
            return f"{base}/namespaces/{watch.namespace}/{plural}"
        return f"{base}/{plural}"

    async def _run(self, watch: _Watch) -> None:
        path = self._path(watch)
        failures = 0
        rng = random.Random()
        while True:
            try:
                version = await self._list(watch, path)
                failures = 0
                while True:
                    version = await self._watch(watch, path, version)
            except asyncio.CancelledError:
                raise
            except Gone:
                continue
            except NotFound:
                # The CRD is not installed: nothing of this kind exists (evidence, not a
                # fault), so references to it are not found. Look again later.
                if not watch.synced or watch.items:
                    log.warning(
                        "%s is not served by the API server (is its CRD installed? "
                        "`make crd`, or the chart's crds/); references to it are not found",
                        watch.kind,
                    )
                watch.items, watch.synced, watch.installed = {}, True, False
                self._changed(watch.kind)
                await asyncio.sleep(_NOT_INSTALLED_RETRY)
            except Exception as exc:
                delay = _RECONNECT.delay(min(failures, 16), rng)
                failures += 1
                reason = f"HTTP {exc.status}" if isinstance(exc, KubeError) else type(exc).__name__
                log.warning("watch of %s failed (%s); retrying in %.1fs", watch.kind, reason, delay)
                await asyncio.sleep(delay)

    async def _list(self, watch: _Watch, path: str) -> str:
        self.requests += 1
        data = await self._http.get_json(path, {})
        watch.items = {}
        for obj in data.get("items", []):
            kept = _kept(watch.kind, obj)
            watch.items[(kept.namespace, kept.name)] = kept
        watch.synced = watch.installed = True
        self._changed(watch.kind)
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, watch: _Watch, path: str, version: str) -> str:
        self.requests += 1
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._timeout),
        }
        async for event in self._http.watch(path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            kept = _kept(watch.kind, obj)
            key = (kept.namespace, kept.name)
            before = watch.items.get(key)
            if kind == "DELETED":
                watch.items.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                watch.items[key] = kept
            else:
                continue
            # A status written by the operator itself is no reason to evaluate again.
            if kind == "DELETED" or before is None or before.body != kept.body:
                self._changed(watch.kind)
        return version

    def _changed(self, kind: str) -> None:
        if self.on_change is not None:
            self.on_change(kind)


def _kept(kind: str, obj: dict[str, Any]) -> SharedObject:
    meta = obj.get("metadata") or {}
    namespace = "" if kind in CLUSTER_KINDS else str(meta.get("namespace", ""))
    name = str(meta.get("name", ""))
    body = {
        "apiVersion": obj.get("apiVersion", API_VERSION),
        "kind": kind,
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": obj.get("spec"),
    }
    status = obj.get("status")
    return SharedObject(
        kind,
        namespace,
        name,
        str(meta.get("resourceVersion", "")),
        body,
        generation=int(meta.get("generation") or 0),
        status=status if isinstance(status, dict) else {},
    )
