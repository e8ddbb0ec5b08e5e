"""Scale to zero: an agent's Deployment or StatefulSet to 0 replicas, the count recorded.

HPA. A workload scaled to zero is left alone by a HorizontalPodAutoscaler whose
``minReplicas`` is not 0: the HPA controller reports ``ScalingActive=False`` with reason
``ScalingDisabled`` ("scaling is disabled since the replica count of the target is zero")
and does not rescale (kubernetes/kubernetes, pkg/controller/podautoscaler/horizontal.go,
``reconcileAutoscaler``: ``if scale.Spec.Replicas == 0 && minReplicas != 0 { ... rescale =
false }``, introduced by PR #29212 "HPA: ignore scale targets whose replica count is 0";
documented as "Implicit maintenance-mode deactivation" in the HPA task page). Restoring the
replica count re-activates the HPA. An HPA with ``minReplicas: 0`` (the HPAScaleToZero
feature) does NOT skip a zero target and may scale the agent back up; the action says so
in a Warning and in the result rather than fight it.

KEDA. When a ScaledObject targets the workload, the action BOTH pauses it with
``autoscaling.keda.sh/paused-replicas: "0"`` (KEDA's documented pause: it scales the target
to that count and stops autoscaling until the annotation is removed) AND scales the
workload to zero itself. Pausing alone leaves the agent running until KEDA reconciles (or
forever if KEDA is down); scaling alone is undone as soon as a trigger activates. The
ScaledObject's previous ``paused-replicas`` value is recorded, and restore puts it back
(removing the annotation when there was none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmedic.actions import events as ev
from agentmedic.actions import record as rec
from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import Forbidden, Invalid, NotFound
from agentmedic.actions.objects import (
    Patch,
    annotation_ops,
    annotations_of,
    replicas_of,
    undo_hint,
    why,
)
from agentmedic.actions.record import ActionRecord, WorkloadRef, canonical_json, parse_disabled
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome

__all__ = [
    "KEDA_PAUSED_REPLICAS",
    "ensure_keda_paused",
    "find_hpas",
    "find_scaled_object",
    "scale_to_zero",
]

log = logging.getLogger(__name__)

KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"

KIND = ActionKind.SCALE_TO_ZERO


@dataclass(frozen=True)
class _Autoscalers:
    """What scales the workload besides agentmedic."""

    keda: dict[str, Any] | None
    """The KEDA ScaledObject targeting it."""
    hpas: list[str]
    """Names of the HPAs targeting it."""
    warnings: list[str]
    """Why some of those HPAs may undo a scale to zero."""


def scale_to_zero(ctx: ActionContext, ref: WorkloadRef, record: ActionRecord) -> ActionResult:
    """Scale a Deployment/StatefulSet to 0, recording the previous count; pause KEDA.

    Idempotent: a workload already disabled by agentmedic is not written again (only
    an interrupted KEDA pause is completed). A workload already at 0 that agentmedic
    did not disable is left alone, with nothing recorded (there is nothing to restore),
    unless a KEDA ScaledObject targets it: KEDA would scale it up again, so it is paused
    and the record says 0.
    """
    try:
        return _scale_to_zero(ctx, ref, record)
    except (NotFound, Invalid, Forbidden) as exc:
        return ctx.failed(KIND, ref, exc, record.policy, record.dry_run)


def _scale_to_zero(ctx: ActionContext, ref: WorkloadRef, record: ActionRecord) -> ActionResult:
    planned: dict[str, int] = {}
    # Autoscalers are looked up only when the workload is not disabled yet, and once.
    found: list[_Autoscalers] = []

    def autoscalers() -> _Autoscalers:
        if not found:
            keda = find_scaled_object(ctx, ref)
            hpas, warnings = find_hpas(ctx, ref)
            found.append(_Autoscalers(keda, hpas, warnings))
        return found[0]

    obj, early = ctx.guarded(ref, lambda obj: _decide(obj, ref, record, planned, autoscalers))
    if early is not None and early.outcome is ExecutionOutcome.UNCHANGED:
        existing = parse_disabled(annotations_of(obj))
        if existing is not None and existing.keda_scaled_object and not record.dry_run:
            ensure_keda_paused(ctx, ref, existing.keda_scaled_object)
        return early
    # ``early`` is now a dry run's, or None after the write.
    return _report(ctx, ref, record, obj, planned["replicas"], autoscalers(), early is not None)


def _decide(
    obj: dict[str, Any],
    ref: WorkloadRef,
    record: ActionRecord,
    planned: dict[str, int],
    autoscalers: Callable[[], _Autoscalers],
) -> Patch | ActionResult:
    """The guarded patch scaling ``obj`` to 0 with its record, or why there is none."""
    existing = parse_disabled(annotations_of(obj))
    if existing is not None and existing.episode == record.episode and replicas_of(obj) > 0:
        # Our record, yet replicas are back: someone reverted the change (a GitOps sync)
        # and the policy's onRevert re-applies it. The record, with the count from before
        # agentmedic's first change, stays as it is so that restore puts that back.
        current = planned["replicas"] = replicas_of(obj)
        if record.dry_run:
            return ActionResult(KIND, ref, ExecutionOutcome.DRY_RUN, "")
        return [
            {"op": "test", "path": "/spec/replicas", "value": current},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
        ]
    if existing is not None:
        return ActionResult(
            KIND,
            ref,
            ExecutionOutcome.UNCHANGED,
            f"{ref} is already scaled to zero by agentmedic (episode {existing.episode}, "
            f"rule {existing.rule}); {existing.replicas} replica(s) recorded",
            details={"previousReplicas": existing.replicas, "episode": existing.episode},
        )
    replicas = replicas_of(obj)
    found = autoscalers()
    # KEDA may have scaled an idle agent to 0 and would scale it up on the next
    # trigger: it still needs pausing. Anything else at 0 needs nothing.
    if replicas == 0 and found.keda is None:
        return ActionResult(
            KIND,
            ref,
            ExecutionOutcome.UNCHANGED,
            f"{ref} already has 0 replicas (not set by agentmedic); nothing recorded",
            details={"previousReplicas": 0},
        )
    planned["replicas"] = replicas
    if record.dry_run:
        return ActionResult(KIND, ref, ExecutionOutcome.DRY_RUN, "")
    keda_record = None
    if found.keda is not None:
        keda_record = {
            "scaledObject": found.keda["metadata"]["name"],
            "pausedReplicas": annotations_of(found.keda).get(KEDA_PAUSED_REPLICAS),
        }
    value = {"replicas": replicas, "keda": keda_record, "hpa": found.hpas, **record.who_why_when()}
    return [
        {"op": "test", "path": "/spec/replicas", "value": replicas},
        {"op": "replace", "path": "/spec/replicas", "value": 0},
        *annotation_ops(obj, {rec.DISABLED: canonical_json(value), **record.flat_annotations()}),
    ]


def _report(
    ctx: ActionContext,
    ref: WorkloadRef,
    record: ActionRecord,
    obj: dict[str, Any],
    replicas: int,
    found: _Autoscalers,
    dry_run: bool,
) -> ActionResult:
    """Pause KEDA after the write (not in a dry run) and say what was (or would be) done."""
    extra = "".join(f"; {w}" for w in found.warnings)
    so_name = found.keda["metadata"]["name"] if found.keda is not None else None
    details: dict[str, Any] = {"previousReplicas": replicas, "hpa": found.hpas}
    if so_name:
        details["scaledObject"] = so_name
    if found.warnings:
        details["warnings"] = found.warnings
    if dry_run:
        keda_text = f" and pause ScaledObject {so_name}" if so_name else ""
        text = (
            f"would scale {ref} from {replicas} to 0 replicas{keda_text} (dry run): "
            f"{why(record)}{extra}"
        )
        reason = ev.EventReason.WOULD_SCALE_TO_ZERO
    else:
        if so_name:
            ensure_keda_paused(ctx, ref, so_name)
        keda_text = f", paused ScaledObject {so_name}" if so_name else ""
        text = (
            f"scaled {ref} from {replicas} to 0 replicas{keda_text}: {why(record)}; "
            f"{undo_hint(ref)}{extra}"
        )
        reason = ev.EventReason.SCALED_TO_ZERO
    return ctx.changed(KIND, ref, obj, text, reason, record.policy, details, dry_run=dry_run)


def find_scaled_object(ctx: ActionContext, ref: WorkloadRef) -> dict[str, Any] | None:
    """The KEDA ScaledObject targeting the workload; None without KEDA or without one."""
    try:
        items = ctx.kube.list_scaled_objects(ref.namespace)
    except NotFound:
        return None  # KEDA's CRD is not installed
    except Forbidden:
        log.warning("may not list ScaledObjects in %s; assuming no KEDA", ref.namespace)
        return None
    for so in items:
        target = (so.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("name") == ref.name and target.get("kind", "Deployment") == ref.kind:
            return so
    return None


def find_hpas(ctx: ActionContext, ref: WorkloadRef) -> tuple[list[str], list[str]]:
    """Names of HPAs targeting the workload, and warnings for those that would undo 0."""
    try:
        items = ctx.kube.list_hpas(ref.namespace)
    except (NotFound, Forbidden):
        return [], []
    names: list[str] = []
    warnings: list[str] = []
    for hpa in items:
        spec = hpa.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if target.get("name") != ref.name or target.get("kind") != ref.kind:
            continue
        name = str(hpa["metadata"]["name"])
        names.append(name)
        if spec.get("minReplicas") == 0:
            warnings.append(
                f"HorizontalPodAutoscaler {name} has minReplicas 0 and may scale the agent "
                "back up; set its minReplicas to 1 or more, or use KEDA"
            )
    return sorted(names), warnings


def ensure_keda_paused(ctx: ActionContext, ref: WorkloadRef, scaled_object: str) -> None:
    """Pause the ScaledObject unless it already is (a repeated apply writes nothing)."""
    try:
        so = ctx.kube.get_scaled_object(ref.namespace, scaled_object)
        if annotations_of(so).get(KEDA_PAUSED_REPLICAS) == "0":
            return
        ctx.kube.patch_scaled_object(
            ref.namespace,
            scaled_object,
            {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: "0"}}},
        )
    except NotFound:
        log.warning("ScaledObject %s/%s vanished; not paused", ref.namespace, scaled_object)
