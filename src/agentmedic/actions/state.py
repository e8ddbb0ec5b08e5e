"""The engine's memory on an agent's workload, and the mark of a deleted policy.

The operator keeps each policy's per-agent state in ``agentmedic.io/state.<policy>`` on
the agent's workload (sharded like the agents), written only when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentmedic.actions import record as rec
from agentmedic.actions.context import ActionContext
from agentmedic.actions.objects import annotations_of
from agentmedic.actions.record import PolicyRef, WorkloadRef, canonical_json
from agentmedic.actions.workloads import WorkloadInfo
from agentmedic.kube import MERGE_PATCH

__all__ = ["mark_policy_deleted", "read_agent_state", "write_agent_state"]


def read_agent_state(
    workload: WorkloadInfo | Mapping[str, str], policy_key: str
) -> dict[str, Any] | None:
    """The engine state the operator stored for ``policy_key`` on an agent, or None.

    Accepts a :class:`WorkloadInfo` or its annotations. An unreadable value (hand-edited)
    reads as None: the engine starts that agent afresh rather than crash.
    """
    annotations = workload.annotations if isinstance(workload, WorkloadInfo) else workload
    return rec.load_object(annotations, rec.state_key(policy_key))


def write_agent_state(
    ctx: ActionContext,
    ref: WorkloadRef,
    policy_key: str,
    state: Mapping[str, Any] | None,
    *,
    annotations: Mapping[str, str] | None = None,
) -> bool:
    """Store the engine's per-agent state for one policy; write only if it changed.

    ``annotations`` are the workload's current annotations when the caller has them
    (from :meth:`list_workloads`), saving a read. ``state=None`` removes the key.
    Returns whether a write happened.
    """
    key = rec.state_key(policy_key)
    value = None if state is None else canonical_json(state)
    if annotations is None:
        annotations = annotations_of(ctx.kube.get_workload(ref.kind, ref.namespace, ref.name))
    if annotations.get(key) == value:
        return False
    ctx.kube.patch_workload(
        ref.kind,
        ref.namespace,
        ref.name,
        {"metadata": {"annotations": {key: value}}},
        MERGE_PATCH,
    )
    return True


def mark_policy_deleted(
    ctx: ActionContext, ref: WorkloadRef, policy: PolicyRef, at: datetime | None = None
) -> None:
    """Note on a workload that the policy which changed it is gone (changes stay)."""
    stamp = rec.format_time(at or ctx.now())
    ctx.kube.patch_workload(
        ref.kind,
        ref.namespace,
        ref.name,
        {"metadata": {"annotations": {rec.POLICY_DELETED: f"{policy} at {stamp}"}}},
        MERGE_PATCH,
    )
