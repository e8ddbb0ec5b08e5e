"""Label-selected list+watch of agent workloads, feeding a slim in-memory cache.

Why not kopf's own watch: kopf watches a resource kind in full (every Deployment in
scope) and filters labels client-side; at 10,000 workloads that is 10,000 full objects
held and every change to any of them delivered. Instead each distinct (namespace, label
selector, kind) that some policy uses gets one LIST and then one long-lived WATCH,
filtered by the API server (``labelSelector``), and the cache keeps only the fields the
operator reads (:class:`CachedWorkload`, a few hundred bytes). Cost: one watch connection per
distinct selector and kind; zero requests per evaluation cycle in steady state; memory in
proportion to the selected workloads only.

Requests go through :class:`agentmedic.kube.AsyncKube` (``httpx``, with the credentials
of the ``kubernetes`` configuration; watches on a connection pool of their own).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agentmedic.actions.gitops import detect_manager
from agentmedic.kube import AsyncKube, Gone, KubeError, RetryPolicy, authorization
from agentmedic.kube.paths import WORKLOAD_KINDS, workload_path

__all__ = [
    "CachedWorkload",
    "WorkloadCache",
    "authorization",
    "workload_from_object",
]

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "agentmedic.io/"
AGENT_NAME_LABEL = "agentmedic.io/agent"


_KINDS = WORKLOAD_KINDS

LISTS_AT_ONCE = 16
"""LISTs in flight at once. At start-up every subscription lists (two per policy): a
thousand policies sent 2,000 at once, which queued in the client's pool past its timeout
on a busy API server and were retried, again and again."""

_RECONNECT = RetryPolicy(base=0.5, cap=30.0)
"""Backoff between a failed list or watch and the next list (the loop never gives up)."""


@dataclass(frozen=True, slots=True)
class CachedWorkload:
    """What the operator's cache keeps of an agent's Deployment or StatefulSet (not the
    engine's :class:`agentmedic.engine.Workload`, nor the actions'
    :class:`agentmedic.actions.WorkloadInfo`).

    The cache holds one per agent (10,000 at 10,000 agents), so it has slots instead of a
    ``__dict__``, and the strings every workload repeats (kind, namespace, label and
    annotation keys, label values, the environment's names and values) are interned: the
    JSON decoder makes a new string for each occurrence."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    agent: str
    """The agent's name in the metrics: label agentmedic.io/agent, else the workload name."""
    replicas: int
    labels: dict[str, str]
    annotations: dict[str, str]
    """Only the agentmedic.io/* annotations."""
    env: dict[tuple[str, str], str]
    """(container, variable) → literal value, for the variables some policy reads the model from."""
    managed_by: str | None = None
    """The GitOps tool managing it, in words (actions/gitops.py), or None."""


def workload_from_object(obj: dict[str, Any], env_names: Iterable[str] = ()) -> CachedWorkload:
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    wanted = set(env_names)
    env: dict[tuple[str, str], str] = {}
    if wanted:
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        for container in containers:
            for var in container.get("env") or []:
                if var.get("name") in wanted and "value" in var:
                    where = (_intern(container.get("name", "")), _intern(var["name"]))
                    env[where] = _intern(str(var["value"]))
    raw_labels = meta.get("labels") or {}
    labels = {_intern(k): _intern(v) for k, v in raw_labels.items()}
    raw_annotations = meta.get("annotations") or {}
    replicas = spec.get("replicas")
    return CachedWorkload(
        kind=_intern(obj.get("kind", "")),
        namespace=_intern(meta.get("namespace", "")),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        agent=labels.get(AGENT_NAME_LABEL, meta.get("name", "")),
        replicas=1 if replicas is None else int(replicas),
        labels=labels,
        annotations={
            _intern(k): v for k, v in raw_annotations.items() if k.startswith(ANNOTATION_PREFIX)
        },
        env=env,
        managed_by=_manager(labels, raw_annotations),
    )


def _intern(text: str) -> str:
    return sys.intern(text) if type(text) is str else text


def _manager(labels: dict[str, str], annotations: dict[str, str]) -> str | None:
    found = detect_manager(labels, annotations)
    return None if found is None else found.describe()


@dataclass
class _Subscription:
    namespace: str
    selector: str
    kind: str
    items: dict[str, CachedWorkload] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    users: set[str] = field(default_factory=set)
    restart: bool = False
    version: int = 0
    """Changes when ``items`` changes (unique across subscriptions: the cache's counter)."""


class WorkloadCache:
    """One list+watch per distinct (namespace, selector, kind); reads are in-memory.

    Each watch asks the server to end it after between ``watch_timeout_seconds`` and twice
    that, at random (as client-go's reflectors do): watches opened together at start-up
    then do not all end, and reopen, at the same moment."""

    def __init__(
        self,
        http: AsyncKube,
        *,
        watch_timeout_seconds: int = 300,
        on_change: Callable[[CachedWorkload | None, CachedWorkload | None], None] | None = None,
    ) -> None:
        self._http = http
        self._subs: dict[tuple[str, str, str], _Subscription] = {}
        self._env_names: set[str] = set()
        self._timeout = watch_timeout_seconds
        self._rng = random.Random()
        self._on_change = on_change
        self._lists = asyncio.Semaphore(LISTS_AT_ONCE)
        self._changes = 0
        self._views: dict[tuple[str, str, frozenset[str]], _View] = {}
        self.requests = 0
        """LIST and WATCH requests sent since start (for the benchmark and tests)."""

    def subscribe(self, user: str, namespace: str, selector: str, env_names: Iterable[str]) -> None:
        """Make sure workloads matching ``selector`` in ``namespace`` are watched for ``user``."""
        new_env = set(env_names) - self._env_names
        if new_env:
            self._env_names |= new_env
            for sub in self._subs.values():  # they dropped those variables: list again
                self._restart(sub)
        for kind in _KINDS:
            key = (namespace, selector, kind)
            existing = self._subs.get(key)
            if existing is None:
                sub = self._subs[key] = _Subscription(namespace, selector, kind)
                self._changed(sub)
                sub.task = asyncio.get_running_loop().create_task(
                    self._run(sub), name=f"watch {kind} {namespace} {selector}"
                )
            else:
                sub = existing
            sub.users.add(user)

    def unsubscribe(self, user: str) -> None:
        for key, sub in list(self._subs.items()):
            sub.users.discard(user)
            if not sub.users:
                if sub.task is not None:
                    sub.task.cancel()
                del self._subs[key]
                self._views = {k: v for k, v in self._views.items() if k[:2] != key[:2]}

    def workloads(self, namespace: str, selector: str) -> list[CachedWorkload] | None:
        """Selected workloads (by kind, then name), or None while a watch has not completed
        its first list. Sorted once per change of the selection, not per call."""
        view = self._view(namespace, selector, frozenset())
        return None if view is None else list(view)

    def annotated(
        self, namespace: str, selector: str, keys: frozenset[str]
    ) -> list[CachedWorkload] | None:
        """The selected workloads that carry one of the annotations ``keys`` (by kind, then
        name), or None while a watch has not completed its first list: what a poll for
        requests on annotations reads, without going through every workload each time."""
        view = self._view(namespace, selector, keys)
        return None if view is None else list(view)

    def _view(
        self, namespace: str, selector: str, keys: frozenset[str]
    ) -> tuple[CachedWorkload, ...] | None:
        subs = []
        for kind in _KINDS:
            sub = self._subs.get((namespace, selector, kind))
            if sub is None or not sub.synced.is_set():
                return None
            subs.append(sub)
        versions = tuple(sub.version for sub in subs)
        key = (namespace, selector, keys)
        view = self._views.get(key)
        if view is None or view.versions != versions:
            chosen = [
                w
                for sub in subs
                for w in sub.items.values()
                if not keys or not keys.isdisjoint(w.annotations)
            ]
            chosen.sort(key=_by_kind_and_name)
            view = self._views[key] = _View(versions, tuple(chosen))
        return view.workloads

    def _changed(self, sub: _Subscription) -> None:
        self._changes += 1
        sub.version = self._changes

    async def wait_synced(self) -> None:
        """Wait until every watch has listed once (wrap in asyncio.timeout)."""
        for sub in list(self._subs.values()):
            await sub.synced.wait()

    def size(self) -> int:
        return sum(len(s.items) for s in self._subs.values())

    async def aclose(self) -> None:
        tasks = [s.task for s in self._subs.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._subs.clear()

    def _restart(self, sub: _Subscription) -> None:
        if sub.task is not None:
            sub.task.cancel()
        sub.task = asyncio.get_running_loop().create_task(self._run(sub))

    async def _run(self, sub: _Subscription) -> None:
        path = workload_path(sub.kind, sub.namespace)
        failures = 0
        rng = random.Random()
        first = True
        while True:
            try:
                version = await self._list(sub, path, cached=first)
                first, failures = False, 0
                while True:
                    version = await self._watch(sub, path, version)
            except asyncio.CancelledError:
                raise
            except Gone:  # the version expired: list again at once
                continue
            except Exception as exc:  # any failure: back off and list again
                delay = _RECONNECT.delay(min(failures, 16), rng)
                failures += 1
                log.warning(
                    "watch of %s in %s (%s) failed: %s; retrying in %.1fs",
                    sub.kind,
                    sub.namespace,
                    sub.selector,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _list(self, sub: _Subscription, path: str, *, cached: bool = False) -> str:
        """List the selection. ``cached``: the first list of a subscription, which the API
        server may answer from its watch cache (``resourceVersion=0``, as client-go's
        reflectors do) instead of a read of every workload of the namespace from etcd: at
        start-up that is two per policy, each scanning all the namespace's workloads.
        Lists after an expired version or a failure read the current state."""
        params = {"labelSelector": sub.selector}
        if cached:
            params["resourceVersion"] = "0"
        async with self._lists:
            self.requests += 1
            data = await self._http.get_json(path, params)
        fresh = {}
        for obj in data.get("items", []):
            obj.setdefault("kind", sub.kind)
            w = workload_from_object(obj, self._env_names)
            fresh[w.name] = w
        old = sub.items
        sub.items = fresh
        self._changed(sub)
        if self._on_change is not None:
            for name in old.keys() | fresh.keys():
                if old.get(name) != fresh.get(name):
                    self._on_change(old.get(name), fresh.get(name))
        sub.synced.set()
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, sub: _Subscription, path: str, version: str) -> str:
        self.requests += 1
        params = {
            "labelSelector": sub.selector,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self._timeout * (1.0 + self._rng.random()))),
        }
        async for event in self._http.watch(path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            obj.setdefault("kind", sub.kind)
            w = workload_from_object(obj, self._env_names)
            before = sub.items.get(w.name)
            if kind == "DELETED":
                sub.items.pop(w.name, None)
                after = None
            else:
                sub.items[w.name] = w
                after = w
            self._changed(sub)
            if self._on_change is not None and before != after:
                self._on_change(before, after)
        return version


@dataclass(frozen=True)
class _View:
    """A selection's workloads as of its subscriptions' versions."""

    versions: tuple[int, ...]
    workloads: tuple[CachedWorkload, ...]


def _by_kind_and_name(w: CachedWorkload) -> tuple[str, str]:
    return (w.kind, w.name)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KubeError):
        return f"HTTP {exc.status} ({exc.reason})" if exc.status else str(exc.reason)
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
