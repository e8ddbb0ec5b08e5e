"""Every shared channel and metrics backend gets its status on sight: :class:`SharedSweep`.

A freshly applied NotificationChannel or MetricsBackend (or cluster kind) that nothing
refers to yet shows READY like one in use: the sweep checks each object the shared cache
holds (its spec; the Secrets it names, read where the operator reads them and never
shown; a backend's client built as a policy's cycle builds it, so both find the same) and
writes Ready with the policies and budgets that name it (``status.usedBy``), only when
that changed (:class:`~agentmedic.operator.shared_status.SharedStatusWriter`).

It runs on a change of a shared object, a policy registered or removed, after each cycle
(a budget's references are known once the budgets were read), and every
:data:`~agentmedic.operator.refs.SECRET_REFRESH_SECONDS` (a Secret created or rotated
later is not watched); bursts coalesce into one run. Only the leader sweeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from agentmedic.api.refs import ChannelReference, MetricsBackendRef
from agentmedic.operator.budgets import BudgetEntry
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.refs import SECRET_REFRESH_SECONDS, ObjectKey, RefResolver, refs_of
from agentmedic.operator.shared_cache import CLUSTER_KINDS

__all__ = ["SharedSweep", "shared_users"]

log = logging.getLogger(__name__)

_COALESCE_SECONDS = 0.2


def shared_users(
    policies: Iterable[PolicyEntry], budgets: Iterable[BudgetEntry]
) -> dict[ObjectKey, list[str]]:
    """Who names each shared object: ``AgentPolicy ns/name``, ``AgentBudget ns/name``,
    ``ClusterAgentBudget name``. Invalid policies and budgets name nothing."""
    users: dict[ObjectKey, list[str]] = {}

    def add(ref: ChannelReference | MetricsBackendRef, namespace: str, who: str) -> None:
        scope = "" if ref.kind in CLUSTER_KINDS else namespace
        users.setdefault((ref.kind, scope, ref.name), []).append(who)

    for p in policies:
        if p.policy is not None:
            for ref in refs_of(p.spec):
                add(ref, p.namespace, f"AgentPolicy {p.namespace}/{p.name}")
    for b in budgets:
        if b.spec is None:
            continue
        if b.spec.metrics_backend_ref is not None:
            add(b.spec.metrics_backend_ref, b.ref.namespace, str(b.ref))
        for channel in b.spec.notifications.channels:
            if channel.channel_ref is not None:
                add(channel.channel_ref, b.ref.namespace, str(b.ref))
    return users


class SharedSweep:
    """The loop that keeps every shared object's status (see the module docstring)."""

    def __init__(
        self,
        refs: RefResolver,
        users: Callable[[], Mapping[ObjectKey, Iterable[str]]],
        leading: Callable[[], bool],
        *,
        every_seconds: float = SECRET_REFRESH_SECONDS,
    ) -> None:
        self._refs = refs
        self._users = users
        self._leading = leading
        self._every = every_seconds
        self._known: dict[ObjectKey, tuple[str, ...]] | None = None
        """Who names each object, until the next :meth:`poke` (every change of who names
        what pokes)."""
        refs.users = self.users
        self.wake = asyncio.Event()
        self.sweeps = 0
        """Sweeps run (for tests)."""

    def poke(self) -> None:
        """Sweep soon (and find the users again)."""
        self._known = None
        self.wake.set()

    def users(self) -> Mapping[ObjectKey, tuple[str, ...]]:
        """Who names each shared object, found once per poke: once per cycle, not once
        per policy."""
        if self._known is None:
            self._known = {k: tuple(sorted(set(v))) for k, v in self._users().items()}
        return self._known

    async def loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._every):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            await asyncio.sleep(_COALESCE_SECONDS)
            if not self._leading():
                continue
            try:
                await self.run()
            except Exception:
                log.exception("checking the shared channels and metrics backends failed")

    async def run(self) -> None:
        """One sweep."""
        self._known = None  # the periodic sweep finds them again too
        await self._refs.sweep()
        self.sweeps += 1
