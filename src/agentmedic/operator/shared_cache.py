"""The shared channels and metrics backends, kept by list+watch: :class:`SharedCache`.

The operator watches every kind from its start (:meth:`SharedCache.want_all`), so that
each object gets its status on sight (:mod:`agentmedic.operator.shared_sweep`);
cluster-wide, or in each watched namespace when the operator watches namespaces (its Roles
are per namespace; the cluster-scoped kinds are then not watched and a reference to one is
refused with a reason saying so). Reads are in memory; a cycle sends no request for them.
A kind whose CRD is not installed (404) counts as listed and empty, and is listed again
now and then.

What is kept is the object's ``metadata.resourceVersion`` and ``spec``, so that the
resolution (:mod:`agentmedic.operator.refs`) parses each version once."""

from __future__ import annotations

import functools
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
from agentmedic.kube import AsyncKube
from agentmedic.operator.budget_watch import ResourceWatch

__all__ = ["CLUSTER_KINDS", "PLURALS", "SharedCache", "SharedObject"]

PLURALS = {
    "NotificationChannel": CHANNEL_PLURAL,
    "ClusterNotificationChannel": CLUSTER_CHANNEL_PLURAL,
    "MetricsBackend": METRICS_BACKEND_PLURAL,
    "ClusterMetricsBackend": CLUSTER_METRICS_BACKEND_PLURAL,
}
CLUSTER_KINDS = frozenset({CLUSTER_CHANNEL_KIND, CLUSTER_METRICS_BACKEND_KIND})

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


class SharedCache:
    """One list+watch per shared kind (and watched namespace) that some policy refers to:
    a :class:`~agentmedic.operator.budget_watch.ResourceWatch` each, which counts a kind
    that is not served as none and leaves out the changes of status alone (the operator's
    own status writes are no reason to evaluate again)."""

    def __init__(
        self,
        http: AsyncKube,
        namespaces: Iterable[str] = (),
        *,
        watch_timeout_seconds: int = 300,
    ) -> None:
        self._http = http
        self._namespaces = tuple(namespaces)
        self._watches: dict[tuple[str, str], ResourceWatch] = {}
        self._timeout = watch_timeout_seconds
        self.on_change: Callable[[str], None] | None = None
        """Called with the kind after its list or any change of one of its objects."""

    @property
    def requests(self) -> int:
        """LIST and WATCH requests sent since start."""
        return sum(w.requests for w in self._watches.values())

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
                watch = self._watches[key] = ResourceWatch(
                    self._http,
                    _path(kind, namespace),
                    functools.partial(self._changed, kind),
                    timeout_seconds=self._timeout,
                    ignore_status=True,
                    signal_first_list=True,
                    absent_retry_seconds=_NOT_INSTALLED_RETRY,
                    absent_hint=f"is the {kind} CRD installed? (`make crd`, or the chart's "
                    "crds/); references to it are not found",
                )
                watch.start()

    def want_all(self) -> None:
        """Watch every kind this operator may watch: each object gets its status on sight,
        whether or not anything refers to it."""
        for kind in PLURALS:
            self.want(kind)

    def objects(self) -> list[SharedObject]:
        """Every object of every watched kind."""
        return [
            _kept(kind, obj)
            for (kind, _), watch in self._watches.items()
            for obj in watch.items.values()
        ]

    def synced(self, kind: str, namespace: str) -> bool:
        """Whether ``kind`` has been listed where a policy of ``namespace`` looks for it."""
        watch = self._watch_for(kind, namespace)
        return watch is not None and watch.synced.is_set()

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
        obj = watch.items.get((scope, name))
        return None if obj is None else _kept(kind, obj)

    async def aclose(self) -> None:
        for watch in self._watches.values():
            await watch.aclose()
        self._watches.clear()

    def _watch_for(self, kind: str, namespace: str) -> ResourceWatch | None:
        if kind in CLUSTER_KINDS or not self._namespaces:
            return self._watches.get((kind, ""))
        return self._watches.get((kind, namespace))

    def _changed(self, kind: str) -> None:
        if self.on_change is not None:
            self.on_change(kind)


def _path(kind: str, namespace: str) -> str:
    base = f"/apis/{API_VERSION}"
    if namespace:
        return f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{base}/{PLURALS[kind]}"


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
