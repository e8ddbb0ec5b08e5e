"""Prompt optimization: start the Job that works on an agent's prompt, once per episode.

The Job comes from a CronJob's ``jobTemplate`` or the policy's inline one
(:mod:`agentmedic.actions.jobs` shapes it); it is named after the episode, so a repeat
finds it, and at most one runs per agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentmedic.actions import events as ev
from agentmedic.actions import jobs as jobs_mod
from agentmedic.actions import record as rec
from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import Conflict, Forbidden, Invalid, NotFound
from agentmedic.actions.objects import uid_of, why
from agentmedic.actions.record import ActionRecord, PolicyRef, WorkloadRef
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.api.prompt import PromptSpec
from agentmedic.api.types import PromptOptimizationAction

__all__ = ["start_prompt_job"]

KIND = ActionKind.PROMPT_OPTIMIZATION


def start_prompt_job(
    ctx: ActionContext,
    ref: WorkloadRef,
    policy: PolicyRef,
    action: PromptOptimizationAction,
    record: ActionRecord,
    evidence: Mapping[str, Any],
    prompt: PromptSpec | None = None,
) -> ActionResult:
    """Create the prompt-optimization Job for this episode, once; one running per agent.

    The Job comes from ``action.fromCronJob`` (like ``kubectl create job --from=cronjob/``)
    or ``action.jobTemplate``; see :mod:`agentmedic.actions.jobs` for its shape. A Job of
    this episode that already exists (found by name, or AlreadyExists on create) means
    done; another unfinished Job of the same agent means refused. ``prompt`` (the policy's
    ``spec.prompt``) tells the Job where the live prompt is; its outcome is read by
    :func:`agentmedic.actions.prompt_rollout.settle_prompt_job`.
    """
    try:
        obj = ctx.kube.get_workload(ref.kind, ref.namespace, ref.name)
        where = None
        if prompt is not None:
            where = (prompt.config_map_key.config_map_for(ref.name), prompt.config_map_key.key)
        return _start(ctx, ref, obj, policy, action, record, evidence, where)
    except (NotFound, Invalid, Forbidden) as exc:
        return ctx.failed(KIND, ref, exc, policy, record.dry_run)


def _start(
    ctx: ActionContext,
    ref: WorkloadRef,
    obj: dict[str, Any],
    policy: PolicyRef,
    action: PromptOptimizationAction,
    record: ActionRecord,
    evidence: Mapping[str, Any],
    prompt: tuple[str, str] | None,
) -> ActionResult:
    """The Job for ``obj``, the workload as read (see :func:`start_prompt_job`)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    agent = str(labels.get(rec.AGENT_LABEL) or ref.name)
    name = jobs_mod.job_name(agent, record.episode)
    details: dict[str, Any] = {"job": name, "agent": agent}
    early = _done_or_busy(ctx, ref, policy, record, obj, agent, details)
    if early is not None:
        return early
    template, source = _job_template(ctx, ref, action)
    if template is None:
        return ctx.result(
            KIND,
            ref,
            ExecutionOutcome.REFUSED,
            source,
            policy=policy,
            uid=uid_of(obj),
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
        prompt=prompt,
        baseline=record.baseline,
    )
    if record.dry_run:
        text = f"would start Job {name} from {source} for agent {agent} (dry run): {why(record)}"
        reason = ev.EventReason.WOULD_START_PROMPT_JOB
        return ctx.changed(KIND, ref, obj, text, reason, policy, details, dry_run=True)
    try:
        ctx.kube.create_job(ref.namespace, job)
    except Conflict as exc:
        if not exc.already_exists:
            raise
        return _already_exists(ref, name, details)
    text = f"started prompt-optimization Job {name} from {source} for agent {agent}: {why(record)}"
    return ctx.changed(
        KIND, ref, obj, text, ev.EventReason.PROMPT_JOB_STARTED, policy, details, dry_run=False
    )


def _done_or_busy(
    ctx: ActionContext,
    ref: WorkloadRef,
    policy: PolicyRef,
    record: ActionRecord,
    obj: Mapping[str, Any],
    agent: str,
    details: dict[str, Any],
) -> ActionResult | None:
    """Unchanged when this episode's Job exists, refused while another Job of the agent
    runs; None when a Job may start."""
    selector = f"{rec.AGENT_LABEL}={jobs_mod.label_value(agent)}"
    existing = ctx.kube.list_jobs(ref.namespace, selector)
    if any(j.get("metadata", {}).get("name") == details["job"] for j in existing):
        return _already_exists(ref, details["job"], details)
    running = sorted(str(j["metadata"]["name"]) for j in existing if not jobs_mod.job_finished(j))
    if not running:
        return None
    return ctx.result(
        KIND,
        ref,
        ExecutionOutcome.REFUSED,
        f"prompt-optimization Job {running[0]} for agent {agent} is still "
        "running; at most one runs per agent, the next starts after it finishes",
        policy=policy,
        uid=uid_of(obj),
        details={**details, "running": running},
        dry_run=record.dry_run,
    )


def _already_exists(ref: WorkloadRef, name: str, details: Mapping[str, Any]) -> ActionResult:
    return ActionResult(
        KIND,
        ref,
        ExecutionOutcome.UNCHANGED,
        f"Job {name} for this episode already exists",
        details=details,
    )


def _job_template(
    ctx: ActionContext, ref: WorkloadRef, action: PromptOptimizationAction
) -> tuple[dict[str, Any] | None, str]:
    """``(template, "cronjob/X" or "the inline jobTemplate")``, or ``(None, why not)``."""
    if action.from_cron_job:
        try:
            cron = ctx.kube.get_cron_job(ref.namespace, action.from_cron_job)
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
    return None, ("promptOptimization sets neither fromCronJob nor jobTemplate; set one of them")
