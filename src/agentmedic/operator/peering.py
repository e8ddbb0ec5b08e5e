"""Which replica acts: the fence every write and every send checks.

Without election (``peering`` empty) this replica acts alone. With it, a
:class:`~agentmedic.operator.leader.LeaderElector` holds (or waits for) the Lease, and this
replica acts only while the Lease is its own. :class:`Peering` is the one object the rest of
the operator asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentmedic.kube import Kube
from agentmedic.operator.leader import LeaderElector, LeaseConfig
from agentmedic.operator.settings import OperatorSettings

__all__ = ["LeadershipHook", "Peering"]

LeadershipHook = Callable[[bool], Awaitable[None]]
"""Called with True when this replica gains the Lease and False when it loses it."""


class Peering:
    """The Lease (when configured) and the fence :meth:`leading`."""

    def __init__(self, elector: LeaderElector | None) -> None:
        self._elector = elector

    @classmethod
    def from_settings(
        cls,
        settings: OperatorSettings,
        kube: Kube,
        identity: str,
        on_change: LeadershipHook,
    ) -> Peering:
        """No election without a Lease name; else a candidate for the named Lease."""
        if not settings.peering:
            return cls(None)
        return cls(
            LeaderElector(
                kube,
                LeaseConfig(
                    namespace=settings.lease_namespace_or_default(),
                    name=settings.peering,
                    identity=identity,
                    duration=settings.lease_duration_seconds,
                    renew_deadline=settings.lease_renew_deadline_seconds,
                    retry=settings.lease_retry_seconds,
                ),
                on_change=on_change,
            )
        )

    @property
    def elector(self) -> LeaderElector | None:
        """The Lease candidate, when replicas elect one."""
        return self._elector

    def leading(self) -> bool:
        """The fence: without election this replica acts alone; with it, only while it
        holds the Lease."""
        return self._elector is None or self._elector.is_leader()

    def start(self) -> None:
        if self._elector is not None:
            self._elector.start()

    async def stop(self) -> None:
        """Hands the Lease over at once when this replica holds it."""
        if self._elector is not None:
            await self._elector.stop()
