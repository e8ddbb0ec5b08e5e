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

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from agentmedic.actions import model as model_action
from agentmedic.actions import probation, prompt_job, scale
from agentmedic.actions import restore as restore_action
from agentmedic.actions import state as state_action
from agentmedic.actions.context import ActionContext, ActionSettings
from agentmedic.actions.request import ActionRequest
from agentmedic.actions.result import ActionKind, ActionResult
from agentmedic.actions.workloads import WorkloadInfo, list_workloads
from agentmedic.api.types import LabelSelector, ModelSpec
from agentmedic.kube.readers import secret_value

__all__ = ["ActionExecutor"]

P = ParamSpec("P")
R = TypeVar("R")


class _OnContext(Generic[P, R]):
    """A function of an action module as an executor method: called with the executor's
    :attr:`~ActionExecutor.context` (built at call time) before the caller's arguments."""

    def __init__(self, function: Callable[Concatenate[ActionContext, P], R]) -> None:
        self._function = function
        self.__doc__ = f"See :func:`{function.__module__}.{function.__qualname__}`."

    @overload
    def __get__(self, executor: None, owner: object = None) -> Self: ...

    @overload
    def __get__(self, executor: ActionExecutor, owner: object = None) -> Callable[P, R]: ...

    def __get__(
        self, executor: ActionExecutor | None, owner: object = None
    ) -> Self | Callable[P, R]:
        if executor is None:
            return self
        function = self._function

        @functools.wraps(function)
        def method(*args: P.args, **kwargs: P.kwargs) -> R:
            return function(executor.context, *args, **kwargs)

        return method


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
                ctx,
                ref,
                record.policy,
                request.prompt_optimization,
                record,
                request.job_evidence,
                request.prompt_spec,
            )
        if request.reverts and not record.dry_run:
            # The rejection goes on the workload before the revert: a restart between the
            # two reverts again (idempotent), never forgets that the tier regressed.
            probation.mark_reverted(ctx, ref, record.episode, record.at)
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
            # Recovery leaves a rolled-out prompt (it is what helped); only a prompt that
            # regressed on probation is put back.
            prompt=request.restore_prompt,
            dry_run=record.dry_run,
        )

    # ------------------------------------------------------------------ one action each

    scale_to_zero = _OnContext(scale.scale_to_zero)
    switch_model = _OnContext(model_action.switch_model)
    start_prompt_job = _OnContext(prompt_job.start_prompt_job)
    restore = _OnContext(restore_action.restore)
    plan_restore = _OnContext(restore_action.plan_restore)

    # ------------------------------------------------------------------ state, marks, Events

    write_agent_state = _OnContext(state_action.write_agent_state)
    mark_policy_deleted = _OnContext(state_action.mark_policy_deleted)
    emit_event = _OnContext(ActionContext.emit_event)

    # ------------------------------------------------------------------ readers (delegates)

    current_model = _OnContext(model_action.current_model)

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
