"""Each policy of a cycle on its own metrics backend: references checked, fetches per backend.

:func:`route` resolves the references of the cycle's policies
(:class:`~agentmedic.operator.refs.RefResolver`): a policy whose reference names nothing
or something invalid is not evaluated this cycle, and gets ``Ready=False`` with a reason
naming the reference (``ChannelRefNotFound``, ``MetricsBackendRefNotFound``, ...) and one
Warning Event per new problem; one whose referenced kind has not been listed yet waits.
:func:`fetch_per_backend` then fetches the needs of each backend's policies from that
backend, merged as :func:`~agentmedic.operator.cycle.fetch` merges them: one query per
(metric, window) per backend, with the backend's own tenant and credentials. A backend
that fails holds only its own policies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.types import ConditionStatus
from agentmedic.metrics import Catalog
from agentmedic.operator import cycle
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.refs import RefProblem, RefResolver, Route
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.status import ConditionType
from agentmedic.operator.status_writer import PolicyWriter

__all__ = ["BackendBatch", "RefGate", "fetch_per_backend"]


@dataclass
class BackendBatch:
    """The policies of one backend in a cycle and what was fetched for them."""

    route: Route
    gathered: list[cycle.Gathered] = field(default_factory=list)
    fetched: cycle.Fetched | None = None


class RefGate:
    """Lets through the policies whose references resolve; reports the others."""

    def __init__(self, refs: RefResolver, writer: PolicyWriter) -> None:
        self._refs = refs
        self._writer = writer
        self._reported: dict[tuple[str, str], str] = {}
        """The problem last reported per policy, so that an Event is posted once."""

    async def route(self, entries: Iterable[PolicyEntry]) -> dict[tuple[str, str], Route]:
        """The route of each policy that may be evaluated this cycle."""
        out: dict[tuple[str, str], Route] = {}
        for entry in entries:
            got = await self._refs.route(entry.spec, entry.namespace)
            if isinstance(got, Route):
                self._reported.pop(entry.key, None)
                out[entry.key] = got
            elif isinstance(got, RefProblem):
                await self._refuse(entry, got)
        return out

    async def _refuse(self, entry: PolicyEntry, problem: RefProblem) -> None:
        message = f"{problem.message}; the policy is not evaluated until it resolves"
        conditions = [(ConditionType.READY, ConditionStatus.FALSE, problem.reason, message)]
        await self._writer.status(entry, conditions=conditions)
        if self._reported.get(entry.key) != str(problem):
            self._reported[entry.key] = str(problem)
            await self._writer.event(entry, problem.reason, problem.message, warning=True)

    def forget(self, key: tuple[str, str]) -> None:
        self._reported.pop(key, None)


async def fetch_per_backend(
    gathered: Sequence[cycle.Gathered],
    routes: dict[tuple[str, str], Route],
    catalog: Catalog,
    settings: OperatorSettings,
    now: datetime,
    interval: timedelta,
) -> list[BackendBatch]:
    """Each backend's policies and their samples, the backends fetched concurrently."""
    batches: dict[str, BackendBatch] = {}
    for g in gathered:
        route = routes[g.entry.key]
        batches.setdefault(route.backend_id, BackendBatch(route)).gathered.append(g)
    results = await asyncio.gather(
        *(
            cycle.fetch(b.route.backend, catalog, settings, b.gathered, now, interval)
            for b in batches.values()
        )
    )
    for batch, fetched in zip(batches.values(), results, strict=True):
        batch.fetched = fetched
    return list(batches.values())
