"""Restore: put back what agentmedic recorded on a workload, and clear the record.

The record (``agentmedic.io/disabled``, ``agentmedic.io/downgraded``, ``agentmedic.io/prompt``)
is read strictly: a
value restore would write back must be plausible, or restore refuses
(:class:`~agentmedic.actions.errors.CorruptRecordError`). Side objects (a KEDA
ScaledObject, a ConfigMap) are restored before the record is cleared, so a failure leaves
the record for the next attempt. A value someone changed since is left as it is, and the
``agentmedic.io/last-restore`` note says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentmedic.actions import events as ev
from agentmedic.actions import record as rec
from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import CorruptRecordError, Forbidden, Invalid, NotFound
from agentmedic.actions.objects import (
    Patch,
    annotation_ops,
    annotations_of,
    policy_from,
    replicas_of,
    template_annotation_ops,
)
from agentmedic.actions.prompt_record import (
    PROMPT,
    PROMPT_TEMPLATE_ANNOTATION,
    PromptRecord,
    read_prompt_record,
    sha256,
)
from agentmedic.actions.record import WorkloadRef, json_pointer, parse_downgraded
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.actions.scale import KEDA_PAUSED_REPLICAS
from agentmedic.actions.workloads import WorkloadInfo, find_env, template_env_value
from agentmedic.kube import MERGE_PATCH
from agentmedic.kube.readers import config_map_value

__all__ = ["RestorePlan", "plan_restore", "read_plan", "restore", "restore_requested"]

log = logging.getLogger(__name__)

KIND = ActionKind.RESTORE


def restore_requested(workload: WorkloadInfo | Mapping[str, Any]) -> bool:
    """True when a person asked for a restore with ``agentmedic.io/restore: "true"``.

    Accepts a :class:`WorkloadInfo` or a raw object dict.
    """
    if isinstance(workload, WorkloadInfo):
        annotations: Mapping[str, str] = workload.annotations
    else:
        annotations = (workload.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(rec.RESTORE_REQUEST, "")).strip().lower() == "true"


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would put back, read from the record (no writes)."""

    ref: WorkloadRef
    replicas: int | None = None
    """The replica count to put back, when the workload is still at 0."""
    model: str | None = None
    """The model to put back, when the workload still runs the one agentmedic set."""
    keda_scaled_object: str | None = None
    keda_paused_replicas: str | None = None
    prompt: str | None = None
    """The ConfigMap key whose text goes back into the live prompt key, when the live
    prompt is still the one agentmedic rolled out."""
    policy: str = ""
    policy_uid: str = ""
    notes: tuple[str, ...] = ()
    """Things recorded but left as they are, and why (changed since by someone else)."""
    recorded: bool = False
    """Whether there was any record at all."""
    requested: bool = False
    """Whether ``agentmedic.io/restore: "true"`` is set."""

    def describe(self) -> str:
        """One line of what is (or would be) put back."""
        parts = []
        if self.replicas is not None:
            parts.append(f"replicas 0 → {self.replicas}")
        if self.model is not None:
            parts.append(f"model → {self.model}")
        if self.keda_scaled_object is not None:
            parts.append(f"ScaledObject {self.keda_scaled_object} unpaused")
        if self.prompt is not None:
            parts.append(f"prompt → the text of {self.prompt}")
        parts.extend(self.notes)
        return "; ".join(parts) if parts else "nothing"


def plan_restore(ctx: ActionContext, ref: WorkloadRef) -> RestorePlan:
    """What :func:`restore` would put back, from the record and the live object.

    Raises :class:`CorruptRecordError` naming the annotation when the record cannot be trusted.
    """
    obj = ctx.kube.get_workload(ref.kind, ref.namespace, ref.name)
    return read_plan(ctx, ref, obj, replicas=True, model=True, prompt=True)


