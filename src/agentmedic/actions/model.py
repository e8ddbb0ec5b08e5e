"""Switch model: point an agent at another model tier, where the policy says it lives.

The model is either a literal env var of one container of the pod template, or a key of
a ConfigMap the agent reads (then the pod template gets an annotation so pods restart).
The record keeps the FIRST model agentmedic replaced, so restore returns to where the
agent started.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agentmedic.actions import events as ev
from agentmedic.actions import record as rec
from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import Forbidden, Invalid, NotFound
from agentmedic.actions.objects import (
    Patch,
    annotation_ops,
    annotations_of,
    refusal,
    uid_of,
    undo_hint,
    why,
)
from agentmedic.actions.probation import ProbationChange, probation_annotations
from agentmedic.actions.record import (
    ActionRecord,
    WorkloadRef,
    canonical_json,
    json_pointer,
    parse_downgraded,
)
from agentmedic.actions.restore import restore
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.actions.workloads import WorkloadInfo, find_env, template_env_value
from agentmedic.api.types import ModelSpec
from agentmedic.kube import STRATEGIC_MERGE_PATCH
from agentmedic.kube.readers import config_map_value

__all__ = ["current_model", "ensure_template_model", "switch_model"]

log = logging.getLogger(__name__)


def current_model(
    ctx: ActionContext, workload: WorkloadInfo | Mapping[str, Any], model_spec: ModelSpec
) -> str | None:
    """The model an agent runs: its env var's literal value, or the ConfigMap key's value.

    ``workload`` is a :class:`WorkloadInfo` (its ``model`` when filled, else re-read)
    or a raw object dict. None when the variable, the ConfigMap or the key is absent.
    """
    if model_spec.env is not None:
        if isinstance(workload, WorkloadInfo):
            if workload.model is not None:
                return workload.model
            obj = ctx.kube.get_workload(workload.kind, workload.namespace, workload.name)
        else:
            obj = dict(workload)
        return template_env_value(obj, model_spec.env.container, model_spec.env.name)
    if model_spec.config_map_key is not None:
        if isinstance(workload, WorkloadInfo):
            namespace, name = workload.namespace, workload.name
        else:
            meta = workload.get("metadata") or {}
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        ref = model_spec.config_map_key
        return config_map_value(ctx.kube, namespace, ref.config_map_for(name), ref.key)
    return None


def switch_model(
    ctx: ActionContext,
    ref: WorkloadRef,
    model_spec: ModelSpec,
    to_model: str,
    record: ActionRecord,
) -> ActionResult:
    """Set the agent's model to ``to_model`` where ``model_spec`` says it lives.

    Env var: one JSON-patch tests the container's name, the variable's name and its
    current value at their exact indexes and replaces only that value, so every other
    container and env entry is kept and a concurrent edit is detected (re-read, retry).
    ConfigMap key: the record is written on the workload first, then the key is
    replaced (guarded by a ``test`` of its value), then the pod template gets the
    annotation ``agentmedic.io/model`` so that pods restart and read the new value.

    The record keeps the FIRST model agentmedic replaced, so after several steps down
    restore returns to where the agent started; switching to that first model is a
    restore of the model (the record is cleared). Idempotent per episode.
    """
    kind = ActionKind.SWITCH_MODEL
    try:
        obj = ctx.kube.get_workload(ref.kind, ref.namespace, ref.name)
        existing = parse_downgraded(annotations_of(obj))
        if (
            existing is not None
            and existing.episode == record.episode != ""
            and existing.to not in ("", to_model)
        ):
            # This episode chose another model already (a restart between acting and
            # persisting decides again, one tier below the model it switched to): an
            # episode acts once on a workload, so this is done, not a further step. The
            # same target again goes on (it finishes an interrupted ConfigMap switch).
            return ActionResult(
                kind,
                ref,
                ExecutionOutcome.UNCHANGED,
                f"{ref} was switched to model {existing.to} by this episode already "
                f"({existing.episode}, rule {existing.rule})",
                details={"model": existing.to, "episode": existing.episode},
            )
        if existing is not None and existing.model == to_model:
            # Back to where agentmedic found it: that is a restore of the model, and
            # must clear the record rather than record "downgraded" to the original.
            return restore(
                ctx,
                ref,
                by=f"switchModel back to {to_model} ({record.rule})",
                replicas=False,
                prompt=False,
                dry_run=record.dry_run,
            )
        if model_spec.env is not None:
            return _switch_env(ctx, ref, model_spec, to_model, record)
        if model_spec.config_map_key is not None:
            return _switch_config_map(ctx, ref, model_spec, to_model, record)
    except (NotFound, Invalid, Forbidden) as exc:
        return ctx.failed(kind, ref, exc, record.policy, record.dry_run)
    return ctx.result(
        kind,
        ref,
        ExecutionOutcome.REFUSED,
        f"cannot switch the model of {ref}: the policy sets neither spec.model.env nor "
        "spec.model.configMapKey; set one of them",
        policy=record.policy,
        dry_run=record.dry_run,
    )


def _switch_env(
    ctx: ActionContext, ref: WorkloadRef, model_spec: ModelSpec, to_model: str, record: ActionRecord
) -> ActionResult:
    kind = ActionKind.SWITCH_MODEL
    assert model_spec.env is not None
    container, variable = model_spec.env.container, model_spec.env.name
    seen: dict[str, Any] = {}

    def decide(obj: dict[str, Any]) -> Patch | ActionResult:
        ci, ei, entry = find_env(obj, container, variable)
        if ci < 0:
            names = [c.get("name") for c in obj["spec"]["template"]["spec"].get("containers") or []]
            return refusal(
                kind,
                ref,
                f"{ref} has no container {container!r} (containers: "
                f"{', '.join(map(str, names))}); fix spec.model.env.container",
            )
        if ei < 0 or entry is None or "value" not in entry:
            how = "sets it with valueFrom" if entry is not None else "does not set it"
            return refusal(
                kind,
                ref,
                f"container {container!r} of {ref} {how}: switchModel needs a literal "
                f"env var {variable!r}; add `- name: {variable}` with a value to the "
                "container, or point spec.model.env at the right variable",
            )
        current = str(entry["value"])
        seen["current"] = current
        early = _no_switch(ref, current, to_model, record)
        if early is not None:
            return early
        source = {"env": {"container": container, "name": variable}}
        value = _downgraded_value(obj, current, to_model, source, record)
        base = json_pointer("spec", "template", "spec", "containers", ci)
        return [
            {"op": "test", "path": f"{base}/name", "value": container},
            {"op": "test", "path": f"{base}/env/{ei}/name", "value": variable},
            {"op": "test", "path": f"{base}/env/{ei}/value", "value": current},
            {"op": "replace", "path": f"{base}/env/{ei}/value", "value": to_model},
            *annotation_ops(
                obj,
                {
                    rec.DOWNGRADED: canonical_json(value),
                    **record.flat_annotations(),
                    **_probation(record, current, to_model),
                },
            ),
        ]

    obj, early = ctx.guarded(ref, decide)
    return _after_switch(ctx, ref, obj, early, seen.get("current"), to_model, record)


def _switch_config_map(
    ctx: ActionContext, ref: WorkloadRef, model_spec: ModelSpec, to_model: str, record: ActionRecord
) -> ActionResult:
    kind = ActionKind.SWITCH_MODEL
    assert model_spec.config_map_key is not None
    cm_name = model_spec.config_map_key.config_map_for(ref.name)
    key = model_spec.config_map_key.key
    try:
        cm = ctx.kube.get_config_map(ref.namespace, cm_name)
    except NotFound:
        return ctx.result(
            kind,
            ref,
            ExecutionOutcome.REFUSED,
            f"ConfigMap {ref.namespace}/{cm_name} not found; create it or fix "
            "spec.model.configMapKey.name",
            policy=record.policy,
            dry_run=record.dry_run,
        )
    current = (cm.get("data") or {}).get(key)
    if current is None:
        return ctx.result(
            kind,
            ref,
            ExecutionOutcome.REFUSED,
            f"ConfigMap {ref.namespace}/{cm_name} has no key {key!r}; add it or fix "
            "spec.model.configMapKey.key",
            policy=record.policy,
            dry_run=record.dry_run,
        )
    current = str(current)

    def decide(obj: dict[str, Any]) -> Patch | ActionResult:
        early = _no_switch(ref, current, to_model, record)
        if early is not None:
            return early
        existing = parse_downgraded(annotations_of(obj))
        if existing is not None and existing.episode == record.episode:
            return []  # record already written by an interrupted attempt: finish it
        source = {"configMapKey": {"name": cm_name, "key": key}}
        value = _downgraded_value(obj, current, to_model, source, record)
        return annotation_ops(
            obj,
            {
                rec.DOWNGRADED: canonical_json(value),
                **record.flat_annotations(),
                **_probation(record, current, to_model),
            },
        )

    obj, early = ctx.guarded(ref, decide)
    if early is not None:
        finished = parse_downgraded(annotations_of(obj))
        if early.outcome is ExecutionOutcome.UNCHANGED and finished and finished.to == to_model:
            # An interrupted switch changed the ConfigMap but did not restart the pods.
            ensure_template_model(ctx, ref, obj, to_model)
        return _after_switch(ctx, ref, obj, early, current, to_model, record)
    ctx.replace_config_map_value(ref.namespace, cm_name, key, current, to_model)
    obj = ensure_template_model(ctx, ref, obj, to_model)
    return _after_switch(ctx, ref, obj, None, current, to_model, record)


def ensure_template_model(
    ctx: ActionContext, ref: WorkloadRef, obj: dict[str, Any], model: str
) -> dict[str, Any]:
    """Stamp the pod template with the model so pods restart and read the ConfigMap."""
    template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (template_meta.get("annotations") or {}).get(rec.MODEL_TEMPLATE_ANNOTATION) == model:
        return obj
    body = {
        "spec": {"template": {"metadata": {"annotations": {rec.MODEL_TEMPLATE_ANNOTATION: model}}}}
    }
    return ctx.kube.patch_workload(ref.kind, ref.namespace, ref.name, body, STRATEGIC_MERGE_PATCH)


def _after_switch(
    ctx: ActionContext,
    ref: WorkloadRef,
    obj: dict[str, Any],
    early: ActionResult | None,
    current: str | None,
    to_model: str,
    record: ActionRecord,
) -> ActionResult:
    kind = ActionKind.SWITCH_MODEL
    because = why(record)
    if early is not None and early.outcome is not ExecutionOutcome.DRY_RUN:
        if early.outcome is ExecutionOutcome.REFUSED:
            return ctx.result(
                kind,
                ref,
                ExecutionOutcome.REFUSED,
                early.message,
                policy=record.policy,
                uid=uid_of(obj),
                dry_run=record.dry_run,
            )
        return early
    details = {"from": current, "to": to_model}
    if early is not None:
        text = f"would switch the model of {ref} from {current} to {to_model} (dry run): {because}"
        reason = ev.EventReason.WOULD_SWITCH_MODEL
    else:
        text = (
            f"switched the model of {ref} from {current} to {to_model}: {because}; {undo_hint(ref)}"
        )
        reason = ev.EventReason.MODEL_SWITCHED
    return ctx.changed(
        kind, ref, obj, text, reason, record.policy, details, dry_run=early is not None
    )


def _no_switch(
    ref: WorkloadRef, current: str, to_model: str, record: ActionRecord
) -> ActionResult | None:
    """Why a model switch writes nothing (already on the model, or a dry run), or None."""
    if current == to_model:
        return ActionResult(
            ActionKind.SWITCH_MODEL,
            ref,
            ExecutionOutcome.UNCHANGED,
            f"{ref} already runs model {to_model}",
            details={"model": current},
        )
    if record.dry_run:
        return ActionResult(ActionKind.SWITCH_MODEL, ref, ExecutionOutcome.DRY_RUN, "")
    return None


def _probation(record: ActionRecord, current: str, to_model: str) -> dict[str, str]:
    """The probation record written with the switch, when the policy verifies changes."""
    if record.baseline is None:
        return {}
    return probation_annotations(ProbationChange("switchModel", record, current, to_model))


def _downgraded_value(
    obj: Mapping[str, Any],
    current: str,
    to_model: str,
    source: Mapping[str, Any],
    record: ActionRecord,
) -> dict[str, Any]:
    """The agentmedic.io/downgraded record of a switch from ``current`` to ``to_model``:
    the model to restore stays the one agentmedic first found (a second step down keeps
    it)."""
    existing = parse_downgraded(annotations_of(obj))
    return {
        "model": existing.model if existing is not None else current,
        "to": to_model,
        "source": dict(source),
        **record.who_why_when(),
    }
