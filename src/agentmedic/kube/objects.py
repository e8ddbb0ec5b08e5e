"""Async reads and optimistic writes of custom objects (and their status) and of Leases.

For the operator's coroutines: each attempt runs the sync client in a worker thread, the
backoff sleeps on the event loop, and a ``guard`` is asked before every attempt (the
operator's leadership fence), retries included. Typical use::

    objects = CustomObjects(kube)
    policy = await objects.get(GROUP, VERSION, PLURAL, "agents", "support-bot")  # or None
    await objects.patch_status(
        GROUP, VERSION, PLURAL, "agents", "support-bot", {"observedGeneration": 4},
        resource_version=policy["metadata"]["resourceVersion"],
    )  # Conflict when the object moved on since it was read
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentmedic.kube import paths
from agentmedic.kube.client import Guard, Kube
from agentmedic.kube.errors import NotFound
from agentmedic.kube.patch import PatchType, with_resource_version
from agentmedic.kube.retry import NO_RETRY, RetryPolicy

__all__ = ["CustomObjects", "Leases"]

Sleep = Callable[[float], Awaitable[None]]


class CustomObjects:
    """Custom objects of any group: get, patch, patch the status, set annotations."""

    def __init__(
        self,
        kube: Kube,
        *,
        retry: RetryPolicy | None = None,
        request_timeout: float | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``retry`` defaults to the client's policy, ``request_timeout`` (seconds per attempt) to
        the client's."""
        self.kube = kube
        self._retry = retry
        self._timeout = request_timeout
        self._sleep = sleep

    async def get(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        *,
        guard: Guard | None = None,
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        path = paths.resource_path(paths.custom_api(group, version), namespace, plural, name)
        try:
            result: dict[str, Any] = await self.kube.arequest(
                f"get {plural}.{group} {namespace}/{name}",
                "GET",
                path,
                request_timeout=self._timeout,
                retry=self._retry,
                guard=guard,
                sleep=self._sleep,
            )
        except NotFound:
            return None
        return result

    async def patch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        resource_version: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        guard: Guard | None = None,
    ) -> dict[str, Any]:
        """Patch the object; with ``resource_version``, only if it is still that version
        (:class:`~agentmedic.kube.errors.Conflict` otherwise). Returns the object after."""
        return await self._patch(
            group, version, plural, namespace, name, body, resource_version, patch_type, guard
        )

    async def patch_status(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
        guard: Guard | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the ``status`` subresource with ``status`` (the status fields, not a
        whole object); with ``resource_version``, only if the object is still that version."""
        body = {"status": dict(status)}
        return await self._patch(
            group,
            version,
            plural,
            namespace,
            name,
            body,
            resource_version,
            PatchType.MERGE,
            guard,
            subresource="status",
        )

    async def patch_annotations(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        *,
        resource_version: str | None = None,
        guard: Guard | None = None,
    ) -> dict[str, Any]:
        """Set annotations (None removes one) in one merge patch; with ``resource_version``,
        only if the object is still that version."""
        body = {"metadata": {"annotations": dict(annotations)}}
        return await self._patch(
            group, version, plural, namespace, name, body, resource_version, PatchType.MERGE, guard
        )

    async def _patch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        body: Any,
        resource_version: str | None,
        patch_type: PatchType,
        guard: Guard | None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        api = paths.custom_api(group, version)
        path = paths.resource_path(api, namespace, plural, name, subresource)
        target = f"the {subresource} of " if subresource else ""
        result: dict[str, Any] = await self.kube.arequest(
            f"patch {target}{plural}.{group} {namespace}/{name}",
            "PATCH",
            path,
            body=with_resource_version(body, patch_type.value, resource_version),
            content_type=patch_type.value,
            request_timeout=self._timeout,
            retry=self._retry,
            guard=guard,
            sleep=self._sleep,
        )
        return result


class Leases:
    """``coordination.k8s.io/v1`` Leases, one try per call (the elector's loop retries).

    Bodies are plain dicts as on the wire; ``replace`` carries the body's
    ``metadata.resourceVersion``, so of two writers racing only one succeeds.
    """

    def __init__(self, kube: Kube, *, request_timeout: float = 5.0) -> None:
        self.kube = kube
        self.request_timeout = request_timeout
        """Seconds per request (the elector keeps it shorter than its renew deadline)."""

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        path = paths.resource_path(paths.COORDINATION_V1, namespace, "leases", name)
        try:
            result: dict[str, Any] = await self.kube.arequest(
                f"get Lease {namespace}/{name}",
                "GET",
                path,
                request_timeout=self.request_timeout,
                retry=NO_RETRY,
            )
        except NotFound:
            return None
        return result

    async def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease (:class:`~agentmedic.kube.errors.Conflict` when it exists)."""
        name = body.get("metadata", {}).get("name", "")
        path = paths.resource_path(paths.COORDINATION_V1, namespace, "leases")
        result: dict[str, Any] = await self.kube.arequest(
            f"create Lease {namespace}/{name}",
            "POST",
            path,
            body=dict(body),
            request_timeout=self.request_timeout,
            retry=NO_RETRY,
        )
        return result

    async def replace(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a Lease (:class:`~agentmedic.kube.errors.Conflict` on a stale version)."""
        path = paths.resource_path(paths.COORDINATION_V1, namespace, "leases", name)
        result: dict[str, Any] = await self.kube.arequest(
            f"replace Lease {namespace}/{name}",
            "PUT",
            path,
            body=dict(body),
            request_timeout=self.request_timeout,
            retry=NO_RETRY,
        )
        return result