def read_plan(
    ctx: ActionContext,
    ref: WorkloadRef,
    obj: Mapping[str, Any],
    *,
    replicas: bool,
    model: bool,
    prompt: bool = False,
) -> RestorePlan:
    """What a restore of ``obj`` would put back; ``replicas``/``model``/``prompt`` limit it
    to some kinds of change."""
    annotations = annotations_of(obj)
    # The strict readers: a restore writes these values back, so they must be plausible.
    disabled = (
        rec.read_disabled(annotations, max_replicas=ctx.max_restore_replicas) if replicas else None
    )
    downgraded = rec.read_downgraded(annotations) if model else None
    notes: list[str] = []
    put_replicas: int | None = None
    put_model: str | None = None
    policy = policy_uid = ""
    if disabled is not None:
        policy = disabled.policy
        policy_uid = str(disabled.raw.get("policyUid", ""))
        now = replicas_of(obj)
        if now == 0:
            put_replicas = disabled.replicas
        else:
            notes.append(
                f"replicas left at {now} (changed since agentmedic set 0; recorded "
                f"{disabled.replicas})"
            )
    if downgraded is not None:
        policy = policy or downgraded.policy
        policy_uid = policy_uid or str(downgraded.raw.get("policyUid", ""))
        env = downgraded.env
        if env is not None:
            now_model = template_env_value(obj, env[0], env[1])
        else:
            cm = downgraded.config_map_key or ("", "")
            now_model = config_map_value(ctx.kube, ref.namespace, cm[0], cm[1])
        if now_model == downgraded.to:
            put_model = downgraded.model
        else:
            notes.append(
                f"model left at {now_model} (changed since agentmedic set {downgraded.to}; "
                f"recorded {downgraded.model})"
            )
    rolled = read_prompt_record(annotations) if prompt else None
    put_prompt = None
    if rolled is not None:
        policy = policy or rolled.policy
        policy_uid = policy_uid or str(rolled.raw.get("policyUid", ""))
        put_prompt = _prompt_to_put_back(ctx, ref, rolled, notes)
    return RestorePlan(
        ref=ref,
        replicas=put_replicas,
        model=put_model,
        prompt=put_prompt,
        keda_scaled_object=disabled.keda_scaled_object if disabled else None,
        keda_paused_replicas=disabled.keda_previous_paused_replicas if disabled else None,
        policy=policy,
        policy_uid=policy_uid,
        notes=tuple(notes),
        recorded=disabled is not None or downgraded is not None or rolled is not None,
        requested=restore_requested(obj),
    )


def _prompt_to_put_back(
    ctx: ActionContext, ref: WorkloadRef, rolled: PromptRecord, notes: list[str]
) -> str | None:
    """The key whose text restore writes back into the live prompt, or None (and a note)
    when the live prompt changed since agentmedic rolled it out or the kept text is gone."""
    try:
        data = ctx.kube.get_config_map(ref.namespace, rolled.config_map).get("data") or {}
    except NotFound:
        data = {}
    live = data.get(rolled.key)
    where = f"{rolled.key} of ConfigMap {rolled.config_map}"
    if live is None or sha256(str(live)) != rolled.sha256:
        notes.append(
            f"prompt left as it is ({where} changed since agentmedic rolled out "
            f"{rolled.version}; the text before is kept in {rolled.previous})"
        )
        return None
    if rolled.previous not in data:
        notes.append(
            f"prompt left as it is (the text before, {rolled.previous}, is gone "
            f"from ConfigMap {rolled.config_map})"
        )
        return None
    return rolled.previous


