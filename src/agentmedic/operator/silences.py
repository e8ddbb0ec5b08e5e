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
import random
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from agentmedic.api.silence import MAX_SILENCE, SILENCE_PLURAL, AgentSilence
from agentmedic.api.types import GROUP, VERSION, ConditionStatus
from agentmedic.engine import Silence
from agentmedic.kube import AsyncKube, Gone, KubeError, NotFound, RetryPolicy
from agentmedic.kube.paths import custom_api, resource_path

__all__ = [
    "SILENCED_CONDITION",
    "SilenceWatch",
    "silence_from_object",
    "silenced_condition",
]

log = logging.getLogger(__name__)

SILENCED_CONDITION = "Silenced"
_RECONNECT = RetryPolicy(base=0.5, cap=30.0)
_UNSERVED_RECHECK = 60.0
"""Seconds between two lists while the API server does not serve AgentSilence."""


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


class _Namespace:
    def __init__(self) -> None:
        self.items: dict[str, Silence] = {}
        self.synced = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.waited = False
        """A cycle already waited for the first list (later cycles do not wait again)."""


class SilenceWatch:
    """One list+watch of AgentSilences per namespace asked for; reads are in memory."""

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
        self._namespaces: dict[str, _Namespace] = {}
        self.requests = 0
        """LIST and WATCH requests sent since start."""

    def silences(self, namespace: str) -> tuple[Silence, ...] | None:
        """The namespace's silences (expired ones included: the engine ignores them), or
        None until they have been listed once; the first call starts the watch."""
        ns = self._namespaces.get(namespace)
        if ns is None:
            ns = self._namespaces[namespace] = _Namespace()
            ns.task = asyncio.get_running_loop().create_task(
                self._run(namespace, ns), name=f"watch agentsilences {namespace}"
            )
        if not ns.synced.is_set():
            return None
        return tuple(ns.items.values())

    async def read(self, namespace: str) -> tuple[Silence, ...] | None:
        """:meth:`silences`, waiting up to ``first_list_seconds`` for the first list (once:
        while the list keeps failing, later cycles skip the namespace's policies at once)."""
        found = self.silences(namespace)
        ns = self._namespaces[namespace]
        if found is not None or ns.waited:
            return found
        ns.waited = True
        try:
            async with asyncio.timeout(self._first_list):
                await self._namespaces[namespace].synced.wait()
        except TimeoutError:
            return None
        return self.silences(namespace)

    async def listed(self, namespace: str) -> None:
        """Wait until the namespace's silences have been listed (wrap in asyncio.timeout)."""
        self.silences(namespace)
        await self._namespaces[namespace].synced.wait()

    async def aclose(self) -> None:
        tasks = [ns.task for ns in self._namespaces.values() if ns.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._namespaces.clear()

    async def _run(self, namespace: str, ns: _Namespace) -> None:
        path = resource_path(custom_api(GROUP, VERSION), namespace, SILENCE_PLURAL)
        failures = 0
        rng = random.Random()
        while True:
            try:
                version = await self._list(ns, path)
                failures = 0
                while True:
                    version = await self._watch(ns, path, version)
            except asyncio.CancelledError:
                raise
            except Gone:
                continue
            except NotFound:
                # The API server does not serve AgentSilence (its CRD is not installed,
                # e.g. an upgrade that left CRDs alone): no silence can exist.
                if not ns.synced.is_set():
                    log.warning(
                        "the API server does not serve agentsilences.%s (is its CRD "
                        "installed?): no silence applies in %s; checking again every %ds",
                        GROUP,
                        namespace,
                        int(_UNSERVED_RECHECK),
                    )
                ns.items = {}
                ns.synced.set()
                await asyncio.sleep(_UNSERVED_RECHECK)
            except Exception as exc:  # any failure: back off and list again
                delay = _RECONNECT.delay(min(failures, 16), rng)
                failures += 1
                what = f"HTTP {exc.status} ({exc.reason})" if isinstance(exc, KubeError) else exc
                log.warning(
                    "watch of agentsilences in %s failed: %s; its policies wait until "
                    "they are listed; retrying in %.1fs",
                    namespace,
                    what,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _list(self, ns: _Namespace, path: str) -> str:
        self.requests += 1
        data = await self._http.get_json(path, {})
        fresh: dict[str, Silence] = {}
        for obj in data.get("items", []):
            s = silence_from_object(obj)
            if s is not None:
                fresh[s.name] = s
        ns.items = fresh
        ns.synced.set()
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, ns: _Namespace, path: str, version: str) -> str:
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
            name = str(obj.get("metadata", {}).get("name", ""))
            s = silence_from_object(obj) if kind != "DELETED" else None
            if s is None:
                ns.items.pop(name, None)
            else:
                ns.items[name] = s
        return version


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
