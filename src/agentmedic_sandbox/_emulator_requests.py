"""The emulator's request history and fault injection.

:class:`RequestLog` keeps the most recent requests the emulator answered (tests read them
through ``ApiEmulator.requests``) and the faults ``ApiEmulator.inject`` queued; both behind
one lock, as the server thread and the test's thread use them at once.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Fault", "RecordedRequest", "RequestLog"]

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered (or a fault it injected)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    status: int
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection, discovery
    body: Any = None  # the parsed JSON body, if any
    injected: bool = False  # answered by a fault from ``inject``

    @property
    def is_write(self) -> bool:
        """POST, PUT, PATCH or DELETE."""
        return self.method in _WRITE_METHODS


@dataclass
class Fault:
    """An injected answer (or delay) for the next ``remaining`` matching requests."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    delay: float
    body: dict[str, Any] | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0 and self.method in ("*", method) and bool(self.pattern.search(path))
        )


class RequestLog:
    """The bounded request history and the queued faults."""

    def __init__(self, history_limit: int) -> None:
        self._history: deque[RecordedRequest] = deque(maxlen=history_limit)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.faults_taken = 0
        """How many requests an injected fault has caught so far."""

    def requests(self) -> list[RecordedRequest]:
        """The most recent requests, oldest first."""
        with self._lock:
            return list(self._history)

    def clear_requests(self) -> None:
        with self._lock:
            self._history.clear()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching the request, counted as fired."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    self.faults_taken += 1
                    fault.remaining -= 1
                    if not fault.remaining:
                        self._faults.remove(fault)
                    return fault
        return None

    def record(
        self, request: web.Request, status: int, verb: str, body: Any, injected: bool = False
    ) -> None:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            content_type=request.headers.get("Content-Type"),
            status=status,
            verb=verb,
            body=body,
            injected=injected,
        )
        with self._lock:
            self._history.append(recorded)
