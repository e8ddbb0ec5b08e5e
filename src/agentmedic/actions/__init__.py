"""Kubernetes side effects: scale to zero, switch model, prompt-optimization Jobs, restore.

Everything goes through the Kubernetes layer (:class:`agentmedic.kube.Kube`: retries,
error translation) and is applied by :class:`ActionExecutor`, which dispatches each
:class:`ActionRequest` to the module of its action, records each change in
``agentmedic.io/*`` annotations on the workload (:mod:`agentmedic.actions.record`), writes
Events, and can put everything back. Typical use from the operator::

    kube = Kube.from_configuration(configuration)
    executor = ActionExecutor(kube)
    request = ActionRequest.from_decision(decision, policy, workload, spec)
    result = await asyncio.to_thread(executor.execute, request)
    line = recent_action(request, result)  # for the policy's status
"""

from agentmedic.actions.context import ActionContext
from agentmedic.actions.errors import (
    ActionError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Transient,
)
from agentmedic.actions.events import EventReason, emit_event, scrub
from agentmedic.actions.executor import ActionExecutor
from agentmedic.actions.jobs import build_job, job_name
from agentmedic.actions.permissions import REQUIRED_PERMISSIONS, Permission, permission_for_request
from agentmedic.actions.record import (
    ActionRecord,
    ModelSwitchRecord,
    PolicyRef,
    ScaledToZeroRecord,
    WorkloadRef,
    parse_disabled,
    parse_downgraded,
    state_key,
)
from agentmedic.actions.request import ActionRequest, recent_action, unexecuted_recent_action
from agentmedic.actions.restore import RestorePlan, restore_requested
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome
from agentmedic.actions.scale import KEDA_PAUSED_REPLICAS
from agentmedic.actions.state import read_agent_state
from agentmedic.actions.workloads import (
    WorkloadInfo,
    label_selector_string,
    list_workloads,
    read_secret_value,
)
from agentmedic.kube import Kube, RetryPolicy

__all__ = [
    "KEDA_PAUSED_REPLICAS",
    "REQUIRED_PERMISSIONS",
    "ActionContext",
    "ActionError",
    "ActionExecutor",
    "ActionKind",
    "ActionRecord",
    "ActionRequest",
    "ActionResult",
    "Conflict",
    "EventReason",
    "ExecutionOutcome",
    "Forbidden",
    "Invalid",
    "Kube",
    "ModelSwitchRecord",
    "NotFound",
    "Permission",
    "PolicyRef",
    "RestorePlan",
    "RetryPolicy",
    "ScaledToZeroRecord",
    "Transient",
    "WorkloadInfo",
    "WorkloadRef",
    "build_job",
    "emit_event",
    "job_name",
    "label_selector_string",
    "list_workloads",
    "parse_disabled",
    "parse_downgraded",
    "permission_for_request",
    "read_agent_state",
    "read_secret_value",
    "recent_action",
    "restore_requested",
    "scrub",
    "state_key",
    "unexecuted_recent_action",
]
