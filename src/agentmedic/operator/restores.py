"""Restore requests: a person bringing an agent back, served apart from the metrics cycles.

A person puts an agent back with ``agentmedic.io/restore: "true"`` on the workload, or by
scaling a workload agentmedic disabled back up by hand (``kubectl scale``). Requests are
looked for in the watch cache every ``restorePollSeconds``, never inside a metrics cycle,
so a hung backend cannot delay them, and cost nothing when no one asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from agentmedic.actions import ActionError, ActionExecutor, WorkloadRef, parse_disabled
from agentmedic.actions import record as rec
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import CachedWorkload, WorkloadCache

__all__ = ["RestoreRequests", "scaled_up_by_hand"]

log = logging.getLogger(__name__)

_ASKING = frozenset({rec.RESTORE_REQUEST, rec.DISABLED})
"""The annotations without which a workload asks for nothing."""

Request = tuple[CachedWorkload, str, bool]
"""The workload, who asked (for the record), and whether its model is restored too."""


class RestoreRequests:
    """Finds and serves restore requests of the policies this replica owns."""

    def __init__(
        self,
        cache: WorkloadCache,
        executor: ActionExecutor,
        settings: OperatorSettings,
        telemetry: Telemetry,
        leading: Callable[[], bool],
    ) -> None:
        self._cache = cache
        self._executor = executor
        self._settings = settings
        self._telemetry = telemetry
        self._leading = leading

    async def loop(self, entries: Callable[[], Iterable[PolicyEntry]]) -> None:
        """Serve requests every ``restorePollSeconds`` until cancelled."""
        while True:
            await asyncio.sleep(self._settings.restore_poll_seconds)
            try:
                await self.serve(entries())
            except Exception:
                self._telemetry.errors.labels("restore").inc()
                log.exception("serving restore requests failed")

    async def serve(self, entries: Iterable[PolicyEntry]) -> int:
        """Serve every pending request; how many restores were attempted."""
        pending: list[Request] = []
        for entry in list(entries):
            if entry.policy is None or not self._settings.owns(entry.uid):
                continue
            workloads = self._cache.annotated(entry.namespace, entry.selector, _ASKING)
            if workloads:
                pending.extend(self.requests(entry, workloads))
        if not pending or not self._leading():
            return 0
        for w, by, model in pending:
            await self.restore(w, by, model)
        return len(pending)

    def requests(self, entry: PolicyEntry, workloads: list[CachedWorkload]) -> list[Request]:
        """The requests among a policy's workloads. A workload scaled up by hand is taken
        as a restore of the replicas, keeping the count the person chose: the record goes,
        and the agent's rules are watched again instead of held for an agent that no
        longer is disabled. Not in dry run, which writes nothing of its own."""
        dry_run = self._settings.dry_run or entry.spec.guardrails.dry_run
        out = []
        for w in workloads:
            if w.annotations.get(rec.RESTORE_REQUEST, "").lower() == "true":
                out.append((w, "annotation", True))
            elif not dry_run and scaled_up_by_hand(w):
                by = f"a person: scaled to {w.replicas} replica(s) by hand while disabled"
                out.append((w, by, False))  # a downgrade is not undone by a kubectl scale
        return out

    async def restore(self, w: CachedWorkload, by: str, model: bool) -> None:
        """Put the workload back as its record says; a failure is logged."""
        ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
        try:
            result = await asyncio.to_thread(
                self._executor.restore, ref, by, model=model, prompt=model
            )
            self._telemetry.decisions.labels("restore", str(result.outcome)).inc()
            log.info("restored %s (%s): %s", ref, by, result.message)
        except ActionError as exc:
            log.warning("restore of %s (%s) failed: %s", ref, by, exc)


def scaled_up_by_hand(w: CachedWorkload) -> bool:
    """The workload carries agentmedic's disabled record yet has replicas: a person scaled
    it back up. Not for a KEDA-managed agent (KEDA's pause holds it at 0, and a count
    between agentmedic's two writes there is KEDA's, not a person's)."""
    if w.replicas <= 0:
        return False
    disabled = parse_disabled(w.annotations)
    return disabled is not None and disabled.keda_scaled_object is None
