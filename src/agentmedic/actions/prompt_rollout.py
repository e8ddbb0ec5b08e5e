"""Roll a prompt candidate out, and settle a finished prompt-optimization Job once.

:func:`settle_prompt_job` reads a finished Job's result (the annotation
``agentmedic.io/prompt-optimization`` of the prompt's ConfigMap, written by
``agentmedic optimize-prompt`` or any optimizer keeping the contract, see
docs/prompt-optimization.md) and either rolls the candidate out with
:func:`roll_out_prompt` or reports why not; either way the workload's
``agentmedic.io/prompt-job`` names the Job afterwards, so it is handled once.

:func:`roll_out_prompt` is THE way a candidate becomes live, whoever calls it: it writes
the record first (``agentmedic.io/prompt`` on the workload: the candidate, the key holding
the text it replaced, a hash of the new text), then in one guarded ConfigMap patch keeps
the live text under ``<key>.before-v<N>`` and writes the candidate into the live key, then
stamps the pod template so pods restart. ``agentmedic restore`` puts the text back
(:mod:`agentmedic.actions.restore`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agentmedic.actions import events as ev
from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import Forbidden, Invalid, NotFound
from agentmedic.actions.jobs import job_finished
from agentmedic.actions.objects import Patch, annotation_ops, annotations_of, uid_of, undo_hint
from agentmedic.actions.probation import ProbationChange, probation_annotations
from agentmedic.actions.prompt_record import (
    PROMPT,
    PROMPT_JOB,
    PROMPT_TEMPLATE_ANNOTATION,
    backup_key,
    handled_job,
    parse_prompt,
    sha256,
)
from agentmedic.actions.record import (
    EPISODE,
    RULE,
    ActionRecord,
    PolicyRef,
    WorkloadRef,
    canonical_json,
    format_time,
    json_pointer,
    parse_baseline,
)
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.api.prompt import (
    RESULT_ANNOTATION,
    OptimizationStatus,
    PromptOptimizationResult,
    PromptSpec,
)
from agentmedic.kube import JSON_PATCH, STRATEGIC_MERGE_PATCH

__all__ = ["job_result", "roll_out_prompt", "settle_prompt_job"]

log = logging.getLogger(__name__)

KIND = ActionKind.PROMPT_OPTIMIZATION
PROMPT_ROLLED_OUT = ev.EventReason.PROMPT_ROLLED_OUT
PROMPT_JOB_NOT_ROLLED_OUT = ev.EventReason.PROMPT_JOB_NOT_ROLLED_OUT


def roll_out_prompt(
    ctx: ActionContext,
    ref: WorkloadRef,
    prompt: PromptSpec,
    candidate_key: str,
    record: ActionRecord,
    *,
    job: str = "",
) -> ActionResult:
    """Make the text of ``candidate_key`` the agent's live prompt, undoably.

    Idempotent: a candidate already live (same key, same text) is UNCHANGED; an
    interrupted rollout (record written, ConfigMap not yet) is finished. After several
    rollouts the record keeps the key holding the FIRST text replaced, so restore returns
    to the prompt agentmedic found. Refused (nothing written) when the ConfigMap, the live
    key or the candidate key is missing, or the live prompt changed while being replaced.
    """
    try:
        return _roll_out(ctx, ref, prompt, candidate_key, record, job)
    except (NotFound, Invalid, Forbidden) as exc:
        return ctx.failed(KIND, ref, exc, record.policy, record.dry_run)


def _roll_out(
    ctx: ActionContext,
    ref: WorkloadRef,
    prompt: PromptSpec,
    candidate_key: str,
    record: ActionRecord,
    job: str,
) -> ActionResult:
    cm_name = prompt.config_map_key.config_map_for(ref.name)
    key = prompt.config_map_key.key
    try:
        data = dict(ctx.kube.get_config_map(ref.namespace, cm_name).get("data") or {})
    except NotFound:
        data = {}
    live, candidate = data.get(key), data.get(candidate_key)
    if live is None or candidate is None:
        missing = key if live is None else candidate_key
        return _refuse(
            ctx,
            ref,
            record,
            f"ConfigMap {ref.namespace}/{cm_name} has no key {missing!r}; "
            "the prompt was not rolled out (check spec.prompt.configMapKey and the Job's result)",
        )
    details = {"configMap": cm_name, "key": key, "version": candidate_key, "job": job}
    if record.dry_run:
        text = f"would roll out prompt {candidate_key} to {key} of {ref}"
        reason = ev.EventReason.WOULD_ROLL_OUT_PROMPT
        return ctx.changed(KIND, ref, {}, text, reason, record.policy, details, dry_run=True)
    seen: dict[str, str] = {}

    def decide(obj: dict[str, Any]) -> Patch | ActionResult:
        existing = parse_prompt(annotations_of(obj))
        if existing is not None and existing.version == candidate_key:
            seen["previous"] = existing.previous
            return []  # written by an interrupted attempt: finish it
        previous = existing.previous if existing else backup_key(key, candidate_key)
        seen["previous"] = previous
        value = {
            "configMapKey": {"name": cm_name, "key": key},
            "version": candidate_key,
            "previous": previous,
            "sha256": sha256(candidate),
            "job": job,
            **record.who_why_when(),
        }
        ours = {PROMPT: canonical_json(value), **record.flat_annotations()}
        if record.baseline is not None:  # spec.verify: the new prompt goes on probation
            ours.update(
                probation_annotations(ProbationChange("prompt", record, previous, candidate_key))
            )
        return annotation_ops(obj, ours)

    obj, _ = ctx.guarded(ref, decide)
    previous = seen["previous"]
    if live != candidate:
        early = _write_live(ctx, ref, cm_name, key, live, candidate, previous, data, record)
        if early is not None:
            return early
    obj = _stamp(ctx, ref, obj, candidate_key, job, "Succeeded", f"rolled out {candidate_key}")
    details["previous"] = previous
    text = (
        f"rolled out prompt {candidate_key} as {key} of ConfigMap {cm_name} for {ref} "
        f"(the text it replaced is kept in {previous}): rule {record.rule}: {record.reason}; "
        f"{undo_hint(ref)}"
    )
    return ctx.changed(
        KIND, ref, obj, text, PROMPT_ROLLED_OUT, record.policy, details, dry_run=False
    )


def _write_live(
    ctx: ActionContext,
    ref: WorkloadRef,
    cm_name: str,
    key: str,
    live: str,
    candidate: str,
    previous: str,
    data: Mapping[str, Any],
    record: ActionRecord,
) -> ActionResult | None:
    """Keep the live text under ``previous`` (unless kept already) and write the candidate
    into the live key, guarded by a test of the live text; None when done."""
    ops: Patch = [{"op": "test", "path": json_pointer("data", key), "value": live}]
    if previous not in data:
        ops.append({"op": "add", "path": json_pointer("data", previous), "value": live})
    ops.append({"op": "replace", "path": json_pointer("data", key), "value": candidate})
    try:
        ctx.kube.patch_config_map(ref.namespace, cm_name, ops, JSON_PATCH)
    except Invalid:
        now = (ctx.kube.get_config_map(ref.namespace, cm_name).get("data") or {}).get(key)
        if now == candidate:
            return None
        return _refuse(
            ctx,
            ref,
            record,
            f"the prompt in {key} of ConfigMap {ref.namespace}/{cm_name} "
            "changed while agentmedic rolled a candidate out; nothing was replaced",
        )
    return None


def _stamp(
    ctx: ActionContext,
    ref: WorkloadRef,
    obj: dict[str, Any],
    version: str,
    job: str,
    status: str,
    reason: str,
) -> dict[str, Any]:
    """The pod template gets the live version (pods restart) and the workload the Job
    handled, in one patch."""
    handled = {"job": job, "status": status, "reason": reason[:300], "at": format_time(ctx.now())}
    body = {
        "metadata": {"annotations": {PROMPT_JOB: canonical_json(handled)}},
        "spec": {"template": {"metadata": {"annotations": {PROMPT_TEMPLATE_ANNOTATION: version}}}},
    }
    return ctx.kube.patch_workload(ref.kind, ref.namespace, ref.name, body, STRATEGIC_MERGE_PATCH)


def _refuse(
    ctx: ActionContext, ref: WorkloadRef, record: ActionRecord, message: str
) -> ActionResult:
    return ctx.result(
        KIND, ref, ExecutionOutcome.REFUSED, message, policy=record.policy, dry_run=record.dry_run
    )


# --------------------------------------------------------------------------- a finished Job


def job_result(
    ctx: ActionContext, ref: WorkloadRef, prompt: PromptSpec | None, job: str
) -> PromptOptimizationResult | None:
    """The result ``job`` wrote to the prompt's ConfigMap, or None (none, another Job's,
    unreadable, or no spec.prompt to find it)."""
    if prompt is None:
        return None
    cm_name = prompt.config_map_key.config_map_for(ref.name)
    try:
        cm = ctx.kube.get_config_map(ref.namespace, cm_name)
    except NotFound:
        return None
    raw = annotations_of(cm).get(RESULT_ANNOTATION)
    if not raw:
        return None
    try:
        result = PromptOptimizationResult.model_validate_json(raw)
    except ValueError:
        log.warning("ConfigMap %s/%s: unreadable %s", ref.namespace, cm_name, RESULT_ANNOTATION)
        return None
    return result if result.job == job else None


def settle_prompt_job(
    ctx: ActionContext,
    ref: WorkloadRef,
    policy: PolicyRef,
    prompt: PromptSpec | None,
    job: Mapping[str, Any],
    *,
    dry_run: bool = False,
) -> ActionResult | None:
    """Act on a finished Job once: roll a Succeeded candidate out, or report why not.
    None when there is nothing to do (running, or handled before)."""
    meta = job.get("metadata") or {}
    name = str(meta.get("name", ""))
    if not job_finished(job):
        return None
    obj = ctx.kube.get_workload(ref.kind, ref.namespace, ref.name)
    if handled_job(annotations_of(obj)) == name:
        return None
    annotations = meta.get("annotations") or {}
    result = job_result(ctx, ref, prompt, name)
    complete = _condition(job, "Complete")
    record = ActionRecord(
        policy=policy,
        rule=str(annotations.get(RULE, "")),
        episode=str(annotations.get(EPISODE, "")),
        reason=f"prompt-optimization Job {name} succeeded"
        + (f": {result.reason}" if result is not None and result.reason else ""),
        at=ctx.now(),
        dry_run=dry_run,
        baseline=parse_baseline(annotations),
    )
    if complete and result is not None and result.status is OptimizationStatus.SUCCEEDED:
        assert prompt is not None  # a result is read only through spec.prompt
        if result.candidate_key:
            return roll_out_prompt(ctx, ref, prompt, result.candidate_key, record, job=name)
    why = _why_not(name, job, result, prompt)
    if dry_run:
        return ctx.result(KIND, ref, ExecutionOutcome.DRY_RUN, f"would report: {why}", policy=None)
    status = result.status.value if result is not None else "Failed"
    if prompt is None and complete:
        # The policy leaves rolling out to the Job (an own optimizer): done, not failed.
        status, outcome = "Completed", ExecutionOutcome.UNCHANGED
    elif status == "Succeeded":
        outcome = ExecutionOutcome.REFUSED  # a result, but no completed Job to trust it
    else:
        outcome = ExecutionOutcome.FAILED
    obj = _stamp_handled(ctx, ref, obj, name, status, why, record)
    return ctx.result(
        KIND,
        ref,
        outcome,
        why,
        policy=policy,
        reason=PROMPT_JOB_NOT_ROLLED_OUT,
        uid=uid_of(obj),
        details={"job": name, "status": status},
    )


def _why_not(
    name: str,
    job: Mapping[str, Any],
    result: PromptOptimizationResult | None,
    prompt: PromptSpec | None,
) -> str:
    if result is not None and result.status is not OptimizationStatus.SUCCEEDED:
        return (
            f"prompt-optimization Job {name}: {result.status.value}: {result.reason}; the "
            "prompt is unchanged and the Job is not started again in this episode"
        )
    if prompt is None:
        return (
            f"prompt-optimization Job {name} finished; the policy sets no spec.prompt, so "
            "agentmedic rolls nothing out (set spec.prompt.configMapKey to have it do so)"
        )
    if not _condition(job, "Complete"):
        conditions: list[Mapping[str, Any]] = (job.get("status") or {}).get("conditions") or []
        failed = next((c for c in conditions if c.get("type") == "Failed"), {})
        detail = str(failed.get("reason") or "no reason")
        if failed.get("message"):
            detail += f": {str(failed['message'])[:120]}"
        return (
            f"prompt-optimization Job {name} failed ({detail}) "
            "without a result; the prompt is unchanged (kubectl logs job/" + name + ")"
        )
    return (
        f"prompt-optimization Job {name} completed without a Succeeded result with a "
        "candidateKey in the ConfigMap's agentmedic.io/prompt-optimization; the prompt is "
        "unchanged"
    )


def _condition(job: Mapping[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _stamp_handled(
    ctx: ActionContext,
    ref: WorkloadRef,
    obj: dict[str, Any],
    job: str,
    status: str,
    why: str,
    record: ActionRecord,
) -> dict[str, Any]:
    """Name the Job handled, not rolled out, with the episode and rule that started it: the
    engine tells the rule's channels once from this record (a restart in between included)."""
    handled = {
        "job": job,
        "status": status,
        "reason": why[:300],
        "at": format_time(ctx.now()),
        "rolledOut": False,
        "episode": record.episode,
        "rule": record.rule,
    }
    body = {"metadata": {"annotations": {PROMPT_JOB: canonical_json(handled)}}}
    return ctx.kube.patch_workload(ref.kind, ref.namespace, ref.name, body, STRATEGIC_MERGE_PATCH)
