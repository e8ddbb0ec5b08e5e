"""The AgentSilences of the namespaces the operator evaluates policies in: one list+watch
per namespace, started when a cycle first asks for it, read from memory every cycle.

The evidence rule applies to silences too: until a namespace's silences have been listed
once, its policies wait (a cycle waits a few seconds for the first list, then skips them,
as it does while their workloads' watch has not listed), since acting without knowing
them could page or change an agent an on-call engineer silenced. After that, a failed
watch keeps the last list and lists again with backoff, as the workload watch does.

The policy's ``Silenced`` condition (:func:`silenced_condition`) names the silences in
force that apply to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from agentmedic.api.silence import MAX_SILENCE, SILENCE_PLURAL, AgentSilence
from agentmedic.api.types import GROUP, VERSION, ConditionStatus
from agentmedic.engine import Silence
from agentmedic.kube import AsyncKube
from agentmedic.kube.paths import custom_api, resource_path
from agentmedic.operator.budget_watch import ResourceWatch

__all__ = [
    "SILENCED_CONDITION",
    "SilenceWatch",
    "silence_from_object",
    "silenced_condition",
]

log = logging.getLogger(__name__)

SILENCED_CONDITION = "Silenced"


def silence_from_object(obj: dict[str, Any]) -> Silence | None:
    """The engine's view of an AgentSilence; None (logged) for one that does not validate.

    A silence never lasts more than 7 days from its start (or creation), whatever its
    endsAt says: the API server cannot check that bound for a silence without startsAt.
    """
    meta = obj.get("metadata") or {}
    try:
        parsed = AgentSilence.model_validate(
            {k: v for k, v in obj.items() if k in ("apiVersion", "kind", "metadata", "spec")}
        )
    except ValidationError as exc:
        log.warning(
            "AgentSilence %s/%s is ignored: %s",
            meta.get("namespace"),
            meta.get("name"),
            exc.errors()[0].get("msg", "invalid"),
        )
        return None
    spec = parsed.spec
    start = parsed.start()
    end = spec.ends_at if spec.ends_at.tzinfo else spec.ends_at.replace(tzinfo=UTC)
    if start is not None:
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        end = min(end, start + MAX_SILENCE)
    return Silence(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        ends_at=end,
        reason=spec.reason,
        created_by=spec.created_by or "",
        starts_at=spec.starts_at,
        agent=spec.agent,
        policy=spec.policy,
        rule=spec.rule,
    )


class SilenceWatch:
    """One list+watch of AgentSilences per namespace asked for (a
    :class:`~agentmedic.operator.budget_watch.ResourceWatch`, the same loop as finance's
    kinds); reads are in memory. A kind the API server does not serve counts as no
    silences; one it refuses (403) holds the namespace's policies until it is listed."""

    def __init__(
        self,
        http: AsyncKube,
        *,
        watch_timeout_seconds: int = 300,
        first_list_seconds: float = 5.0,
    ) -> None:
        self._http = http
        self._timeout = watch_timeout_seconds
        self._first_list = first_list_seconds
        self._watches: dict[str, ResourceWatch] = {}
        self._waited: set[str] = set()
        """Namespaces a cycle already waited for (later cycles do not wait again)."""

    def silences(self, namespace: str) -> tuple[Silence, ...] | None:
        """The namespace's silences (expired ones included: the engine ignores them), or
        None until they have been listed once; the first call starts the watch."""
        watch = self._watch_of(namespace)
        if not watch.synced.is_set():
            return None
        parsed = (silence_from_object(obj) for obj in watch.items.values())
        return tuple(s for s in parsed if s is not None)

    async def read(self, namespace: str) -> tuple[Silence, ...] | None:
        """:meth:`silences`, waiting up to ``first_list_seconds`` for the first list (once:
        while the list keeps failing, later cycles skip the namespace's policies at once)."""
        found = self.silences(namespace)
        if found is not None or namespace in self._waited:
            return found
        self._waited.add(namespace)
        try:
            async with asyncio.timeout(self._first_list):
                await self._watches[namespace].synced.wait()
        except TimeoutError:
            return None
        return self.silences(namespace)

    async def listed(self, namespace: str) -> None:
        """Wait until the namespace's silences have been listed (wrap in asyncio.timeout)."""
        await self._watch_of(namespace).synced.wait()

    async def aclose(self) -> None:
        for watch in self._watches.values():
            await watch.aclose()
        self._watches.clear()

    def _watch_of(self, namespace: str) -> ResourceWatch:
        watch = self._watches.get(namespace)
        if watch is None:
            path = resource_path(custom_api(GROUP, VERSION), namespace, SILENCE_PLURAL)
            watch = ResourceWatch(self._http, path, lambda: None, timeout_seconds=self._timeout)
            self._watches[namespace] = watch
            watch.start()
        return watch


def silenced_condition(silences: Sequence[Silence]) -> tuple[str, ConditionStatus, str, str]:
    """The policy's Silenced condition: True while silences in force apply to it."""
    if not silences:
        return (SILENCED_CONDITION, ConditionStatus.FALSE, "NoSilence", "no silence in force")
    shown = "; ".join(
        f"{s.scope or 'everything'} until "
        f"{s.ends_at.astimezone(UTC).strftime('%Y-%m-%d %H:%MZ')} by "
        f"{s.created_by or 'unknown'} (agentsilence/{s.name})"
        for s in silences[:5]
    )
    more = f"; and {len(silences) - 5} more" if len(silences) > 5 else ""
    return (
        SILENCED_CONDITION,
        ConditionStatus.TRUE,
        "SilenceActive",
        f"{len(silences)} silence(s) in force: {shown}{more}",
    )
