"""Writes to an AgentPolicy: its status, its owned annotations, and Events about it.

Each write goes through :class:`~agentmedic.operator.persistence.PolicyStore` (optimistic,
retried, fenced by the Lease); a failure is logged and counted, never raised into the
cycle. Status is rebuilt on the status it is based on, so a 409 merges instead of
overwriting, and nothing is sent when only the evaluation time would change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agentmedic.actions import ActionError, ActionExecutor
from agentmedic.api.types import AgentCounts, AgentPolicyStatus, RecentAction, Spend
from agentmedic.operator.entry import PolicyEntry, parse_status
from agentmedic.operator.persistence import PolicyStore, StoreError, SupersededError
from agentmedic.operator.status import Conditions, build_status, status_patch
from agentmedic.operator.telemetry import Telemetry

__all__ = ["PolicyWriter"]

log = logging.getLogger(__name__)


class PolicyWriter:
    """Status, annotations and Events of AgentPolicies."""

    def __init__(
        self,
        store: PolicyStore,
        executor: ActionExecutor,
        telemetry: Telemetry,
        clock: Callable[[], datetime],
        *,
        max_actions: int,
    ) -> None:
        self._store = store
        self._executor = executor
        self._telemetry = telemetry
        self._clock = clock
        self._max_actions = max_actions

    async def status(
        self,
        entry: PolicyEntry,
        *,
        conditions: Conditions,
        counts: AgentCounts | None = None,
        spend: Spend | None = None,
        spend_due: bool = True,
        recent: list[RecentAction] | None = None,
    ) -> bool:
        """Write the status these findings give; whether a PATCH was sent and landed.

        With ``spend_due`` False the new spend is written only along with another change:
        alone it would not justify a write."""
        now = self._clock()

        def next_status(old: AgentPolicyStatus | None, spend: Spend | None) -> AgentPolicyStatus:
            return build_status(
                old,
                now=now,
                generation=entry.generation,
                conditions=conditions,
                agents=counts,
                spend=spend,
                new_actions=recent or [],
                max_actions=self._max_actions,
            )

        def build(base: dict[str, Any] | None) -> dict[str, Any] | None:
            old = entry.status if base is None else parse_status(base)
            if (
                not spend_due
                and old is not None
                and old.spend is not None
                and status_patch(old, next_status(old, old.spend), now=now) is None
            ):
                return None  # only the spend moved, and it is not due yet
            return status_patch(old, next_status(old, spend), now=now)

        try:
            snapshot, patch = await self._store.write_status(
                entry.namespace, entry.name, entry.snapshot, build
            )
        except StoreError as exc:
            self._telemetry.errors.labels("status").inc()
            log.warning("cannot write status of %s/%s: %s", entry.namespace, entry.name, exc)
            return False
        entry.snapshot = snapshot
        if patch is None:
            return False
        entry.status = AgentPolicyStatus.model_validate(patch)
        return True

    async def annotations(self, entry: PolicyEntry, wanted: dict[str, str | None]) -> bool:
        """Set (None: remove) owned annotations; False when not stored (a lost race makes
        the next cycle read the policy again)."""
        try:
            entry.snapshot = await self._store.write_annotations(
                entry.namespace, entry.name, entry.snapshot, wanted
            )
            return True
        except SupersededError:
            log.warning(
                "the state of %s/%s was changed by another replica; reading it again",
                *entry.key,
            )
            entry.fresh = False
        except StoreError as exc:
            self._telemetry.errors.labels("status").inc()
            log.warning("cannot store the state of %s/%s: %s", entry.namespace, entry.name, exc)
        return False

    async def event(
        self, entry: PolicyEntry, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """An Event on the policy; a failure is logged."""
        try:
            await asyncio.to_thread(
                self._executor.emit_event,
                entry.ref.object_reference(),
                reason,
                message,
                "Warning" if warning else "Normal",
            )
        except ActionError as exc:
            log.warning("cannot post Event on %s/%s: %s", entry.namespace, entry.name, exc)
