"""The action executor: carries out an :class:`~agentmedic.actions.request.ActionRequest`
by dispatching it to the module of its action.

Each action lives in a module of its own and shares the steps of
:mod:`agentmedic.actions.context` (the guarded write, Events, results):

- :mod:`agentmedic.actions.scale`: scale to zero (and pause KEDA);
- :mod:`agentmedic.actions.model`: switch the model tier (env var or ConfigMap key);
- :mod:`agentmedic.actions.prompt_job`: start the prompt-optimization Job;
- :mod:`agentmedic.actions.restore`: put back what was recorded;
- :mod:`agentmedic.actions.state`: the engine's memory on the workload.

The executor is synchronous; the operator calls it through ``asyncio.to_thread``. Its
per-action methods (``scale_to_zero`` …) remain for callers that hold no request; the
readers it used to offer (``list_workloads``, ``read_secret_value``, ``current_model``)
delegate to :mod:`agentmedic.actions.workloads`, :mod:`agentmedic.kube.readers` and
:mod:`agentmedic.actions.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from agentmedic.actions import model as model_action
from agentmedic.actions import prompt_job, scale
from agentmedic.actions import restore as restore_action
from agentmedic.actions import state as state_action
from agentmedic.actions.context import ActionContext, ActionSettings
from agentmedic.actions.record import ActionRecord, PolicyRef, WorkloadRef
from agentmedic.actions.request import ActionRequest
from agentmedic.actions.restore import RestorePlan
from agentmedic.actions.result import ActionKind, ActionResult
from agentmedic.actions.workloads import WorkloadInfo, list_workloads
from agentmedic.api.types import LabelSelector, ModelSpec, PromptOptimizationAction
from agentmedic.kube.readers import secret_value

__all__ = ["ActionExecutor"]


@dataclass
class ActionExecutor(ActionSettings):
    """Applies actions to agents' workloads through a :class:`Kube` client, with the
    settings of :class:`~agentmedic.actions.context.ActionSettings`."""

    @property
    def context(self) -> ActionContext:
        """What every action runs with (built afresh, so changed settings apply)."""
        return ActionContext(self.kube, self.now, self.conflict_attempts, self.max_restore_replicas)

    # ------------------------------------------------------------------ dispatch

    def execute(self, request: ActionRequest) -> ActionResult:
        """Carry out one request; a definite outcome is a result, a transient failure
        or an exhausted conflict raises :class:`~agentmedic.actions.errors.ActionError`."""
        ctx, ref, record = self.context, request.workload, request.record
        if request.kind is ActionKind.SCALE_TO_ZERO:
            return scale.scale_to_zero(ctx, ref, record)
        if request.kind is ActionKind.SWITCH_MODEL:
            # ActionRequest.__post_init__ guarantees both.
            assert request.model_spec is not None
            assert request.to_model is not None
            return model_action.switch_model(ctx, ref, request.model_spec, request.to_model, record)
        if request.kind is ActionKind.PROMPT_OPTIMIZATION:
            assert request.prompt_optimization is not None  # __post_init__
            return prompt_job.start_prompt_job(
                ctx, ref, record.policy, request.prompt_optimization, record, request.job_evidence
            )
        if request.step_back_to is not None:
            assert request.model_spec is not None  # __post_init__
            return model_action.switch_model(
                ctx, ref, request.model_spec, request.step_back_to, record
            )
        return restore_action.restore(
            ctx,
            ref,
            request.restored_by,
            replicas=request.restore_replicas,
            model=request.restore_model,
            dry_run=record.dry_run,
        )

    # ------------------------------------------------------------------ one action each

    def scale_to_zero(self, ref: WorkloadRef, record: ActionRecord) -> ActionResult:
        """See :func:`agentmedic.actions.scale.scale_to_zero`."""
        return scale.scale_to_zero(self.context, ref, record)

    def switch_model(
        self, ref: WorkloadRef, model_spec: ModelSpec, to_model: str, record: ActionRecord
    ) -> ActionResult:
        """See :func:`agentmedic.actions.model.switch_model`."""
        return model_action.switch_model(self.context, ref, model_spec, to_model, record)

    def start_prompt_job(
        self,
        ref: WorkloadRef,
        policy: PolicyRef,
        action: PromptOptimizationAction,
        record: ActionRecord,
        evidence: Mapping[str, Any],
    ) -> ActionResult:
        """See :func:`agentmedic.actions.prompt_job.start_prompt_job`."""
        return prompt_job.start_prompt_job(self.context, ref, policy, action, record, evidence)

    def restore(
        self,
        ref: WorkloadRef,
        by: str,
        *,
        replicas: bool = True,
        model: bool = True,
        dry_run: bool = False,
    ) -> ActionResult:
        """See :func:`agentmedic.actions.restore.restore`."""
        return restore_action.restore(
            self.context, ref, by, replicas=replicas, model=model, dry_run=dry_run
        )

    def plan_restore(self, ref: WorkloadRef) -> RestorePlan:
        """See :func:`agentmedic.actions.restore.plan_restore`."""
        return restore_action.plan_restore(self.context, ref)

    # ------------------------------------------------------------------ state, marks, Events

    def write_agent_state(
        self,
        ref: WorkloadRef,
        policy_key: str,
        state: Mapping[str, Any] | None,
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> bool:
        """See :func:`agentmedic.actions.state.write_agent_state`."""
        return state_action.write_agent_state(
            self.context, ref, policy_key, state, annotations=annotations
        )

    def mark_policy_deleted(
        self, ref: WorkloadRef, policy: PolicyRef, at: datetime | None = None
    ) -> None:
        """See :func:`agentmedic.actions.state.mark_policy_deleted`."""
        state_action.mark_policy_deleted(self.context, ref, policy, at)

    def emit_event(
        self,
        involved: dict[str, str],
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        action: str = "",
    ) -> dict[str, Any] | None:
        """Write a core/v1 Event about ``involved``; see :func:`events.emit_event`."""
        return self.context.emit_event(involved, reason, message, type, action)

    # ------------------------------------------------------------------ readers (delegates)

    def current_model(
        self, workload: WorkloadInfo | Mapping[str, Any], model_spec: ModelSpec
    ) -> str | None:
        """See :func:`agentmedic.actions.model.current_model`."""
        return model_action.current_model(self.context, workload, model_spec)

    def list_workloads(
        self,
        namespace: str,
        label_selector: str | LabelSelector,
        model_spec: ModelSpec | None = None,
    ) -> list[WorkloadInfo]:
        """See :func:`agentmedic.actions.workloads.list_workloads`."""
        return list_workloads(self.kube, namespace, label_selector, model_spec)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """A Secret's value for notifications; never logged. See
        :func:`agentmedic.kube.readers.secret_value`."""
        return secret_value(self.kube, namespace, name, key)
