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
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import urllib3

from agentmedic.api.types import GROUP, PLURAL, VERSION

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

_RETRYABLE = frozenset({429, 500, 502, 503, 504})


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


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, kubernetes.client.ApiException):
        return exc.status in _RETRYABLE or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError)


class PolicyStore:
    """Reads and optimistic writes of AgentPolicies through the kubernetes client."""

    def __init__(
        self,
        api: kubernetes.client.CustomObjectsApi,
        *,
        attempts: int = 6,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        request_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observe: Callable[[str], None] | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        """``fence`` is asked before every write: a replica that lost the Lease writes
        nothing (:class:`StoreError`)."""
        self._api = api
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = request_timeout
        self._sleep = sleep
        self._observe = observe or (lambda _verb: None)
        self._fence = fence or (lambda: True)

    async def _call(self, verb: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(1, self._attempts + 1):
            if verb != "get" and not self._fence():
                raise StoreError("not the leader: nothing is written")
            self._observe(verb)
            try:
                return await asyncio.to_thread(fn)
            except Exception as exc:
                if not _retryable(exc) or attempt == self._attempts:
                    raise
                delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                log.debug("%s of an AgentPolicy failed (%s); retrying in %.2fs", verb, exc, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it is gone; :class:`StoreError` when it cannot be read."""
        try:
            obj = await self._call(
                "get",
                lambda: self._api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self._timeout
                ),
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise StoreError(f"cannot read {namespace}/{name}: {exc.status} {exc.reason}") from None
        except Exception as exc:
            raise StoreError(f"cannot read {namespace}/{name}: {type(exc).__name__}") from None
        return dict(obj)

    async def _patch(
        self, namespace: str, name: str, body: dict[str, Any], *, status: bool
    ) -> dict[str, Any]:
        call = (
            self._api.patch_namespaced_custom_object_status
            if status
            else self._api.patch_namespaced_custom_object
        )
        result = await self._call(
            "patch",
            lambda: call(
                GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=self._timeout
            ),
        )
        return dict(result)

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
            body: dict[str, Any] = {"metadata": {"annotations": dict(wanted)}}
            if snapshot.resource_version is not None:
                body["metadata"]["resourceVersion"] = snapshot.resource_version
            try:
                obj = await self._patch(namespace, name, body, status=False)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    raise StoreError(f"{namespace}/{name} is gone") from None
                if exc.status != 409:
                    raise StoreError(
                        f"cannot write {namespace}/{name}: {exc.status} {exc.reason}"
                    ) from None
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot write {namespace}/{name}: {type(exc).__name__}") from None
            else:
                fresh = Snapshot.of(obj, owned)
                fresh.annotations = {**snapshot.annotations, **fresh.annotations}
                for key, value in wanted.items():
                    if value is None:
                        fresh.annotations.pop(key, None)
                return fresh
            current = await self.get(namespace, name)
            if current is None:
                raise StoreError(f"{namespace}/{name} is gone")
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
            body: dict[str, Any] = {"status": patch}
            if snapshot.resource_version is not None:
                body["metadata"] = {"resourceVersion": snapshot.resource_version}
            try:
                obj = await self._patch(namespace, name, body, status=True)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    raise StoreError(f"{namespace}/{name} is gone") from None
                if exc.status != 409:
                    raise StoreError(
                        f"cannot write the status of {namespace}/{name}: {exc.status} {exc.reason}"
                    ) from None
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"cannot write the status of {namespace}/{name}: {type(exc).__name__}"
                ) from None
            else:
                fresh = Snapshot.of(obj, ())
                return (
                    Snapshot(fresh.resource_version, snapshot.annotations, fresh.status),
                    patch,
                )
            current = await self.get(namespace, name)
            if current is None:
                raise StoreError(f"{namespace}/{name} is gone")
            now = Snapshot.of(current, ())
            snapshot = Snapshot(now.resource_version, snapshot.annotations, now.status)
        raise StoreError(f"cannot write the status of {namespace}/{name}: it keeps changing")