def restore(
    ctx: ActionContext,
    ref: WorkloadRef,
    by: str,
    *,
    replicas: bool = True,
    model: bool = True,
    prompt: bool = True,
    dry_run: bool = False,
) -> ActionResult:
    """Put back what agentmedic recorded on the workload and clear the record.

    ``by`` says who asked ("auto-recovery", "annotation", "cli:alice") and lands in the
    ``agentmedic.io/last-restore`` note and the Events. ``replicas``/``model`` restrict
    the restore to one kind of change (auto recovery may step the model back alone);
    ``prompt`` puts back the prompt a rolled-out candidate replaced (recovery leaves it).
    A value changed since by someone else is left as it is, and the note says so.
    The ``agentmedic.io/restore`` request annotation is removed in any case; without a
    record that is the only write.
    """
    kind = KIND
    try:
        scope = _Scope(replicas=replicas, model=model, prompt=prompt)
        return _restore(ctx, ref, by, scope, dry_run=dry_run)
    except CorruptRecordError as exc:
        # Refused, not failed: nothing was written and the record stays for a person.
        message = f"restore of {ref} refused: {exc.message}"
        return ctx.result(
            kind, ref, ExecutionOutcome.REFUSED, message, policy=None, dry_run=dry_run
        )
    except (NotFound, Invalid, Forbidden) as exc:
        return ctx.failed(kind, ref, exc, None, dry_run)


def _restore(
    ctx: ActionContext, ref: WorkloadRef, by: str, scope: _Scope, *, dry_run: bool
) -> ActionResult:
    obj = ctx.kube.get_workload(ref.kind, ref.namespace, ref.name)
    plan = read_plan(ctx, ref, obj, replicas=scope.replicas, model=scope.model, prompt=scope.prompt)
    policy = policy_from(plan.policy, plan.policy_uid)
    if not plan.recorded:
        if plan.requested and not dry_run:
            ctx.kube.patch_workload(
                ref.kind,
                ref.namespace,
                ref.name,
                {"metadata": {"annotations": {rec.RESTORE_REQUEST: None}}},
                MERGE_PATCH,
            )
        return ActionResult(
            KIND,
            ref,
            ExecutionOutcome.UNCHANGED,
            f"nothing to restore: {ref} carries no agentmedic record "
            f"({rec.DISABLED} / {rec.DOWNGRADED} / {PROMPT})",
        )
    details = _plan_details(plan)
    if dry_run:
        text = f"would restore {ref}: {plan.describe()} (dry run, asked by {by})"
        return ctx.changed(
            KIND, ref, obj, text, ev.EventReason.WOULD_RESTORE, policy, details, dry_run=True
        )
    cm_restored = _restore_side_objects(ctx, ref, obj, plan, model=scope.model)
    prompt_restored = _restore_prompt(ctx, ref, obj, plan) if scope.prompt else False
    note = f"{rec.format_time(ctx.now())} by {by}: {plan.describe()}"
    done = _Scope(scope.replicas, scope.model, scope.prompt, cm_restored, prompt_restored)
    obj, _ = ctx.guarded(ref, lambda current: _restore_patch(ctx, ref, current, plan, note, done))
    text = f"restored {ref}: {plan.describe()} (asked by {by})"
    return ctx.changed(
        KIND, ref, obj, text, ev.EventReason.RESTORED, policy, details, dry_run=False
    )


@dataclass(frozen=True)
class _Scope:
    """Which changes a restore puts back, and whether a ConfigMap was already restored."""

    replicas: bool
    model: bool
    prompt: bool = True
    cm_restored: bool = False
    prompt_restored: bool = False


def _restore_prompt(
    ctx: ActionContext, ref: WorkloadRef, obj: Mapping[str, Any], plan: RestorePlan
) -> bool:
    """Write the kept text back into the live prompt key (guarded by a test of the text
    agentmedic rolled out), before the record is cleared; whether it was written."""
    rolled = read_prompt_record(annotations_of(obj))
    if plan.prompt is None or rolled is None:
        return False
    data = ctx.kube.get_config_map(ref.namespace, rolled.config_map).get("data") or {}
    live, before = data.get(rolled.key), data.get(plan.prompt)
    if live is None or before is None:
        return False
    if live != before:
        ctx.replace_config_map_value(ref.namespace, rolled.config_map, rolled.key, live, before)
    return True


