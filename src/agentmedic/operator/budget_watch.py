"""List+watch of finance's resources and of Namespaces' labels, in memory.

AgentBudgets, ClusterAgentBudgets and ModelPriceLists are few and small, so each kind gets
one LIST and then one long-lived WATCH of the whole kind (AgentBudgets per watched
namespace, or cluster-wide), through :class:`agentmedic.kube.AsyncKube` like the workload
cache; Namespaces are watched only while some ClusterAgentBudget selects namespaces by
label. Every change calls ``on_change`` so the budgets are evaluated again at once. A kind
that is not served (its CRD not installed) counts as no objects and is tried again later.

:class:`ResourceWatch` is the one list+watch loop of the operator's small kinds: finance's,
the AgentSilences (:mod:`agentmedic.operator.silences`) and the shared channels and
backends (:mod:`agentmedic.operator.shared_cache`, which has it ignore status-only changes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from agentmedic.api.budget import BUDGET_PLURAL, CLUSTER_BUDGET_PLURAL, PRICE_LIST_PLURAL
from agentmedic.api.types import GROUP, VERSION
from agentmedic.kube import AsyncKube, Gone, KubeError, RetryPolicy

__all__ = ["ResourceWatch", "budget_paths", "namespaces_path"]

log = logging.getLogger(__name__)

_RECONNECT = RetryPolicy(base=0.5, cap=30.0)

Key = tuple[str, str]
"""(namespace, name); namespace empty for cluster-scoped objects."""


def budget_paths(
    namespaces: list[str], read_cluster_kinds: bool = False
) -> dict[str, list[tuple[str, bool]]]:
    """The list paths of each finance kind, each with whether it is optional. An operator
    that watches named namespaces reads their AgentBudgets, and the cluster-scoped kinds
    only when told to (``readClusterKinds``: the chart's namespaced RBAC grants nothing
    cluster-wide, and asking would be refused every time); they are optional there, a kind
    the operator may not read counting as none (no ClusterAgentBudgets, the SDK's
    prices)."""
    api = f"/apis/{GROUP}/{VERSION}"
    cluster_wide = not namespaces
    budgets = (
        [f"{api}/{BUDGET_PLURAL}"]
        if cluster_wide
        else [f"{api}/namespaces/{ns}/{BUDGET_PLURAL}" for ns in namespaces]
    )
    paths: dict[str, list[tuple[str, bool]]] = {BUDGET_PLURAL: [(p, False) for p in budgets]}
    if cluster_wide or read_cluster_kinds:
        for plural in (CLUSTER_BUDGET_PLURAL, PRICE_LIST_PLURAL):
            paths[plural] = [(f"{api}/{plural}", not cluster_wide)]
    return paths


def namespaces_path() -> str:
    return "/api/v1/namespaces"


class ResourceWatch:
    """One list+watch of one path; ``items`` holds the objects as the API server sent them.

    ``installed`` says whether the API server served the path when it was last listed (a
    CRD not installed counts as no objects, listed again every ``absent_retry_seconds``,
    and ``on_change`` is called when it is picked up). With ``ignore_status`` a change of an
    object's status alone (the operator's own status writes) updates ``items`` without
    calling ``on_change``. With ``signal_first_list`` the first list calls it even when it
    found nothing.
    """

    def __init__(
        self,
        http: AsyncKube,
        path: str,
        on_change: Callable[[], None],
        *,
        optional: bool = False,
        timeout_seconds: int = 300,
        ignore_status: bool = False,
        absent_retry_seconds: float = _RECONNECT.cap,
        absent_hint: str = "",
        signal_first_list: bool = False,
    ) -> None:
        self._http = http
        self.path = path
        self._on_change = on_change
        self._timeout = timeout_seconds
        self._optional = optional
        """Forbidden counts as no objects too (tried again later), as not served (a CRD not
        installed) always does."""
        self._ignore_status = ignore_status
        self._absent_retry = absent_retry_seconds
        self._absent_hint = absent_hint
        """Said (as a warning) when the path is not served: what to install."""
        self._signal_first_list = signal_first_list
        """Call ``on_change`` after the first list even when it found nothing (something
        waits for it)."""
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.installed = True
        """False while the API server does not serve the path (its CRD is not installed)."""
        self.failing: str | None = None
        """Why the last list or watch failed, while it keeps failing (RBAC, a missing CRD)."""
        self.requests = 0
        """LIST and WATCH requests sent since start."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"watch {self.path}"
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        failures = 0
        rng = random.Random()
        while True:
            try:
                version = await self._list()
                failures = 0
                self.failing = None
                while True:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Gone:
                continue
            except Exception as exc:
                delay = _RECONNECT.delay(min(failures, 16), rng)
                failures += 1
                self.failing = _describe(exc)
                tolerated = (404, 403) if self._optional else (404,)
                if isinstance(exc, KubeError) and exc.status in tolerated:
                    self._absent(exc.status == 404)
                    await asyncio.sleep(self._absent_retry)
                    continue
                log.warning(
                    "watch of %s failed: %s; retrying in %.1fs", self.path, self.failing, delay
                )
                await asyncio.sleep(delay)

    def _absent(self, not_served: bool) -> None:
        """Not served (404), or forbidden where that is tolerated: counted as none."""
        installed = self.installed
        self.installed = not not_served
        if not self.synced.is_set() or self.items or installed != self.installed:
            if not_served and self._absent_hint:
                log.warning("%s is not served by the API server: %s", self.path, self._absent_hint)
            else:
                log.info("%s is not readable (%s): counted as none", self.path, self.failing)
            self.items = {}
            self.synced.set()
            self._on_change()

    async def _list(self) -> str:
        self.requests += 1
        data = await self._http.get_json(self.path, {})
        fresh = {_key(obj): obj for obj in data.get("items", [])}
        changed = fresh != self.items or not self.installed
        changed = changed or (self._signal_first_list and not self.synced.is_set())
        self.items = fresh
        self.installed = True
        self.synced.set()
        if changed:
            self._on_change()
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        self.requests += 1
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._timeout),
        }
        async for event in self._http.watch(self.path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            key = _key(obj)
            if kind == "DELETED":
                self.items.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                before = self.items.get(key)
                self.items[key] = obj
                if self._ignore_status and before is not None and _same_but_status(before, obj):
                    continue
            else:
                continue
            self._on_change()
        return version


def _same_but_status(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The two versions differ only in status (and the metadata every write moves)."""

    def rest(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {
            k: v
            for k, v in (obj.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields")
        }
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}

    return rest(before) == rest(after)


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KubeError):
        return f"HTTP {exc.status} ({exc.reason})" if exc.status else str(exc.reason)
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
