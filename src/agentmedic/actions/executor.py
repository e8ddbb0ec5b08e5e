"""The action executor: scale to zero, switch model, prompt-optimization Job, restore.

Every change follows the same discipline:

1. read the object, and from its ``agentmedic.io/*`` record decide whether there is
   anything to do (the same episode never acts twice);
2. write the change and the record in ONE patch, guarded against concurrent edits: a
   JSON-patch whose ``test`` operations check exactly the values being replaced (the
   replica count, the env entry at its index), so another controller's or a person's edit
   in between makes the patch fail (422) instead of being overwritten; the executor then
   re-reads and decides again, a bounded number of times;
3. write an Event on the workload and on the policy.

Objects other than the workload (a KEDA ScaledObject, a ConfigMap) are changed AFTER the
record that allows undoing them is on the workload, and restored BEFORE the record is
cleared, so that a crash at any point leaves a record that restore can finish.

HPA. A workload scaled to zero is left alone by a HorizontalPodAutoscaler whose
``minReplicas`` is not 0: the HPA controller reports ``ScalingActive=False`` with reason
``ScalingDisabled`` ("scaling is disabled since the replica count of the target is zero")
and does not rescale (kubernetes/kubernetes, pkg/controller/podautoscaler/horizontal.go,
``reconcileAutoscaler``: ``if scale.Spec.Replicas == 0 && minReplicas != 0 { ... rescale =
false }``, introduced by PR #29212 "HPA: ignore scale targets whose replica count is 0";
documented as "Implicit maintenance-mode deactivation" in the HPA task page). Restoring the
replica count re-activates the HPA. An HPA with ``minReplicas: 0`` (the HPAScaleToZero
feature) does NOT skip a zero target and may scale the agent back up; the executor says so
in a Warning and in the result rather than fight it.

KEDA. When a ScaledObject targets the workload, the executor BOTH pauses it with
``autoscaling.keda.sh/paused-replicas: "0"`` (KEDA's documented pause: it scales the target
to that count and stops autoscaling until the annotation is removed) AND scales the
workload to zero itself. Pausing alone leaves the agent running until KEDA reconciles (or
forever if KEDA is down); scaling alone is undone as soon as a trigger activates. The
ScaledObject's previous ``paused-replicas`` value is recorded, and restore puts it back
(removing the annotation when there was none).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agentmedic.actions import events as ev
from agentmedic.actions import jobs as jobs_mod
from agentmedic.actions import record as rec
from agentmedic.actions.errors import (
    ActionError,
    Conflict,
    CorruptRecordError,
    Forbidden,
    Invalid,
    NotFound,
)
from agentmedic.actions.record import (
    ActionRecord,
    PolicyRef,
    WorkloadRef,
    canonical_json,
    json_pointer,
    parse_disabled,
    parse_downgraded,
)
from agentmedic.actions.result import ActionKind, ActionResult, Outcome
from agentmedic.actions.workloads import (
    WorkloadInfo,
    config_map_value,
    find_env,
    list_workloads,
    read_secret_value,
    template_env_value,
)
from agentmedic.api.types import LabelSelector, ModelSpec, PromptOptimizationAction
from agentmedic.kube import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, Kube

__all__ = ["KEDA_PAUSED_REPLICAS", "ActionExecutor", "RestorePlan", "restore_requested"]

log = logging.getLogger(__name__)

KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"

Patch = list[dict[str, Any]]


def _no_switch(
    ref: WorkloadRef, current: str, to_model: str, record: ActionRecord
) -> ActionResult | None:
    """Why a model switch writes nothing (already on the model, or a dry run), or None."""
    if current == to_model:
        return ActionResult(
            ActionKind.SWITCH_MODEL,
            ref,
            Outcome.UNCHANGED,
            f"{ref} already runs model {to_model}",
            details={"model": current},
        )
    if record.dry_run:
        return ActionResult(ActionKind.SWITCH_MODEL, ref, Outcome.DRY_RUN, "")
    return None


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
    existing = parse_downgraded(_annotations(obj))
    return {
        "model": existing.model if existing is not None else current,
        "to": to_model,
        "source": dict(source),
        **record.who_why_when(),
    }


def restore_requested(workload: WorkloadInfo | Mapping[str, Any]) -> bool:
    """True when a person asked for a restore with ``agentmedic.io/restore: "true"``.

    Accepts a :class:`WorkloadInfo` or a raw object dict.
    """
    if isinstance(workload, WorkloadInfo):
        annotations: Mapping[str, str] = workload.annotations
    else:
        annotations = (workload.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(rec.RESTORE_REQUEST, "")).strip().lower() == "true"


def read_agent_state(
    workload: WorkloadInfo | Mapping[str, str], policy_key: str
) -> dict[str, Any] | None:
    """The engine state the operator stored for ``policy_key`` on an agent, or None.

    Accepts a :class:`WorkloadInfo` or its annotations. An unreadable value (hand-edited)
    reads as None: the engine starts that agent afresh rather than crash.
    """
    annotations = workload.annotations if isinstance(workload, WorkloadInfo) else workload
    raw = annotations.get(rec.state_key(policy_key))
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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
        parts.extend(self.notes)
        return "; ".join(parts) if parts else "nothing"


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    # The API server defaults spec.replicas to 1; an object without it means exactly that.
    return int(value) if isinstance(value, int) else 1


def annotation_ops(
    obj: Mapping[str, Any], set_: Mapping[str, str], remove: tuple[str, ...] = ()
) -> Patch:
    """JSON-patch operations setting and removing annotations, touching no other key.

    Without any annotations yet, the whole map has to be added; that would overwrite
    annotations added concurrently, so the patch then also tests the resourceVersion.
    """
    existing = (obj.get("metadata") or {}).get("annotations")
    if existing is None:
        if not set_:
            return []
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": _rv(obj)},
            {"op": "add", "path": "/metadata/annotations", "value": dict(set_)},
        ]
    ops: Patch = [
        {"op": "add", "path": json_pointer("metadata", "annotations", k), "value": v}
        for k, v in set_.items()
    ]
    ops += [
        {"op": "remove", "path": json_pointer("metadata", "annotations", k)}
        for k in remove
        if k in existing and k not in set_
    ]
    return ops


@dataclass
class ActionExecutor:
    """Applies actions to agents' workloads through a :class:`Kube` client.

    Synchronous; the operator calls it through ``asyncio.to_thread``. ``now`` is the clock
    for restore notes and Events; ``conflict_attempts`` bounds re-read-and-retry after a
    concurrent edit; ``max_restore_replicas`` is the most replicas a restore puts back (a
    record asking for more is refused as corrupt).
    """

    kube: Kube
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    conflict_attempts: int = 5
    max_restore_replicas: int = rec.MAX_REPLICAS

    # ------------------------------------------------------------------ events

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

    def _tell(
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

    def _result(
        self,
        action: ActionKind,
        ref: WorkloadRef,
        outcome: Outcome,
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
            if outcome is Outcome.REFUSED:
                message = f"would refuse: {message}"
            elif outcome in (Outcome.NOT_FOUND, Outcome.FAILED):
                message = f"would fail: {message}"
        if not reason:
            reason = {
                Outcome.REFUSED: ev.EventReason.REFUSED,
                Outcome.NOT_FOUND: ev.EventReason.WORKLOAD_NOT_FOUND,
                Outcome.FAILED: ev.EventReason.FAILED,
            }.get(outcome, "")
        if event and reason:
            warning = outcome in (Outcome.REFUSED, Outcome.NOT_FOUND, Outcome.FAILED)
            self._tell(
                ref,
                policy,
                reason,
                message,
                "Warning" if warning else "Normal",
                str(action),
                uid,
            )
        return ActionResult(action, ref, outcome, message, reason, dict(details or {}))

    def _failed(
        self,
        action: ActionKind,
        ref: WorkloadRef,
        exc: ActionError,
        policy: PolicyRef | None,
        dry_run: bool = False,
    ) -> ActionResult:
        outcome = Outcome.NOT_FOUND if isinstance(exc, NotFound) else Outcome.FAILED
        message = f"{action} on {ref} failed: {exc.message}"
        return self._result(action, ref, outcome, message, policy=policy, dry_run=dry_run)

    # ------------------------------------------------------------------ the guarded write

    def _guarded(
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
                if _rv(again) == _rv(obj):
                    raise
                log.info("%s changed while being patched (test failed); re-reading", ref)
        raise Conflict(
            f"{ref} kept changing while agentmedic tried to patch it "
            f"({self.conflict_attempts} attempts); will retry on the next cycle"
        )

    # ------------------------------------------------------------------ scale to zero

    def scale_to_zero(self, ref: WorkloadRef, record: ActionRecord) -> ActionResult:
        """Scale a Deployment/StatefulSet to 0, recording the previous count; pause KEDA.

        Idempotent: a workload already disabled by agentmedic is not written again (only
        an interrupted KEDA pause is completed). A workload already at 0 that agentmedic
        did not disable is left alone, with nothing recorded (there is nothing to restore),
        unless a KEDA ScaledObject targets it: KEDA would scale it up again, so it is paused
        and the record says 0.
        """
        kind = ActionKind.SCALE_TO_ZERO
        policy = record.policy
        try:
            return self._scale_to_zero(ref, record)
        except (NotFound, Invalid, Forbidden) as exc:
            return self._failed(kind, ref, exc, policy, record.dry_run)

    def _scale_to_zero(self, ref: WorkloadRef, record: ActionRecord) -> ActionResult:
        kind = ActionKind.SCALE_TO_ZERO
        policy = record.policy
        planned: dict[str, Any] = {}
        # Autoscalers are looked up only when the workload is not disabled yet, and once.
        found: dict[str, Any] = {}

        def autoscalers() -> tuple[dict[str, Any] | None, list[str], list[str]]:
            if not found:
                found["keda"] = self._find_scaled_object(ref)
                found["hpas"], found["warnings"] = self._find_hpas(ref)
            return found["keda"], found["hpas"], found["warnings"]

        def decide(obj: dict[str, Any]) -> Patch | ActionResult:
            annotations = _annotations(obj)
            existing = parse_disabled(annotations)
            if existing is not None:
                return ActionResult(
                    kind,
                    ref,
                    Outcome.UNCHANGED,
                    f"{ref} is already scaled to zero by agentmedic (episode {existing.episode}, "
                    f"rule {existing.rule}); {existing.replicas} replica(s) recorded",
                    details={"previousReplicas": existing.replicas, "episode": existing.episode},
                )
            replicas = _replicas(obj)
            keda, hpas, _ = autoscalers()
            # KEDA may have scaled an idle agent to 0 and would scale it up on the next
            # trigger: it still needs pausing. Anything else at 0 needs nothing.
            if replicas == 0 and keda is None:
                return ActionResult(
                    kind,
                    ref,
                    Outcome.UNCHANGED,
                    f"{ref} already has 0 replicas (not set by agentmedic); nothing recorded",
                    details={"previousReplicas": 0},
                )
            planned["replicas"] = replicas
            if record.dry_run:
                return ActionResult(kind, ref, Outcome.DRY_RUN, "")
            keda_record = None
            if keda is not None:
                keda_record = {
                    "scaledObject": keda["metadata"]["name"],
                    "pausedReplicas": _annotations(keda).get(KEDA_PAUSED_REPLICAS),
                }
            value = {
                "replicas": replicas,
                "keda": keda_record,
                "hpa": hpas,
                **record.who_why_when(),
            }
            return [
                {"op": "test", "path": "/spec/replicas", "value": replicas},
                {"op": "replace", "path": "/spec/replicas", "value": 0},
                *annotation_ops(
                    obj, {rec.DISABLED: canonical_json(value), **record.flat_annotations()}
                ),
            ]

        obj, early = self._guarded(ref, decide)
        if early is not None and early.outcome is Outcome.UNCHANGED:
            existing = parse_disabled(_annotations(obj))
            if existing is not None and existing.keda_scaled_object and not record.dry_run:
                self._ensure_keda_paused(ref, existing.keda_scaled_object)
            return early
        keda, hpas, hpa_warnings = autoscalers()
        extra = "".join(f"; {w}" for w in hpa_warnings)
        replicas = planned["replicas"]
        so_name = keda["metadata"]["name"] if keda is not None else None
        why = _why(record)
        undo = f"undo: agentmedic restore {ref.namespace}/{ref.name} --kind {ref.kind.lower()}"
        details: dict[str, Any] = {"previousReplicas": replicas, "hpa": hpas}
        if so_name:
            details["scaledObject"] = so_name
        if hpa_warnings:
            details["warnings"] = hpa_warnings
        if early is not None:  # dry run
            keda_text = f" and pause ScaledObject {so_name}" if so_name else ""
            return self._result(
                kind,
                ref,
                Outcome.DRY_RUN,
                f"would scale {ref} from {replicas} to 0 replicas{keda_text} (dry run): "
                f"{why}{extra}",
                policy=policy,
                reason=ev.EventReason.WOULD_SCALE_TO_ZERO,
                uid=_uid(obj),
                details=details,
            )
        if so_name:
            self._ensure_keda_paused(ref, so_name)
        keda_text = f", paused ScaledObject {so_name}" if so_name else ""
        return self._result(
            kind,
            ref,
            Outcome.APPLIED,
            f"scaled {ref} from {replicas} to 0 replicas{keda_text}: {why}; {undo}{extra}",
            policy=policy,
            reason=ev.EventReason.SCALED_TO_ZERO,
            uid=_uid(obj),
            details=details,
        )

    def _find_scaled_object(self, ref: WorkloadRef) -> dict[str, Any] | None:
        """The KEDA ScaledObject targeting the workload; None without KEDA or without one."""
        try:
            items = self.kube.list_scaled_objects(ref.namespace)
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

    def _find_hpas(self, ref: WorkloadRef) -> tuple[list[str], list[str]]:
        """Names of HPAs targeting the workload, and warnings for those that would undo 0."""
        try:
            items = self.kube.list_hpas(ref.namespace)
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

    def _ensure_keda_paused(self, ref: WorkloadRef, scaled_object: str) -> None:
        """Pause the ScaledObject unless it already is (a repeated apply writes nothing)."""
        try:
            so = self.kube.get_scaled_object(ref.namespace, scaled_object)
            if _annotations(so).get(KEDA_PAUSED_REPLICAS) == "0":
                return
            self.kube.patch_scaled_object(
                ref.namespace,
                scaled_object,
                {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: "0"}}},
            )
        except NotFound:
            log.warning("ScaledObject %s/%s vanished; not paused", ref.namespace, scaled_object)

    # ------------------------------------------------------------------ switch model

    def current_model(
        self, workload: WorkloadInfo | Mapping[str, Any], model_spec: ModelSpec
    ) -> str | None:
        """The model an agent runs: its env var's literal value, or the ConfigMap key's value.

        ``workload`` is a :class:`WorkloadInfo` (its ``model`` when filled, else re-read)
        or a raw object dict. None when the variable, the ConfigMap or the key is absent.
        """
        if model_spec.env is not None:
            if isinstance(workload, WorkloadInfo):
                if workload.model is not None:
                    return workload.model
                obj = self.kube.get_workload(workload.kind, workload.namespace, workload.name)
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
            return config_map_value(self.kube, namespace, ref.config_map_for(name), ref.key)
        return None

    def switch_model(
        self,
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
            obj = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
            existing = parse_downgraded(_annotations(obj))
            if existing is not None and existing.model == to_model:
                # Back to where agentmedic found it: that is a restore of the model, and
                # must clear the record rather than record "downgraded" to the original.
                return self.restore(
                    ref,
                    by=f"switchModel back to {to_model} ({record.rule})",
                    replicas=False,
                    dry_run=record.dry_run,
                )
            if model_spec.env is not None:
                return self._switch_env(ref, model_spec, to_model, record)
            if model_spec.config_map_key is not None:
                return self._switch_config_map(ref, model_spec, to_model, record)
        except (NotFound, Invalid, Forbidden) as exc:
            return self._failed(kind, ref, exc, record.policy, record.dry_run)
        return self._result(
            kind,
            ref,
            Outcome.REFUSED,
            f"cannot switch the model of {ref}: the policy sets neither spec.model.env nor "
            "spec.model.configMapKey; set one of them",
            policy=record.policy,
            dry_run=record.dry_run,
        )

    def _switch_env(
        self, ref: WorkloadRef, model_spec: ModelSpec, to_model: str, record: ActionRecord
    ) -> ActionResult:
        kind = ActionKind.SWITCH_MODEL
        assert model_spec.env is not None
        container, variable = model_spec.env.container, model_spec.env.name
        seen: dict[str, Any] = {}

        def decide(obj: dict[str, Any]) -> Patch | ActionResult:
            ci, ei, entry = find_env(obj, container, variable)
            if ci < 0:
                names = [
                    c.get("name") for c in obj["spec"]["template"]["spec"].get("containers") or []
                ]
                return _refusal(
                    kind,
                    ref,
                    f"{ref} has no container {container!r} (containers: "
                    f"{', '.join(map(str, names))}); fix spec.model.env.container",
                )
            if ei < 0 or entry is None or "value" not in entry:
                how = "sets it with valueFrom" if entry is not None else "does not set it"
                return _refusal(
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
                    obj, {rec.DOWNGRADED: canonical_json(value), **record.flat_annotations()}
                ),
            ]

        obj, early = self._guarded(ref, decide)
        return self._after_switch(ref, obj, early, seen.get("current"), to_model, record)

    def _switch_config_map(
        self, ref: WorkloadRef, model_spec: ModelSpec, to_model: str, record: ActionRecord
    ) -> ActionResult:
        kind = ActionKind.SWITCH_MODEL
        assert model_spec.config_map_key is not None
        cm_name = model_spec.config_map_key.config_map_for(ref.name)
        key = model_spec.config_map_key.key
        try:
            cm = self.kube.get_config_map(ref.namespace, cm_name)
        except NotFound:
            return self._result(
                kind,
                ref,
                Outcome.REFUSED,
                f"ConfigMap {ref.namespace}/{cm_name} not found; create it or fix "
                "spec.model.configMapKey.name",
                policy=record.policy,
                dry_run=record.dry_run,
            )
        current = (cm.get("data") or {}).get(key)
        if current is None:
            return self._result(
                kind,
                ref,
                Outcome.REFUSED,
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
            existing = parse_downgraded(_annotations(obj))
            if existing is not None and existing.episode == record.episode:
                return []  # record already written by an interrupted attempt: finish it
            source = {"configMapKey": {"name": cm_name, "key": key}}
            value = _downgraded_value(obj, current, to_model, source, record)
            return annotation_ops(
                obj, {rec.DOWNGRADED: canonical_json(value), **record.flat_annotations()}
            )

        obj, early = self._guarded(ref, decide)
        if early is not None:
            finished = parse_downgraded(_annotations(obj))
            if early.outcome is Outcome.UNCHANGED and finished and finished.to == to_model:
                # An interrupted switch changed the ConfigMap but did not restart the pods.
                self._ensure_template_model(ref, obj, to_model)
            return self._after_switch(ref, obj, early, current, to_model, record)
        self._replace_config_map_value(ref.namespace, cm_name, key, current, to_model)
        obj = self._ensure_template_model(ref, obj, to_model)
        return self._after_switch(ref, obj, None, current, to_model, record)

    def _replace_config_map_value(
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

    def _ensure_template_model(
        self, ref: WorkloadRef, obj: dict[str, Any], model: str
    ) -> dict[str, Any]:
        """Stamp the pod template with the model so pods restart and read the ConfigMap."""
        template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if (template_meta.get("annotations") or {}).get(rec.MODEL_TEMPLATE_ANNOTATION) == model:
            return obj
        body = {
            "spec": {
                "template": {"metadata": {"annotations": {rec.MODEL_TEMPLATE_ANNOTATION: model}}}
            }
        }
        return self.kube.patch_workload(
            ref.kind, ref.namespace, ref.name, body, STRATEGIC_MERGE_PATCH
        )

    def _after_switch(
        self,
        ref: WorkloadRef,
        obj: dict[str, Any],
        early: ActionResult | None,
        current: str | None,
        to_model: str,
        record: ActionRecord,
    ) -> ActionResult:
        kind = ActionKind.SWITCH_MODEL
        why = _why(record)
        if early is not None and early.outcome is not Outcome.DRY_RUN:
            if early.outcome is Outcome.REFUSED:
                return self._result(
                    kind,
                    ref,
                    Outcome.REFUSED,
                    early.message,
                    policy=record.policy,
                    uid=_uid(obj),
                    dry_run=record.dry_run,
                )
            return early
        details = {"from": current, "to": to_model}
        if early is not None:
            return self._result(
                kind,
                ref,
                Outcome.DRY_RUN,
                f"would switch the model of {ref} from {current} to {to_model} (dry run): {why}",
                policy=record.policy,
                reason=ev.EventReason.WOULD_SWITCH_MODEL,
                uid=_uid(obj),
                details=details,
            )
        undo = f"undo: agentmedic restore {ref.namespace}/{ref.name} --kind {ref.kind.lower()}"
        return self._result(
            kind,
            ref,
            Outcome.APPLIED,
            f"switched the model of {ref} from {current} to {to_model}: {why}; {undo}",
            policy=record.policy,
            reason=ev.EventReason.MODEL_SWITCHED,
            uid=_uid(obj),
            details=details,
        )

    # ------------------------------------------------------------------ prompt optimization

    def start_prompt_job(
        self,
        ref: WorkloadRef,
        policy: PolicyRef,
        action: PromptOptimizationAction,
        record: ActionRecord,
        evidence: Mapping[str, Any],
    ) -> ActionResult:
        """Create the prompt-optimization Job for this episode, once; one running per agent.

        The Job comes from ``action.fromCronJob`` (like ``kubectl create job --from=cronjob/``)
        or ``action.jobTemplate``; see :mod:`agentmedic.actions.jobs` for its shape. A Job of
        this episode that already exists (found by name, or AlreadyExists on create) means
        done; another unfinished Job of the same agent means refused.
        """
        kind = ActionKind.PROMPT_OPTIMIZATION
        try:
            obj = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
            labels = (obj.get("metadata") or {}).get("labels") or {}
            agent = str(labels.get(rec.AGENT_LABEL) or ref.name)
            name = jobs_mod.job_name(agent, record.episode)
            details: dict[str, Any] = {"job": name, "agent": agent}
            selector = f"{rec.AGENT_LABEL}={jobs_mod.label_value(agent)}"
            existing = self.kube.list_jobs(ref.namespace, selector)
            if any(j.get("metadata", {}).get("name") == name for j in existing):
                return ActionResult(
                    kind,
                    ref,
                    Outcome.UNCHANGED,
                    f"Job {name} for this episode already exists",
                    details=details,
                )
            running = sorted(
                str(j["metadata"]["name"]) for j in existing if not jobs_mod.job_finished(j)
            )
            if running:
                return self._result(
                    kind,
                    ref,
                    Outcome.REFUSED,
                    f"prompt-optimization Job {running[0]} for agent {agent} is still "
                    "running; at most one runs per agent, the next starts after it finishes",
                    policy=policy,
                    uid=_uid(obj),
                    details={**details, "running": running},
                    dry_run=record.dry_run,
                )
            template, source = self._job_template(ref, action)
            if template is None:
                return self._result(
                    kind,
                    ref,
                    Outcome.REFUSED,
                    source,
                    policy=policy,
                    uid=_uid(obj),
                    dry_run=record.dry_run,
                )
            job = jobs_mod.build_job(
                template=template,
                name=name,
                namespace=ref.namespace,
                policy=policy,
                agent=agent,
                rule=record.rule,
                episode=record.episode,
                evidence=evidence,
                ttl_seconds_after_finished=action.ttl_seconds_after_finished,
                from_cron_job=action.from_cron_job,
            )
            if record.dry_run:
                return self._result(
                    kind,
                    ref,
                    Outcome.DRY_RUN,
                    f"would start Job {name} from {source} for agent {agent} (dry run): "
                    f"{_why(record)}",
                    policy=policy,
                    reason=ev.EventReason.WOULD_START_PROMPT_JOB,
                    uid=_uid(obj),
                    details=details,
                )
            try:
                self.kube.create_job(ref.namespace, job)
            except Conflict as exc:
                if not exc.already_exists:
                    raise
                return ActionResult(
                    kind,
                    ref,
                    Outcome.UNCHANGED,
                    f"Job {name} for this episode already exists",
                    details=details,
                )
            return self._result(
                kind,
                ref,
                Outcome.APPLIED,
                f"started prompt-optimization Job {name} from {source} for agent {agent}: "
                f"{_why(record)}",
                policy=policy,
                reason=ev.EventReason.PROMPT_JOB_STARTED,
                uid=_uid(obj),
                details=details,
            )
        except (NotFound, Invalid, Forbidden) as exc:
            return self._failed(kind, ref, exc, policy, record.dry_run)

    def _job_template(
        self, ref: WorkloadRef, action: PromptOptimizationAction
    ) -> tuple[dict[str, Any] | None, str]:
        """``(template, "cronjob/X" or "the inline jobTemplate")``, or ``(None, why not)``."""
        if action.from_cron_job:
            try:
                cron = self.kube.get_cron_job(ref.namespace, action.from_cron_job)
            except NotFound:
                return None, (
                    f"CronJob {ref.namespace}/{action.from_cron_job} not found; create it or "
                    "fix promptOptimization.fromCronJob"
                )
            template = (cron.get("spec") or {}).get("jobTemplate")
            if not isinstance(template, dict):
                return None, f"CronJob {ref.namespace}/{action.from_cron_job} has no jobTemplate"
            return template, f"cronjob/{action.from_cron_job}"
        if action.job_template:
            return dict(action.job_template), "the inline jobTemplate"
        return None, (
            "promptOptimization sets neither fromCronJob nor jobTemplate; set one of them"
        )

    # ------------------------------------------------------------------ restore

    def plan_restore(self, ref: WorkloadRef) -> RestorePlan:
        """What :meth:`restore` would put back, from the record and the live object.

        Raises :class:`CorruptRecordError` naming the annotation when the record cannot be trusted.
        """
        obj = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
        return self._plan(ref, obj, replicas=True, model=True)

    def _plan(
        self, ref: WorkloadRef, obj: Mapping[str, Any], *, replicas: bool, model: bool
    ) -> RestorePlan:
        annotations = _annotations(obj)
        # The strict readers: a restore writes these values back, so they must be plausible.
        disabled = (
            rec.read_disabled(annotations, max_replicas=self.max_restore_replicas)
            if replicas
            else None
        )
        downgraded = rec.read_downgraded(annotations) if model else None
        notes: list[str] = []
        put_replicas: int | None = None
        put_model: str | None = None
        policy = policy_uid = ""
        if disabled is not None:
            policy = disabled.policy
            policy_uid = str(disabled.raw.get("policyUid", ""))
            now = _replicas(obj)
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
                now_model = config_map_value(self.kube, ref.namespace, cm[0], cm[1])
            if now_model == downgraded.to:
                put_model = downgraded.model
            else:
                notes.append(
                    f"model left at {now_model} (changed since agentmedic set {downgraded.to}; "
                    f"recorded {downgraded.model})"
                )
        return RestorePlan(
            ref=ref,
            replicas=put_replicas,
            model=put_model,
            keda_scaled_object=disabled.keda_scaled_object if disabled else None,
            keda_paused_replicas=disabled.keda_previous_paused_replicas if disabled else None,
            policy=policy,
            policy_uid=policy_uid,
            notes=tuple(notes),
            recorded=disabled is not None or downgraded is not None,
            requested=restore_requested(obj),
        )

    def restore(
        self,
        ref: WorkloadRef,
        by: str,
        *,
        replicas: bool = True,
        model: bool = True,
        dry_run: bool = False,
    ) -> ActionResult:
        """Put back what agentmedic recorded on the workload and clear the record.

        ``by`` says who asked ("auto-recovery", "annotation", "cli:alice") and lands in the
        ``agentmedic.io/last-restore`` note and the Events. ``replicas``/``model`` restrict
        the restore to one kind of change (auto recovery may step the model back alone).
        A value changed since by someone else is left as it is, and the note says so.
        The ``agentmedic.io/restore`` request annotation is removed in any case; without a
        record that is the only write.
        """
        kind = ActionKind.RESTORE
        try:
            return self._restore(ref, by, replicas=replicas, model=model, dry_run=dry_run)
        except CorruptRecordError as exc:
            # Refused, not failed: nothing was written and the record stays for a person.
            message = f"restore of {ref} refused: {exc.message}"
            return self._result(kind, ref, Outcome.REFUSED, message, policy=None, dry_run=dry_run)
        except (NotFound, Invalid, Forbidden) as exc:
            return self._failed(kind, ref, exc, None, dry_run)

    def _restore(
        self, ref: WorkloadRef, by: str, *, replicas: bool, model: bool, dry_run: bool
    ) -> ActionResult:
        kind = ActionKind.RESTORE
        obj = self.kube.get_workload(ref.kind, ref.namespace, ref.name)
        plan = self._plan(ref, obj, replicas=replicas, model=model)
        policy = _policy_from(plan.policy, plan.policy_uid)
        if not plan.recorded:
            if plan.requested and not dry_run:
                self.kube.patch_workload(
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    {"metadata": {"annotations": {rec.RESTORE_REQUEST: None}}},
                    MERGE_PATCH,
                )
            return ActionResult(
                kind,
                ref,
                Outcome.UNCHANGED,
                f"nothing to restore: {ref} carries no agentmedic record "
                f"({rec.DISABLED} / {rec.DOWNGRADED})",
            )
        details = _plan_details(plan)
        if dry_run:
            return self._result(
                kind,
                ref,
                Outcome.DRY_RUN,
                f"would restore {ref}: {plan.describe()} (dry run, asked by {by})",
                policy=policy,
                reason=ev.EventReason.WOULD_RESTORE,
                uid=_uid(obj),
                details=details,
            )

        # Side objects first, so a failure here leaves the record for the next attempt.
        if plan.keda_scaled_object is not None:
            previous = plan.keda_paused_replicas  # None removes the annotation
            try:
                self.kube.patch_scaled_object(
                    ref.namespace,
                    plan.keda_scaled_object,
                    {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: previous}}},
                )
            except NotFound:
                log.info("ScaledObject %s is gone; nothing to unpause", plan.keda_scaled_object)
        downgraded = parse_downgraded(_annotations(obj)) if model else None
        cm_restored = False
        if (
            plan.model is not None
            and downgraded is not None
            and downgraded.config_map_key is not None
        ):
            name, key = downgraded.config_map_key
            self._replace_config_map_value(ref.namespace, name, key, downgraded.to, plan.model)
            cm_restored = True

        note = f"{rec.format_time(self.now())} by {by}: {plan.describe()}"

        def decide(current: dict[str, Any]) -> Patch | ActionResult:
            annotations = _annotations(current)
            live = self._plan(ref, current, replicas=replicas, model=model)
            ops: Patch = []
            if live.replicas is not None:
                ops += [
                    {"op": "test", "path": "/spec/replicas", "value": 0},
                    {"op": "replace", "path": "/spec/replicas", "value": live.replicas},
                ]
            now_down = parse_downgraded(annotations) if model else None
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
            if cm_restored and plan.model is not None:
                ops += _template_annotation_ops(current, rec.MODEL_TEMPLATE_ANNOTATION, plan.model)
            remove: list[str] = [rec.RESTORE_REQUEST]
            if replicas:
                remove.append(rec.DISABLED)
            if model:
                remove.append(rec.DOWNGRADED)
            remaining = {rec.DISABLED, rec.DOWNGRADED} - set(remove)
            if not any(k in annotations for k in remaining):
                remove += list(rec.LAST_ACTION_KEYS)
            ops += annotation_ops(current, {rec.LAST_RESTORE: note}, tuple(remove))
            return ops

        obj, _ = self._guarded(ref, decide)
        message = f"restored {ref}: {plan.describe()} (asked by {by})"
        return self._result(
            kind,
            ref,
            Outcome.APPLIED,
            message,
            policy=policy,
            reason=ev.EventReason.RESTORED,
            uid=_uid(obj),
            details=details,
        )

    # ------------------------------------------------------------------ state and marks

    def write_agent_state(
        self,
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
            annotations = _annotations(self.kube.get_workload(ref.kind, ref.namespace, ref.name))
        if annotations.get(key) == value:
            return False
        self.kube.patch_workload(
            ref.kind,
            ref.namespace,
            ref.name,
            {"metadata": {"annotations": {key: value}}},
            MERGE_PATCH,
        )
        return True

    def mark_policy_deleted(
        self, ref: WorkloadRef, policy: PolicyRef, at: datetime | None = None
    ) -> None:
        """Note on a workload that the policy which changed it is gone (changes stay)."""
        stamp = rec.format_time(at or self.now())
        self.kube.patch_workload(
            ref.kind,
            ref.namespace,
            ref.name,
            {"metadata": {"annotations": {rec.POLICY_DELETED: f"{policy} at {stamp}"}}},
            MERGE_PATCH,
        )

    # ------------------------------------------------------------------ readers

    def list_workloads(
        self,
        namespace: str,
        label_selector: str | LabelSelector,
        model_spec: ModelSpec | None = None,
    ) -> list[WorkloadInfo]:
        """Agents' workloads selected server-side; see :func:`workloads.list_workloads`."""
        return list_workloads(self.kube, namespace, label_selector, model_spec)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """A Secret's value for notifications; never logged. See :func:`read_secret_value`."""
        return read_secret_value(self.kube, namespace, name, key)


