"""The actions' boundary: an engine :class:`~agentmedic.engine.Decision` comes in as an
:class:`ActionRequest`, goes out as an :class:`~agentmedic.actions.result.ActionResult`,
and is shown in the policy's status as a :class:`~agentmedic.api.types.RecentAction`.

The conversions live here, named, so that one decision's path through the operator reads
as three calls::

    request = ActionRequest.from_decision(decision, policy, workload, spec)
    result = executor.execute(request)              # in a worker thread
    status_line = recent_action(request, result)

A decision that never reaches the executor (a guardrail suppressed it, its workload is
gone, the API failed for now) is shown with :func:`unexecuted_recent_action`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmedic.actions.record import ActionRecord, PolicyRef, WorkloadRef
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.api.durations import format_duration
from agentmedic.api.prompt import PromptSpec
from agentmedic.api.types import (
    ActionOutcome,
    AgentPolicySpec,
    ModelSpec,
    PromptOptimizationAction,
    RecentAction,
)
from agentmedic.engine import Decision, DecisionKind, DecisionReason
from agentmedic.engine.outcome import ProbationOutcome

__all__ = [
    "ActionRequest",
    "probation_recent_action",
    "recent_action",
    "unexecuted_recent_action",
]

MAX_REASON = 500
"""Characters of a reason kept in status."""


@dataclass(frozen=True)
class ActionRequest:
    """One change asked of the actions layer: what, on which workload, and why.

    ``kind`` is what the engine decided (it names the line in status); a partial restore
    that steps the model back one tier (``step_back_to``) is carried out as a model switch.
    """

    kind: ActionKind
    workload: WorkloadRef
    record: ActionRecord
    """Who decided it, why and when: written on the workload with the change."""
    agent: str
    """The agent as status names it (``namespace/name``)."""
    model_spec: ModelSpec | None = None
    """Where the agent's model lives (switchModel, and a model restore by steps)."""
    to_model: str | None = None
    """switchModel: the model to move to."""
    prompt_optimization: PromptOptimizationAction | None = None
    """promptOptimization: the Job to start."""
    job_evidence: Mapping[str, Any] = field(default_factory=dict)
    """promptOptimization: the measurements handed to the Job."""
    prompt_spec: PromptSpec | None = None
    """promptOptimization: where the live prompt is (the policy's spec.prompt)."""
    restore_replicas: bool = True
    """restore: put the replica count back."""
    restore_model: bool = True
    """restore: put the first model back and clear the model record."""
    step_back_to: str | None = None
    """restore: only step the model back to this tier (the record stays)."""
    restored_by: str = ""
    """restore: who asked, for the note and the Events."""
    reverts: bool = False
    """restore: it undoes a change that regressed on probation (status says Reverted)."""
    restore_prompt: bool = False
    """restore: put back the prompt text a rollout replaced (a prompt that regressed)."""

    def __post_init__(self) -> None:
        if self.kind is ActionKind.SWITCH_MODEL and (
            self.model_spec is None or self.to_model is None
        ):
            raise ValueError("a switchModel request needs the policy's spec.model and to_model")
        if self.kind is ActionKind.PROMPT_OPTIMIZATION and self.prompt_optimization is None:
            raise ValueError("a promptOptimization request needs its action")
        if self.step_back_to is not None and self.model_spec is None:
            raise ValueError("stepping the model back needs the policy's spec.model")

    @property
    def dry_run(self) -> bool:
        return self.record.dry_run

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        policy: PolicyRef,
        workload: WorkloadRef,
        spec: AgentPolicySpec,
    ) -> ActionRequest:
        """The request carrying out ``decision`` of ``policy`` on the agent's ``workload``."""
        d = decision
        record = ActionRecord(
            policy=policy,
            rule=d.rule,
            episode=d.episode,
            reason=d.reason,
            evidence=d.evidence.describe(),
            at=d.at,
            dry_run=d.dry_run,
            baseline=d.baseline,
        )
        base: dict[str, Any] = {
            "kind": ActionKind(d.kind.value),
            "workload": workload,
            "record": record,
            "agent": str(d.agent),
            "model_spec": spec.model,
        }
        if d.kind is DecisionKind.SWITCH_MODEL:
            return cls(**base, to_model=d.to_model)
        if d.kind is DecisionKind.PROMPT_OPTIMIZATION:
            return cls(
                **base,
                prompt_optimization=d.prompt_optimization,
                job_evidence=_job_evidence(d),
                prompt_spec=spec.prompt,
            )
        if d.kind is DecisionKind.RESTORE:
            restore = d.restore
            if restore is None:
                raise ValueError("a restore decision carries no restore")
            step = (
                restore.model
                if restore.model is not None and not restore.complete and spec.model is not None
                else None
            )
            reverts = d.reason_code == DecisionReason.PROBATION_REGRESSED
            by = "auto-recovery" if not d.rule.startswith("budget") else "budget period ended"
            if reverts:
                by = "probation (the change regressed)"
            return cls(
                **base,
                restore_replicas=restore.replicas,
                restore_model=restore.complete,
                step_back_to=step,
                restored_by=by,
                reverts=reverts,
                restore_prompt=restore.prompt,
            )
        return cls(**base)


