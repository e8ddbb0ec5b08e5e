"""What every action shares: the client, the clock, Events, results and the guarded write.

Every change follows the same discipline:

1. read the object, and from its ``agentmedic.io/*`` record decide whether there is
   anything to do (the same episode never acts twice);
2. write the change and the record in ONE patch, guarded against concurrent edits: a
   JSON-patch whose ``test`` operations check exactly the values being replaced (the
   replica count, the env entry at its index), so another controller's or a person's edit
   in between makes the patch fail (422) instead of being overwritten; the action then
   re-reads and decides again, a bounded number of times (:meth:`ActionContext.guarded`);
3. write an Event on the workload and on the policy (:meth:`ActionContext.result`).

Objects other than the workload (a KEDA ScaledObject, a ConfigMap) are changed AFTER the
record that allows undoing them is on the workload, and restored BEFORE the record is
cleared, so that a crash at any point leaves a record that restore can finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agentmedic.actions import events as ev
from agentmedic.actions import record as rec
from agentmedic.actions.errors import ActionError, Conflict, Invalid, NotFound
from agentmedic.actions.objects import Patch, resource_version_of, uid_of
from agentmedic.actions.record import PolicyRef, WorkloadRef, json_pointer
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.kube import JSON_PATCH, Kube
from agentmedic.kube.readers import config_map_value

__all__ = ["ActionContext", "ActionSettings"]

log = logging.getLogger(__name__)

_WARNINGS = (ExecutionOutcome.REFUSED, ExecutionOutcome.NOT_FOUND, ExecutionOutcome.FAILED)
"""Outcomes whose Event is a Warning."""


@dataclass
class ActionSettings:
    """The client and settings every action runs with.

    ``now`` is the clock for restore notes and Events; ``conflict_attempts`` bounds
    re-read-and-retry after a concurrent edit; ``max_restore_replicas`` is the most replicas
    a restore puts back (a record asking for more is refused as corrupt).
    """

    kube: Kube
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    conflict_attempts: int = 5
    max_restore_replicas: int = rec.MAX_REPLICAS


@dataclass
class ActionContext(ActionSettings):
    """The settings, and the steps the actions share."""

    def emit_event(
        self,
        involved: dict[str, str],
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        action: str = "",
    ) -> dict[str, Any] | None:
        """Write a core/v1 Event about ``involved``; see :func:`events.emit_event`."""
        return ev.emit_event(self.kube, involved, reason, message, type, action, now=self.now)

    def tell(
        self,
        ref: WorkloadRef,
        policy: PolicyRef | None,
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        action: str = "",
        uid: str = "",
    ) -> None:
        self.emit_event(ref.object_reference(uid or None), reason, message, type, action)
        if policy is not None:
            self.emit_event(policy.object_reference(), reason, message, type, action)

    def result(
        self,
        action: ActionKind,
        ref: WorkloadRef,
        outcome: ExecutionOutcome,
        message: str,
        *,
        policy: PolicyRef | None,
        reason: str = "",
        uid: str = "",
        details: Mapping[str, Any] | None = None,
        event: bool = True,
        dry_run: bool = False,
    ) -> ActionResult:
        """Build a result and write its Event(s); Warning for refusals and failures.

        In a dry run every message starts with "would", refusals and failures included.
        """
        if dry_run and not message.startswith("would"):
            if outcome is ExecutionOutcome.REFUSED:
                message = f"would refuse: {message}"
            elif outcome in (ExecutionOutcome.NOT_FOUND, ExecutionOutcome.FAILED):
                message = f"would fail: {message}"
        if not reason:
            reason = {
                ExecutionOutcome.REFUSED: ev.EventReason.REFUSED,
                ExecutionOutcome.NOT_FOUND: ev.EventReason.WORKLOAD_NOT_FOUND,
                ExecutionOutcome.FAILED: ev.EventReason.FAILED,
            }.get(outcome, "")
        if event and reason:
            warning = outcome in _WARNINGS
            self.tell(
                ref,
                policy,
                reason,
                message,
                "Warning" if warning else "Normal",
                str(action),
                uid,
            )
        return ActionResult(action, ref, outcome, message, reason, dict(details or {}))

    def changed(
        self,
        action: ActionKind,
        ref: WorkloadRef,
        obj: Mapping[str, Any],
        message: str,
        reason: str,
        policy: PolicyRef | None,
        details: Mapping[str, Any],
        *,
        dry_run: bool,
    ) -> ActionResult:
        """A change to ``obj`` made, or in a dry run one that would be, with its Event."""
        outcome = ExecutionOutcome.DRY_RUN if dry_run else ExecutionOutcome.APPLIED
        return self.result(
            action,
            ref,
            outcome,
            message,
            policy=policy,
            reason=reason,
            uid=uid_of(obj),
            details=details,
        )

    def failed(
        self,
        action: ActionKind,
        ref: WorkloadRef,
        exc: ActionError,
        policy: PolicyRef | None,
        dry_run: bool = False,
    ) -> ActionResult:
        gone = isinstance(exc, NotFound)
        outcome = ExecutionOutcome.NOT_FOUND if gone else ExecutionOutcome.FAILED
        message = f"{action} on {ref} failed: {exc.message}"
        return self.result(action, ref, outcome, message, policy=policy, dry_run=dry_run)

    def guarded(
        self,
        ref: WorkloadRef,
        decide: Callable[[dict[str, Any]], Patch | ActionResult],
    ) -> tuple[dict[str, Any], ActionResult | None]:
        """Read, decide, patch; on a lost race re-read and decide again.

        ``decide`` gets the current object and returns the JSON-patch to apply (empty: no
        write needed, carry on), or a result that ends the action without a write. Returns
        ``(object after the write, None)`` or ``(object read, result)``. A 422 after which
        the resourceVersion has not moved is a genuine rejection and raises
        :class:`Invalid`; one after which it has moved means a ``test`` failed on a
        concurrent edit, and so does a 409.
        """
        for _ in range(self.conflict_attempts):
            obj = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
            decision = decide(obj)
            if isinstance(decision, ActionResult):
                return obj, decision
            if not decision:
                return obj, None
            try:
                return (
                    self.kube.patch_workload(
                        ref.kind, ref.namespace, ref.name, decision, JSON_PATCH
                    ),
                    None,
                )
            except Conflict:
                log.info("%s changed while being patched; re-reading", ref)
                continue
            except Invalid:
                again = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
                if resource_version_of(again) == resource_version_of(obj):
                    raise
                log.info("%s changed while being patched (test failed); re-reading", ref)
        raise Conflict(
            f"{ref} kept changing while agentmedic tried to patch it "
            f"({self.conflict_attempts} attempts); will retry on the next cycle"
        )

    def replace_config_map_value(
        self, namespace: str, name: str, key: str, current: str, new: str
    ) -> None:
        """Replace ``data[key]`` if it still holds ``current`` (re-read on a lost race)."""
        expected = current
        for _ in range(self.conflict_attempts):
            patch = [
                {"op": "test", "path": json_pointer("data", key), "value": expected},
                {"op": "replace", "path": json_pointer("data", key), "value": new},
            ]
            try:
                self.kube.patch_config_map(namespace, name, patch, JSON_PATCH)
                return
            except (Invalid, Conflict):
                value = config_map_value(self.kube, namespace, name, key)
                if value == new:
                    return
                if value is None or value == expected:
                    raise
                expected = value
        raise Conflict(f"ConfigMap {namespace}/{name} kept changing; will retry")
