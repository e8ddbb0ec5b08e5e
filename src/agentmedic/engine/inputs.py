"""What the operator gathers for one evaluation: the policy and what it knows of each agent.

The engine never assumes its decisions were applied. It learns what happened from the
:class:`AgentInput` the operator describes each cycle: the replica count, the model, and
the record the actions layer wrote on the workload (``agentmedic.io/*`` annotations)
when it disabled or downgraded the agent. A restarted operator rebuilds these from the
annotations, so the engine picks up exactly where it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.finance import BudgetVerdict
from agentmedic.engine.series import AgentId
from agentmedic.engine.silences import Silence

__all__ = [
    "AgentInput",
    "DisabledAgent",
    "DowngradedAgent",
    "PolicyInput",
    "ProbationRecord",
    "PromptJobOutcome",
    "episode_key",
    "episode_policy_uid",
]


@dataclass(frozen=True, slots=True)
class DisabledAgent:
    """The operator's record that it scaled the workload to zero (or paused it in KEDA)."""

    episode: str
    """The episode key of the decision that disabled it."""
    rule: str
    """The rule (or budget.hard / budget.soft) behind it."""
    at: datetime
    """When it was disabled."""
    previous_replicas: int | None = None
    """The replica count restore puts back."""


@dataclass(frozen=True, slots=True)
class DowngradedAgent:
    """The operator's record that it moved the workload to a cheaper model."""

    episode: str
    """The episode key of the latest switch."""
    rule: str
    """The rule (or budget.soft) behind the latest switch."""
    at: datetime
    """When the latest switch happened."""
    previous_model: str
    """The model before agentmedic first changed it: what a full restore puts back."""


@dataclass(frozen=True, slots=True)
class PromptJobOutcome:
    """The last prompt-optimization Job whose outcome the operator handled on the workload
    (``agentmedic.io/prompt-job``) when it was not rolled out: failed, timed out, rejected,
    or finished without a result to trust."""

    job: str
    """The Job's name."""
    status: str
    """What its result says (Failed, Rejected, Succeeded), or Failed without one."""
    reason: str
    """One line: the result's reason, or the Job's condition (DeadlineExceeded,
    BackoffLimitExceeded) and its message."""
    episode: str
    """The episode key of the episode that started the Job."""
    rule: str
    """The rule (or budget stage) behind it."""
    at: datetime
    """When the outcome was handled."""


@dataclass(frozen=True, slots=True)
class ProbationRecord:
    """The operator's record of a change on probation (``agentmedic.io/probation``): what
    changed, and the agent's signals over ``spec.verify.baselineWindow`` before it."""

    kind: str
    """switchModel or prompt."""
    episode: str
    """The episode key of the change."""
    rule: str
    """The rule (or budget.soft / budget.hard) behind it."""
    at: datetime
    """When the change was made: the window is measured from here."""
    previous: str
    """The value before the change (the model, or the prompt version)."""
    new: str
    """The value the change set."""
    baseline: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    """Per signal (a built-in metric name, ``executions`` included) its value before the
    change; None when the signal had no data."""
    reverted_at: datetime | None = None
    """Set when a regression reverted the change: the new value is rejected from then."""


@dataclass(frozen=True, slots=True)
class AgentInput:
    """What the operator knows of one agent this cycle: its workload and its metrics."""

    kind: str = "Deployment"
    """Deployment or StatefulSet."""
    name: str = ""
    """The workload's name (the agent's name in the metrics may differ)."""
    replicas: int | None = None
    """Desired replicas (spec.replicas); 0 means not running; None when unknown."""
    model: str | None = None
    """The model the workload is configured with, when known."""
    disabled: DisabledAgent | None = None
    """Set while the operator's scale-to-zero record is on the workload."""
    downgraded: DowngradedAgent | None = None
    """Set while the operator's model-switch record is on the workload."""
    probation: ProbationRecord | None = None
    """Set while the operator's probation record of a change is on the workload."""
    prompt_version: str | None = None
    """The prompt version agentmedic's rollout record (``agentmedic.io/prompt``) says is
    live; None without a record (never rolled out, or restored since)."""
    prompt_job: PromptJobOutcome | None = None
    """The last prompt-optimization Job handled on the workload, when it was not rolled
    out (told once on the rule's channels)."""
    managed_by: str | None = None
    """The GitOps tool that manages the workload, in words ("Argo CD Application x"), when
    its marks say so: named when agentmedic's change is reverted."""
    metrics_unknown: bool = False
    """The metrics answer was good but gave this agent an undefined value (NaN: a ratio
    over an empty window) for a series the policy needs. The agent is held this cycle:
    not judged, no noData stance, no change of any kind (restores included), its rule
    state kept; it counts as no data."""
    budgets: tuple[BudgetVerdict, ...] = ()
    """What each AgentBudget and ClusterAgentBudget selecting the agent says this cycle
    (:func:`~agentmedic.engine.finance.evaluate_budget`), reached stage or not. Their
    stages act through this policy like its own budget's; the strictest response wins."""


@dataclass(frozen=True)
class PolicyInput:
    """One policy and its agents, as gathered by the operator for one cycle."""

    spec: AgentPolicySpec
    """The policy's spec."""
    namespace: str
    """The policy's namespace."""
    name: str
    """The policy's name."""
    uid: str
    """The policy's metadata.uid: part of every episode key, so keys never collide across
    policies or across a delete and re-create."""
    agents: Mapping[AgentId, AgentInput] = field(default_factory=dict)
    """The agents the selector matched this cycle, with their workloads."""
    budgets_known: bool = True
    """False until finance's budgets have been evaluated once (an operator just started):
    the agents' budget stages are then held as they are, not ended for want of verdicts."""
    silences: tuple[Silence, ...] = ()
    """The AgentSilences of the policy's namespace (expired ones are ignored)."""


def episode_key(uid: str, agent: AgentId | None, rule: str, start: datetime) -> str:
    """``<policy uid>:<namespace>/<agent>:<rule>:<start, unix seconds>``; ``*`` for the fleet.

    The key names everything an episode causes (Jobs, pages, records), so repeating a
    decision with the same key is a no-op downstream.
    """
    who = "*" if agent is None else f"{agent.namespace}/{agent.name}"
    return f"{uid}:{who}:{rule}:{int(start.timestamp())}"


def episode_policy_uid(key: str) -> str:
    """The policy uid an episode key belongs to."""
    return key.split(":", 1)[0]
