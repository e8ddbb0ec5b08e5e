"""The store's event log and the watches that read it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from agentmedic_sandbox._emulator_errors import ApiError, Obj
from agentmedic_sandbox._emulator_resources import (
    Resource,
)
from agentmedic_sandbox._emulator_selectors import FieldSelector, LabelSelector

__all__ = ["Event", "ListResult", "ResKey", "Watcher", "bookmark_line", "error_line"]

ResKey = tuple[str, str, str]


@dataclass
class Event:
    """One committed change, kept in the bounded event log for watches that resume."""

    rv: int
    resource: ResKey
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(self, type_: str) -> bytes:
        """The watch-stream line for this event, serialised once per type."""
        if type_ not in self._lines:
            self._lines[type_] = json.dumps({"type": type_, "object": self.obj}).encode() + b"\n"
        return self._lines[type_]


@dataclass(eq=False)
class Watcher:
    """One open watch: what it selects and the queue its stream reads."""

    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[bytes | None]
    loop: asyncio.AbstractEventLoop

    def selects(self, obj: Obj | None) -> bool:
        """Whether ``obj`` is in this watch's view."""
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, event: Event) -> bytes | None:
        """The line this watcher sees for ``event``: objects entering or leaving a selector
        appear as ADDED or DELETED, as from a real API server."""
        if event.resource != self.resource.key:
            return None
        now = event.type != "DELETED" and self.selects(event.obj)
        before = event.old is not None and event.type != "ADDED" and self.selects(event.old)
        if event.type == "DELETED":
            return event.line("DELETED") if self.selects(event.obj) else None
        if now and before:
            return event.line("MODIFIED")
        if now:
            return event.line("ADDED")
        if before:
            return event.line("DELETED")
        return None

    def push(self, line: bytes | None) -> None:
        """Queue a line from any thread, in commit order."""
        # The loop may close under us while the emulator stops; the stream is gone then.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line)


def bookmark_line(res: Resource, rv: int, *, initial_end: bool = False) -> bytes:
    """A BOOKMARK event line at resourceVersion ``rv``."""
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"


def error_line(error: ApiError) -> bytes:
    """An ERROR event line carrying a Status."""
    return json.dumps({"type": "ERROR", "object": error.status()}).encode() + b"\n"


@dataclass
class ListResult:
    """One page of a list."""

    items: list[Obj]
    resource_version: int
    continue_token: str
    remaining: int | None
