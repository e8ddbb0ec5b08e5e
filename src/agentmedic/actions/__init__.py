"""Kubernetes side effects: scale to zero, switch model, prompt-optimization Jobs, restore.

Everything goes through the ``kubernetes`` sync client wrapped by :class:`Kube` (retries,
error translation) and is applied by :class:`ActionExecutor`, which records each change
in ``agentmedic.io/*`` annotations on the workload (:mod:`agentmedic.actions.record`),
writes Events, and can put everything back. Typical use from the operator::

    kube = Kube.from_configuration(configuration)
    executor = ActionExecutor(kube)
    result = await asyncio.to_thread(executor.scale_to_zero, ref, record)
"""

from agentmedic.actions.errors import (
    ActionError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Transient,
)
from agentmedic.actions.events import EventReason, emit_event, scrub
from agentmedic.actions.executor import (
    KEDA_PAUSED_REPLICAS,
    ActionExecutor,
    RestorePlan,
    read_agent_state,
    restore_requested,
)
from agentmedic.actions.jobs import build_job, job_name
from agentmedic.actions.permissions import REQUIRED_PERMISSIONS, Permission, permission_for_request
from agentmedic.actions.record import (
    ActionRecord,
    DisabledRecord,
    DowngradedRecord,
    PolicyRef,
    WorkloadRef,
    parse_disabled,
    parse_downgraded,
    state_key,
)
from agentmedic.actions.result import ActionKind, ActionResult, Outcome
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
    "ActionError",
    "ActionExecutor",
    "ActionKind",
    "ActionRecord",
    "ActionResult",
    "Conflict",
    "DisabledRecord",
    "DowngradedRecord",
    "EventReason",
    "Forbidden",
    "Invalid",
    "Kube",
    "NotFound",
    "Outcome",
    "Permission",
    "PolicyRef",
    "RestorePlan",
    "RetryPolicy",
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
    "restore_requested",
    "scrub",
    "state_key",
]
