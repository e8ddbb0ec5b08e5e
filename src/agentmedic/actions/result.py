"""What an action did: one :class:`ActionResult` per call, never an exception for an outcome.

Definite outcomes (done, already done, refused, the workload is gone, the API rejected the
change) come back as results, each with an Event already written. Only failures worth
retrying later (:class:`~agentmedic.actions.errors.Transient`, an exhausted
:class:`~agentmedic.actions.errors.Conflict`) are raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agentmedic.actions.record import WorkloadRef

__all__ = ["ActionKind", "ActionResult", "ExecutionOutcome"]


class ActionKind(StrEnum):
    """The wire names of the actions, as in AgentPolicy and ``status.recentActions``."""

    SCALE_TO_ZERO = "scaleToZero"
    SWITCH_MODEL = "switchModel"
    PROMPT_OPTIMIZATION = "promptOptimization"
    RESTORE = "restore"


class ExecutionOutcome(StrEnum):
    """How the execution of an action on a workload ended (not the status' outcome,
    :class:`agentmedic.api.types.ActionOutcome`, which :mod:`agentmedic.actions.request`
    derives from it)."""

    APPLIED = "Applied"
    """The change was made (restore: something was put back)."""
    UNCHANGED = "Unchanged"
    """Nothing to do: already done for this episode, or nothing recorded to restore."""
    DRY_RUN = "DryRun"
    """Nothing changed; a "would" Event says what would have."""
    REFUSED = "Refused"
    """Not done on purpose (a Job already running, the model's container is missing …)."""
    NOT_FOUND = "NotFound"
    """The workload (or the object the action needs) does not exist any more."""
    FAILED = "Failed"
    """The API rejected the change (invalid, forbidden); retrying will not help."""


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one action on one workload.

    ``message`` is for people (status, notifications, the CLI); ``reason`` is the Event
    reason written; ``details`` holds the facts (``previousReplicas``, ``job``, ``from``/
    ``to`` …) with camelCase keys.
    """

    action: ActionKind
    ref: WorkloadRef
    outcome: ExecutionOutcome
    message: str
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when the cluster was changed."""
        return self.outcome is ExecutionOutcome.APPLIED