# ---------------------------------------------------------------------- helpers


def _why(record: ActionRecord) -> str:
    text = f"rule {record.rule} of policy {record.policy}: {record.reason}"
    return f"{text} ({record.evidence})" if record.evidence else text


def _refusal(kind: ActionKind, ref: WorkloadRef, message: str) -> ActionResult:
    return ActionResult(kind, ref, Outcome.REFUSED, message)


def _policy_from(key: str, uid: str) -> PolicyRef | None:
    namespace, _, name = key.partition("/")
    if not namespace or not name:
        return None
    return PolicyRef(namespace=namespace, name=name, uid=uid)


def _plan_details(plan: RestorePlan) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if plan.replicas is not None:
        details["replicas"] = plan.replicas
    if plan.model is not None:
        details["model"] = plan.model
    if plan.keda_scaled_object is not None:
        details["scaledObject"] = plan.keda_scaled_object
    if plan.notes:
        details["notes"] = list(plan.notes)
    return details


def _template_annotation_ops(obj: Mapping[str, Any], key: str, value: str) -> Patch:
    template = (obj.get("spec") or {}).get("template") or {}
    meta = template.get("metadata")
    if meta is None:
        return [
            {"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {key: value}}}
        ]
    if meta.get("annotations") is None:
        return [{"op": "add", "path": "/spec/template/metadata/annotations", "value": {key: value}}]
    return [
        {
            "op": "add",
            "path": json_pointer("spec", "template", "metadata", "annotations", key),
            "value": value,
        }
    ]