def _restore_side_objects(
    ctx: ActionContext, ref: WorkloadRef, obj: Mapping[str, Any], plan: RestorePlan, *, model: bool
) -> bool:
    """Unpause KEDA and put the ConfigMap's model back, before the record is cleared.
    Returns whether the ConfigMap was restored (the pod template then needs a stamp)."""
    if plan.keda_scaled_object is not None:
        previous = plan.keda_paused_replicas  # None removes the annotation
        try:
            ctx.kube.patch_scaled_object(
                ref.namespace,
                plan.keda_scaled_object,
                {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: previous}}},
            )
        except NotFound:
            log.info("ScaledObject %s is gone; nothing to unpause", plan.keda_scaled_object)
    downgraded = parse_downgraded(annotations_of(obj)) if model else None
    if plan.model is None or downgraded is None or downgraded.config_map_key is None:
        return False
    name, key = downgraded.config_map_key
    ctx.replace_config_map_value(ref.namespace, name, key, downgraded.to, plan.model)
    return True


def _restore_patch(
    ctx: ActionContext,
    ref: WorkloadRef,
    current: dict[str, Any],
    plan: RestorePlan,
    note: str,
    scope: _Scope,
) -> Patch:
    """The guarded patch putting back what ``current`` still shows as agentmedic set it."""
    annotations = annotations_of(current)
    live = read_plan(ctx, ref, current, replicas=scope.replicas, model=scope.model, prompt=False)
    ops: Patch = []
    if live.replicas is not None:
        ops += [
            {"op": "test", "path": "/spec/replicas", "value": 0},
            {"op": "replace", "path": "/spec/replicas", "value": live.replicas},
        ]
    now_down = parse_downgraded(annotations) if scope.model else None
    if now_down is not None and now_down.env is not None and live.model is not None:
        ci, ei, _ = find_env(current, *now_down.env)
        if ci >= 0 and ei >= 0:
            base = json_pointer("spec", "template", "spec", "containers", ci)
            ops += [
                {"op": "test", "path": f"{base}/name", "value": now_down.env[0]},
                {"op": "test", "path": f"{base}/env/{ei}/name", "value": now_down.env[1]},
                {"op": "test", "path": f"{base}/env/{ei}/value", "value": now_down.to},
                {"op": "replace", "path": f"{base}/env/{ei}/value", "value": live.model},
            ]
    if scope.cm_restored and plan.model is not None:
        ops += template_annotation_ops(current, rec.MODEL_TEMPLATE_ANNOTATION, plan.model)
    if scope.prompt_restored and plan.prompt is not None:
        ops += template_annotation_ops(current, PROMPT_TEMPLATE_ANNOTATION, plan.prompt)
    remove: list[str] = [rec.RESTORE_REQUEST]
    if scope.replicas:
        remove.append(rec.DISABLED)
    if scope.model:
        remove.append(rec.DOWNGRADED)
        if "revertedAt" not in (rec.load_object(annotations, rec.PROBATION) or {}):
            remove.append(rec.PROBATION)  # a reverted one stays: it holds the rejection
    if scope.prompt:
        remove.append(PROMPT)
    remaining = {rec.DISABLED, rec.DOWNGRADED, PROMPT} - set(remove)
    if not any(k in annotations for k in remaining):
        remove += list(rec.LAST_ACTION_KEYS)
    ops += annotation_ops(current, {rec.LAST_RESTORE: note}, tuple(remove))
    return ops


def _plan_details(plan: RestorePlan) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if plan.replicas is not None:
        details["replicas"] = plan.replicas
    if plan.model is not None:
        details["model"] = plan.model
    if plan.keda_scaled_object is not None:
        details["scaledObject"] = plan.keda_scaled_object
    if plan.prompt is not None:
        details["prompt"] = plan.prompt
    if plan.notes:
        details["notes"] = list(plan.notes)
    return details
