"""Writes to an AgentPolicy that survive API-server faults and never lose an update.

Every write carries the ``metadata.resourceVersion`` it was computed from, so the API
server refuses it (409) when the object changed since. On 409 the object is read again:

- when the fields the write owns are still as this operator last saw them, only something
  else changed (kopf's own annotations, the spec, status): the same write is sent again
  with the fresh resourceVersion;
- otherwise another writer changed them (a replica that held the Lease meanwhile): the
  write is abandoned (:class:`SupersededError`) and the caller rebuilds its memory from the
  fresh object instead of overwriting it.

429, 5xx, timeouts and connection errors are retried with bounded backoff. A retried
PATCH whose first attempt did land is then refused with 409 (the resourceVersion moved)
and the fresh read shows the fields already as wanted: nothing is written twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentmedic.api.types import GROUP, PLURAL, VERSION
from agentmedic.kube import Conflict, CustomObjects, Kube, KubeError, NotFound, RetryPolicy

__all__ = [
    "NOTIFICATIONS_ANNOTATION",
    "PolicyStore",
    "Snapshot",
    "StoreError",
    "SupersededError",
]

log = logging.getLogger(__name__)

NOTIFICATIONS_ANNOTATION = f"{GROUP}/notifications"
"""The policy's delivery ledger and its outbox (messages reserved and not yet settled)."""


class StoreError(Exception):
    """The write or read did not succeed within the retries (or was refused for good)."""


class SupersededError(Exception):
    """Another writer changed the fields this write owns since this operator read them."""

    def __init__(self, fresh: Mapping[str, Any]) -> None:
        super().__init__("the policy's state was changed by another writer")
        self.fresh = fresh


@dataclass
class Snapshot:
    """What this operator last read or wrote of one AgentPolicy."""

    resource_version: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    """Only the annotations this operator owns."""
    status: dict[str, Any] | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any], owned: tuple[str, ...]) -> Snapshot:
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        status = obj.get("status")
        return cls(
            resource_version=meta.get("resourceVersion"),
            annotations={k: annotations[k] for k in owned if k in annotations},
            status=dict(status) if isinstance(status, Mapping) else None,
        )


def _detail(exc: KubeError) -> str:
    return f"{exc.status} {exc.reason}" if exc.status else str(exc.reason)


class PolicyStore:
    """Reads and optimistic writes of AgentPolicies through :mod:`agentmedic.kube`."""

    def __init__(
        self,
        kube: Any,
        *,
        attempts: int = 6,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        request_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observe: Callable[[str], None] | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        """``kube`` is a :class:`~agentmedic.kube.Kube` (or, for callers that still hold
        one, a ``kubernetes`` API object whose connection pool it shares). ``fence`` is
        asked before every write: a replica that lost the Lease writes nothing
        (:class:`StoreError`)."""
        self._objects = CustomObjects(
            Kube.of(kube),
            retry=RetryPolicy(attempts=attempts, base=backoff, cap=max_backoff),
            request_timeout=request_timeout,
            sleep=sleep,
        )
        self._observe = observe or (lambda _verb: None)
        self._fence = fence or (lambda: True)

    def _reading(self) -> None:
        self._observe("get")

    def _writing(self) -> None:
        if not self._fence():
            raise StoreError("not the leader: nothing is written")
        self._observe("patch")

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it is gone; :class:`StoreError` when it cannot be read."""
        try:
            return await self._objects.get(
                GROUP, VERSION, PLURAL, namespace, name, guard=self._reading
            )
        except KubeError as exc:
            raise StoreError(f"cannot read {namespace}/{name}: {_detail(exc)}") from None

    async def write_annotations(
        self,
        namespace: str,
        name: str,
        snapshot: Snapshot,
        wanted: Mapping[str, str | None],
        *,
        conflicts: int = 8,
    ) -> Snapshot:
        """Set (or with None remove) owned annotations, based on ``snapshot``.

        Returns the new snapshot. Raises :class:`SupersededError` when another writer changed
        one of ``wanted``'s annotations since ``snapshot``, :class:`StoreError` otherwise.
        """
        owned = tuple(wanted)
        for _ in range(conflicts):
            obj = await self._write(
                self._objects.patch_annotations, namespace, name, wanted, snapshot, ""
            )
            if obj is not None:
                fresh = Snapshot.of(obj, owned)
                fresh.annotations = {**snapshot.annotations, **fresh.annotations}
                for key, value in wanted.items():
                    if value is None:
                        fresh.annotations.pop(key, None)
                return fresh
            current = await self._reread(namespace, name)
            now = Snapshot.of(current, owned)
            for key, value in wanted.items():
                theirs = now.annotations.get(key)
                if theirs != snapshot.annotations.get(key) and theirs != value:
                    raise SupersededError(current)
            snapshot = Snapshot(
                now.resource_version, {**snapshot.annotations, **now.annotations}, now.status
            )
        raise StoreError(f"cannot write {namespace}/{name}: it keeps changing")

    async def write_status(
        self,
        namespace: str,
        name: str,
        snapshot: Snapshot,
        build: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        conflicts: int = 8,
    ) -> tuple[Snapshot, dict[str, Any] | None]:
        """Patch status with ``build(status it is based on)`` (None: nothing to write).

        On 409 the status is rebuilt from the fresh object's, so what another writer put
        there (a longer recentActions ring, say) is merged, not overwritten.
        """
        for _ in range(conflicts):
            patch = build(snapshot.status)
            if patch is None:
                return snapshot, None
            obj = await self._write(
                self._objects.patch_status, namespace, name, patch, snapshot, "the status of "
            )
            if obj is not None:
                fresh = Snapshot.of(obj, ())
                return (
                    Snapshot(fresh.resource_version, snapshot.annotations, fresh.status),
                    patch,
                )
            current = await self._reread(namespace, name)
            now = Snapshot.of(current, ())
            snapshot = Snapshot(now.resource_version, snapshot.annotations, now.status)
        raise StoreError(f"cannot write the status of {namespace}/{name}: it keeps changing")

    async def _write(
        self,
        patch: Callable[..., Awaitable[dict[str, Any]]],
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        snapshot: Snapshot,
        target: str,
    ) -> dict[str, Any] | None:
        """``patch`` based on ``snapshot``: the object after, or None on a conflict."""
        try:
            return await patch(
                GROUP,
                VERSION,
                PLURAL,
                namespace,
                name,
                body,
                resource_version=snapshot.resource_version,
                guard=self._writing,
            )
        except NotFound:
            raise StoreError(f"{namespace}/{name} is gone") from None
        except Conflict:
            return None
        except KubeError as exc:
            raise StoreError(f"cannot write {target}{namespace}/{name}: {_detail(exc)}") from None

    async def _reread(self, namespace: str, name: str) -> dict[str, Any]:
        current = await self.get(namespace, name)
        if current is None:
            raise StoreError(f"{namespace}/{name} is gone")
        return current
