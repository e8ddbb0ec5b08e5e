"""The outcome of prompt-optimization Jobs, read once per cycle and acted on once.

After a cycle's actions, each evaluated policy that can start such Jobs (a
promptOptimization action, or spec.prompt) has its finished Jobs looked at, found by the
label ``agentmedic.io/policy``: a Job whose agent's workload does not yet name it in
``agentmedic.io/prompt-job`` is settled by
:func:`agentmedic.actions.prompt_rollout.settle_prompt_job` (the candidate rolled out, or
the failure reported with an Event), and the outcome becomes a line of the policy's
recent actions. The engine's episode keeps the same Job from being started again, so a
failed Job is reported once and not retried in a loop. One list request per such policy
and cycle; no write unless a Job finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from agentmedic.actions import ActionError, ActionExecutor, ExecutionOutcome, WorkloadRef
from agentmedic.actions.jobs import job_finished, label_value
from agentmedic.actions.prompt_record import handled_job
from agentmedic.actions.prompt_rollout import settle_prompt_job
from agentmedic.actions.record import AGENT_LABEL, EPISODE, POLICY_LABEL, RULE
from agentmedic.api.types import ActionOutcome, AgentPolicySpec, RecentAction
from agentmedic.engine import AgentId
from agentmedic.operator.cycle import Evaluated

__all__ = ["PromptJobs", "starts_prompt_jobs"]

log = logging.getLogger(__name__)

_OUTCOMES = {
    ExecutionOutcome.APPLIED: ActionOutcome.APPLIED,
    ExecutionOutcome.REFUSED: ActionOutcome.FAILED,
    ExecutionOutcome.FAILED: ActionOutcome.FAILED,
    ExecutionOutcome.NOT_FOUND: ActionOutcome.FAILED,
}


def starts_prompt_jobs(spec: AgentPolicySpec) -> bool:
    """Whether the policy can start prompt-optimization Jobs (or says where prompts live)."""
    return spec.prompt is not None or '"promptOptimization"' in spec.model_dump_json(
        by_alias=True, exclude_none=True
    )


class PromptJobs:
    """Settles the finished prompt-optimization Jobs of the evaluated policies."""

    def __init__(self, executor: ActionExecutor, *, dry_run: bool = False) -> None:
        self._executor = executor
        self._dry_run = dry_run

    async def settle(
        self, evaluated: Sequence[Evaluated], now: datetime
    ) -> dict[tuple[str, str], list[RecentAction]]:
        """The recent-action lines of the Jobs settled this cycle, per policy."""
        out: dict[tuple[str, str], list[RecentAction]] = {}
        for e in evaluated:
            spec = e.gathered.input.spec
            if self._dry_run or spec.guardrails.dry_run or not starts_prompt_jobs(spec):
                continue
            try:
                lines = await self._settle_policy(e, now)
            except ActionError as exc:
                log.warning("prompt-optimization Jobs of %s: %s", e.entry.user, exc.message)
                continue
            if lines:
                out[e.entry.key] = lines
        return out

    async def _settle_policy(self, e: Evaluated, now: datetime) -> list[RecentAction]:
        entry = e.entry
        selector = f"{POLICY_LABEL}={label_value(entry.name)}"
        jobs = await asyncio.to_thread(self._executor.kube.list_jobs, entry.namespace, selector)
        lines = []
        for job in sorted(jobs, key=lambda j: str(j["metadata"].get("creationTimestamp", ""))):
            meta = job.get("metadata") or {}
            agent = str((meta.get("labels") or {}).get(AGENT_LABEL, ""))
            w = e.gathered.agents.get(AgentId(entry.namespace, agent))
            if w is None or not job_finished(job) or handled_job(w.annotations) == meta["name"]:
                continue
            ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
            ctx = self._executor.context
            spec = e.gathered.input.spec
            result = await asyncio.to_thread(
                settle_prompt_job, ctx, ref, entry.ref, spec.prompt, job
            )
            if result is None or result.outcome not in _OUTCOMES:
                continue
            lines.append(
                RecentAction(
                    time=now,
                    agent=str(AgentId(entry.namespace, agent)),
                    rule=str((meta.get("annotations") or {}).get(RULE, "")),
                    action="promptOptimization",
                    outcome=_OUTCOMES[result.outcome],
                    reason=result.message[:500],
                    episode=str((meta.get("annotations") or {}).get(EPISODE, "")),
                )
            )
        return lines
