"""The emulator's object index: served resources, reads, watches, commits.

Everything here is synchronous and guarded by one re-entrant lock, so the HTTP handlers
(in the emulator's own event loop) and direct calls from tests (in any thread) see one
consistent state. Stored objects are never mutated in place: every write stores a new dict,
so objects can be handed to watchers and the event log without copying.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from agentmedic_sandbox._emulator_errors import ApiError, Obj, not_found
from agentmedic_sandbox._emulator_events import (
    Event,
    ListResult,
    ResKey,
    Watcher,
    bookmark_line,
    error_line,
)
from agentmedic_sandbox._emulator_metadata import now_rfc3339
from agentmedic_sandbox._emulator_objects import check_selectors
from agentmedic_sandbox._emulator_resources import (
    BUILTIN_RESOURCES,
    Resource,
    resources_from_crd,
)

__all__ = ["ObjKey", "StoreIndex"]

ObjKey = tuple[ResKey, str, str]  # (resource, namespace or "", name)


class StoreIndex:
    """Objects by (resource, namespace, name): the served resources, reads, watches and the
    commit every write ends in. :class:`~agentmedic_sandbox._emulator_store.Store` adds the
    writes."""

    def __init__(
        self,
        *,
        event_window: int = 20_000,
        auto_namespaces: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.rv = 0
        self.auto_namespaces = auto_namespaces
        self.clock = clock or (lambda: datetime.now(UTC))
        self.resources: dict[ResKey, Resource] = {}
        self.by_kind: dict[tuple[str, str], Resource] = {}
        self.objects: dict[ResKey, dict[tuple[str, str], Obj]] = {}
        self.uids: dict[str, ObjKey] = {}
        self.dependents: dict[str, set[ObjKey]] = {}
        self.events: deque[Event] = deque(maxlen=event_window)
        self.evicted_rv = 0  # the newest resourceVersion no longer in the event log
        self.watchers: set[Watcher] = set()
        for res in BUILTIN_RESOURCES:
            self.register(res)

    # --- resources -------------------------------------------------------------------------

    def register(self, res: Resource) -> None:
        """Serve ``res`` (replacing an earlier definition of it)."""
        with self.lock:
            self.resources[res.key] = res
            self.by_kind[(res.api_version, res.kind)] = res
            self.objects.setdefault(res.key, {})

    def unregister(self, res: Resource) -> None:
        """Stop serving ``res`` and forget its objects."""
        with self.lock:
            for obj in list(self.objects.get(res.key, {}).values()):
                self._remove(res, obj)
            self.resources.pop(res.key, None)
            self.objects.pop(res.key, None)
            if self.by_kind.get((res.api_version, res.kind)) == res:
                del self.by_kind[(res.api_version, res.kind)]

    def resource(self, group: str, version: str, plural: str) -> Resource:
        """The served resource, or 404."""
        res = self.resources.get((group, version, plural))
        if res is None:
            where = f"{group}/{version}" if group else version
            raise ApiError(
                404, f"the server could not find the requested resource ({plural} in {where})"
            )
        return res

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``kind`` in ``api_version``, or 404."""
        res = self.by_kind.get((api_version, kind))
        if res is None:
            raise ApiError(404, f'no matches for kind "{kind}" in version "{api_version}"')
        return res

    # --- reads -----------------------------------------------------------------------------

    def _ns(self, res: Resource, namespace: str | None) -> str:
        return (namespace or "") if res.namespaced else ""

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        """The stored object (do not mutate it), or 404."""
        with self.lock:
            obj = self.objects[res.key].get((self._ns(res, namespace), name))
        if obj is None:
            raise not_found(res, name)
        return obj

    def find(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """The stored object, or None."""
        with self.lock:
            return self.objects[res.key].get((self._ns(res, namespace), name))

    def list_objects(
        self,
        res: Resource,
        namespace: str | None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Objects of ``res`` (in ``namespace``, or all), sorted by namespace and name."""
        label_selector, field_selector = check_selectors(res, labels, fields)
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (decoded["ns"], decoded["name"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise ApiError(400, "continue key is not valid") from exc
        ns = self._ns(res, namespace) if namespace else None
        with self.lock:
            rv = self.rv
            store = self.objects[res.key]
            keys = sorted(k for k in store if ns is None or k[0] == ns)
            if start is not None:
                keys = [k for k in keys if k > start]
            selected = [
                store[k]
                for k in keys
                if (
                    not label_selector or label_selector.matches(store[k]["metadata"].get("labels"))
                )
                and (not field_selector or field_selector.matches(store[k]))
            ]
        token = ""
        remaining: int | None = None
        if limit and len(selected) > limit:
            remaining = len(selected) - limit
            selected = selected[:limit]
            last = selected[-1]["metadata"]
            token = base64.urlsafe_b64encode(
                json.dumps(
                    {"ns": last.get("namespace", ""), "name": last["name"], "rv": rv}
                ).encode()
            ).decode()
        return ListResult(selected, rv, token, remaining)

    # --- watches ---------------------------------------------------------------------------

    def watch(
        self,
        watcher: Watcher,
        since: str | None,
        *,
        send_initial: bool,
    ) -> tuple[list[bytes], bool]:
        """Register ``watcher``; return the lines it must send first, and whether it is
        registered (False after an error line: the stream ends there).

        Without a resourceVersion (or with "0"), every selected object is sent as ADDED, as
        the API server does; with one, the logged events after it; if the log no longer
        reaches back that far, a single ERROR 410 Gone line (the watcher is not registered).
        """
        with self.lock:
            if not since or since == "0":
                objs = [o for o in self._sorted(watcher.resource) if watcher.selects(o)]
                lines = [json.dumps({"type": "ADDED", "object": o}).encode() + b"\n" for o in objs]
                if send_initial:
                    lines.append(bookmark_line(watcher.resource, self.rv, initial_end=True))
            else:
                try:
                    rv = int(since)
                except ValueError as exc:
                    raise ApiError(400, f'invalid resource version "{since}"') from exc
                if rv < self.evicted_rv:
                    # Not registered: the stream ends after this line, as the server's does.
                    return (
                        [
                            error_line(
                                ApiError(
                                    410,
                                    f"too old resource version: {rv} ({self.evicted_rv + 1})",
                                    reason="Expired",
                                )
                            )
                        ],
                        False,
                    )
                lines = []
                for event in itertools.dropwhile(lambda e: e.rv <= rv, self.events):
                    line = watcher.translate(event)
                    if line is not None:
                        lines.append(line)
            self.watchers.add(watcher)
            return lines, True

    def unwatch(self, watcher: Watcher) -> None:
        """Stop feeding ``watcher``."""
        with self.lock:
            self.watchers.discard(watcher)

    def bookmark(self, watcher: Watcher) -> None:
        """Queue a BOOKMARK at the current resourceVersion behind every event before it."""
        with self.lock:
            watcher.push(bookmark_line(watcher.resource, self.rv))

    def close_watches(self) -> None:
        """End every open watch stream."""
        with self.lock:
            for watcher in list(self.watchers):
                watcher.push(None)
            self.watchers.clear()

    def _sorted(self, res: Resource) -> Iterable[Obj]:
        store = self.objects[res.key]
        return (store[k] for k in sorted(store))

    # --- commits ---------------------------------------------------------------------------

    def _commit(self, res: Resource, type_: str, obj: Obj, old: Obj | None) -> Obj:
        """Store a write under a new resourceVersion, index it, log it, tell watchers."""
        self.rv += 1
        meta = dict(obj["metadata"])
        meta["resourceVersion"] = str(self.rv)
        obj = {**obj, "metadata": meta}
        key = (meta.get("namespace", ""), meta["name"])
        objkey: ObjKey = (res.key, key[0], key[1])
        if type_ == "DELETED":
            self.objects[res.key].pop(key, None)
            self.uids.pop(meta.get("uid", ""), None)
        else:
            self.objects[res.key][key] = obj
            self.uids[meta["uid"]] = objkey
        old_owners = {
            r.get("uid") for r in ((old or {}).get("metadata", {}).get("ownerReferences") or [])
        }
        new_owners = (
            set()
            if type_ == "DELETED"
            else {r.get("uid") for r in meta.get("ownerReferences") or []}
        )
        for uid in old_owners - new_owners:
            self.dependents.get(str(uid), set()).discard(objkey)
        for uid in new_owners - old_owners:
            self.dependents.setdefault(str(uid), set()).add(objkey)
        event = Event(self.rv, res.key, type_, obj, old)
        if len(self.events) == self.events.maxlen:
            self.evicted_rv = self.events[0].rv
        self.events.append(event)
        for watcher in self.watchers:
            line = watcher.translate(event)
            if line is not None:
                watcher.push(line)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self._crd_changed(obj, type_, old)
        return obj

    def _crd_changed(self, crd: Obj, type_: str, old: Obj | None) -> None:
        if old is not None:
            for gone in resources_from_crd(old):
                if type_ == "DELETED" or gone.key not in {r.key for r in resources_from_crd(crd)}:
                    self.unregister(gone)
        if type_ != "DELETED":
            for served in resources_from_crd(crd):
                self.register(served)

    def _timestamp(self) -> str:
        return now_rfc3339(self.clock())

    def _remove(self, res: Resource, obj: Obj) -> None:
        """Drop an object regardless of finalizers (its resource is going away)."""
        self._commit(res, "DELETED", obj, obj)