def _job_evidence(d: Decision) -> dict[str, Any]:
    """What the prompt-optimization Job is told about the breach."""
    return {
        "rule": d.rule,
        "summary": d.evidence.describe(),
        "conditions": [
            {
                "metric": c.metric,
                "query": c.query,
                "window": format_duration(c.window),
                "op": str(c.op),
                "threshold": c.threshold,
                "observed": c.observed,
            }
            for c in d.evidence.conditions
        ],
    }


def _status_outcome(request: ActionRequest, result: ActionResult) -> ActionOutcome:
    """How status shows an executed action: a refusal is a suppression, an action already
    done for its episode counts as applied (or restored)."""
    if result.outcome is ExecutionOutcome.DRY_RUN or request.dry_run:
        return ActionOutcome.DRY_RUN
    if result.outcome in (ExecutionOutcome.APPLIED, ExecutionOutcome.UNCHANGED):
        if request.kind is ActionKind.RESTORE:
            return ActionOutcome.REVERTED if request.reverts else ActionOutcome.RESTORED
        return ActionOutcome.APPLIED
    if result.outcome is ExecutionOutcome.REFUSED:
        return ActionOutcome.SUPPRESSED
    return ActionOutcome.FAILED


def _line(
    *,
    at: datetime,
    agent: str,
    rule: str,
    action: str,
    outcome: ActionOutcome,
    reason: str,
    episode: str,
    dry_run: bool,
) -> RecentAction:
    if dry_run and outcome is ActionOutcome.APPLIED:
        outcome = ActionOutcome.DRY_RUN
    return RecentAction(
        time=at,
        agent=agent,
        rule=rule,
        action=action,
        outcome=outcome,
        reason=reason[:MAX_REASON],
        episode=episode,
    )


def recent_action(request: ActionRequest, result: ActionResult) -> RecentAction:
    """The status line of an executed request."""
    r = request.record
    return _line(
        at=r.at,
        agent=request.agent,
        rule=r.rule,
        action=str(request.kind),
        outcome=_status_outcome(request, result),
        reason=result.message or r.reason,
        episode=r.episode,
        dry_run=r.dry_run,
    )


def probation_recent_action(p: ProbationOutcome) -> RecentAction:
    """The status line of a verdict on probation (Verified, Regressed, Inconclusive)."""
    return _line(
        at=p.at,
        agent=str(p.agent),
        rule=p.rule,
        action="verify",
        outcome=ActionOutcome(p.verdict),
        reason=p.summary,
        episode=p.episode,
        dry_run=False,
    )


def unexecuted_recent_action(
    decision: Decision, outcome: ActionOutcome, reason: str
) -> RecentAction:
    """The status line of a decision the executor did not carry out (suppressed, its
    workload gone, or failed for now and decided again next cycle)."""
    d = decision
    return _line(
        at=d.at,
        agent=str(d.agent),
        rule=d.rule,
        action=str(d.kind),
        outcome=outcome,
        reason=reason,
        episode=d.episode,
        dry_run=d.dry_run,
    )
