"""The Ready condition of shared channels and metrics backends: :class:`SharedStatusWriter`.

What the resolution (:mod:`agentmedic.operator.refs`) found of an object, referred to or
not, is written to the object's status (``kubectl get metricsbackends`` shows it as READY)
with the policies and budgets that use it, only when it differs from what the object
holds, by the leader only. Messages name Secrets and keys, never their values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from agentmedic.api.shared import MAX_USED_BY, SharedStatus
from agentmedic.api.types import GROUP, VERSION, ConditionStatus
from agentmedic.kube import Kube, KubeError, paths
from agentmedic.operator.shared_cache import PLURALS, SharedObject
from agentmedic.operator.status import ConditionType, set_condition

__all__ = ["SharedStatusWriter"]

log = logging.getLogger(__name__)

_VERSIONS_KEPT = 16
"""resourceVersions remembered per object (see ``SharedStatusWriter._wrote``)."""


class SharedStatusWriter:
    """Writes ``status.conditions[Ready]`` of shared objects when it changes."""

    def __init__(
        self, kube: Kube, clock: Callable[[], datetime], leading: Callable[[], bool]
    ) -> None:
        self._kube = kube
        self._clock = clock
        self._leading = leading
        self.writes = 0
        """Status PATCHes sent (for tests)."""
        self._wrote: dict[tuple[str, str, str], tuple[tuple[object, ...], tuple[str, ...]]] = {}
        """Per object, what was last written, and the resourceVersions no newer than that
        write: the one it made, and every one this writer wrote over or made before it (the
        last :data:`_VERSIONS_KEPT`). A cache that shows one of them lags behind the
        operator's own last write, which says what is wanted: no reason to write it again
        (nor to write back and forth while the watch delivers two quick writes one after
        the other). Any other version is compared by what it holds."""

    async def ready(
        self,
        obj: SharedObject,
        ready: bool,
        reason: str,
        message: str,
        used_by: Sequence[str] = (),
    ) -> None:
        """Set Ready and usedBy on ``obj``; nothing is sent when it already says so."""
        message = message[:1000]
        try:
            old = SharedStatus.model_validate(obj.status) if obj.status else SharedStatus()
        except ValueError:
            old = SharedStatus()  # written by another version: rewrite it
        status = ConditionStatus.TRUE if ready else ConditionStatus.FALSE
        users = _bounded(used_by)
        key = (obj.kind, obj.namespace, obj.name)
        said = (status, reason, message, obj.generation, tuple(users))
        last = self._wrote.get(key)
        if last is not None and last[0] == said and obj.resource_version in last[1]:
            return
        current = next((c for c in old.conditions if c.type == ConditionType.READY), None)
        if (
            current is not None
            and (current.status, current.reason, current.message) == (status, reason, message)
            and old.observed_generation == obj.generation
            and old.used_by == users
        ):
            return
        if not self._leading():
            return
        conditions = set_condition(
            list(old.conditions),
            ConditionType.READY,
            status,
            reason,
            message,
            now=self._clock(),
            generation=obj.generation,
        )
        new = SharedStatus(observed_generation=obj.generation, conditions=conditions)
        wire = new.model_dump(mode="json", by_alias=True, exclude_none=True)
        # A merge patch: null removes a list no longer used.
        wire["usedBy"] = users or None
        body = {"status": wire}
        path = paths.resource_path(
            paths.custom_api(GROUP, VERSION),
            obj.namespace or None,
            PLURALS[obj.kind],
            obj.name,
            "status",
        )
        try:
            written = await self._kube.arequest(
                f"patch the status of {obj.kind} {obj.name}",
                "PATCH",
                path,
                body=body,
                content_type="application/merge-patch+json",
            )
            self.writes += 1
            after = str(((written or {}).get("metadata") or {}).get("resourceVersion", ""))
            older = last[1] if last is not None else ()
            versions = (*older, obj.resource_version, after)
            kept = tuple(dict.fromkeys(v for v in versions if v))[-_VERSIONS_KEPT:]
            self._wrote[key] = (said, kept)
        except KubeError as exc:
            log.warning("cannot write the status of %s %s: %s", obj.kind, obj.name, exc)


def _bounded(used_by: Sequence[str]) -> list[str]:
    users = sorted(set(used_by))
    if len(users) > MAX_USED_BY:
        return [*users[:MAX_USED_BY], f"and {len(users) - MAX_USED_BY} more"]
    return users
