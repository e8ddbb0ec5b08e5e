"""One active replica: leader election on a ``coordination.k8s.io/v1`` Lease.

Every replica watches the policies (kopf runs standalone on each); only the holder of the
Lease evaluates, acts, notifies and writes. The protocol is client-go's leaderelection:

- a replica takes the Lease when it does not exist, has no holder, or its record (holder,
  renewTime) has not changed for ``duration`` seconds *as this replica observed it* (its
  own monotonic clock: no trust in other machines' clocks);
- the holder renews every ``retry`` seconds with a write that carries the Lease's
  resourceVersion (two replicas racing for it: one gets 409 and stays standby);
- the holder considers itself leader only until ``renew_deadline`` (< ``duration``) after
  the start of its last successful renewal. A standby takes over no earlier than
  ``duration`` after it observed that renewal, which is after it started, so the old
  holder has stopped acting before the new one starts (a paused or partitioned holder
  included: its monotonic clock runs on while it is stopped).

Takeover bound: a holder that is killed is replaced within ``duration + retry`` seconds
of its last renewal; one that stops cleanly releases the Lease and is replaced within
``retry`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentmedic.kube import Conflict, Kube, KubeError, Leases

__all__ = ["LeaderElector", "LeaseConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Where the Lease is and its timing, in seconds."""

    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError("leader election needs 0 < retry < renewDeadline < leaseDuration")


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Holds (or waits for) the Lease; :meth:`is_leader` is the fence checked before every
    write and every message."""

    def __init__(
        self,
        kube: Any,
        config: LeaseConfig,
        *,
        on_change: Callable[[bool], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``kube`` is a :class:`~agentmedic.kube.Kube` (or, for callers that still hold
        one, a ``kubernetes`` API object whose connection pool it shares)."""
        self.config = config
        # Each request ends before the renew deadline, so a hung one cannot outlive the term.
        self._leases = Leases(
            Kube.of(kube), request_timeout=max(1.0, config.renew_deadline - config.retry)
        )
        self._on_change = on_change
        self._clock = clock
        self._leading = False
        self._valid_until = 0.0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.transitions = 0
        """How often this replica gained or lost leadership (for tests and logs)."""

    def is_leader(self) -> bool:
        """Whether this replica may act now."""
        return self._leading and self._clock() < self._valid_until

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop campaigning and hand the Lease over at once if this replica holds it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._leading:
            await self._set(False)
            try:
                await self._release()
            except KubeError as exc:  # the Lease then expires by itself
                log.warning("cannot release the leader Lease: %s", exc.reason)

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader election step failed")
            await asyncio.sleep(self.config.retry)

    async def step(self) -> None:
        """One round: renew, take over, or observe; then tell the operator of a change."""
        started = self._clock()
        try:
            held = await self._try(started)
        except Exception as exc:  # an API fault, or a Lease with a body it cannot read
            detail = (
                (f"{exc.status} {exc.reason}" if exc.status else str(exc.reason))
                if isinstance(exc, KubeError)
                else type(exc).__name__
            )
            log.warning("leader election: the Lease cannot be read or written: %s", detail)
            # Not renewed: the term ends at the deadline of the last renewal that succeeded.
            held = self._leading and self._clock() < self._valid_until
        else:
            if held:
                self._valid_until = started + self.config.renew_deadline
        if held != self._leading:
            await self._set(held)
        elif self._leading and not self.is_leader():
            await self._set(False)

    async def _set(self, leading: bool) -> None:
        self._leading = leading
        if not leading:
            self._valid_until = 0.0
        self.transitions += 1
        log.info(
            "%s leadership (Lease %s/%s)",
            "acquired" if leading else "lost",
            self.config.namespace,
            self.config.name,
            extra={"identity": self.config.identity},
        )
        await self._on_change(leading)

    # ------------------------------------------------------------------ the Lease

    def _body(self, *, transitions: int, acquired: str | None, rv: str | None) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        metadata: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if rv is not None:
            metadata["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.config.identity,
                "leaseDurationSeconds": max(1, round(self.config.duration)),
                "acquireTime": acquired or now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    async def _try(self, started: float) -> bool:
        c = self.config
        lease = await self._leases.get(c.namespace, c.name)
        if lease is None:
            try:
                await self._leases.create(
                    c.namespace, self._body(transitions=0, acquired=None, rv=None)
                )
            except Conflict:  # another replica created it first
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        if holder and holder != c.identity and self._clock() < self._observed_at + c.duration:
            return False
        mine = holder == c.identity
        transitions = (spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        acquired = spec.get("acquireTime") if mine else None
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        try:
            await self._leases.replace(
                c.namespace,
                c.name,
                self._body(transitions=transitions, acquired=acquired, rv=rv),
            )
        except Conflict:  # renewed or taken by another replica meanwhile
            return False
        return True

    async def _release(self) -> None:
        c = self.config
        lease = await self._leases.get(c.namespace, c.name)
        if lease is None:
            return
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != c.identity:
            return
        body = self._body(
            transitions=spec.get("leaseTransitions") or 0,
            acquired=None,
            rv=(lease.get("metadata") or {}).get("resourceVersion"),
        )
        body["spec"]["holderIdentity"] = None
        body["spec"]["leaseDurationSeconds"] = 1
        await self._leases.replace(c.namespace, c.name, body)
