"""The one object a cycle's stages share: the cycle's inputs and what they accumulate.

:func:`~agentmedic.engine.evaluate.evaluate` builds a :class:`Cycle` from its arguments
and hands it to each stage of :mod:`agentmedic.engine.stages` in turn. The inputs
(``policy``, ``samples``, ``prior``, ``now``, ``plan``) are never changed; each stage
reads what the earlier ones left and adds its own part (the fields below say which stage
writes them). :class:`AgentWork` is one agent's working state, copy-on-write over its
prior :class:`~agentmedic.engine.state.AgentState`, so an agent nothing happened to keeps
the very same state object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.budget import StageInput
from agentmedic.engine.conditions import UNKNOWN, CompiledRule
from agentmedic.engine.inputs import AgentInput, PolicyInput
from agentmedic.engine.outcome import (
    AgentStatus,
    Decision,
    Notification,
    ProbationOutcome,
    SpendReport,
)
from agentmedic.engine.periods import Period, in_quiet_hours
from agentmedic.engine.plan import CyclePlan
from agentmedic.engine.reverts import Revert
from agentmedic.engine.series import AgentId, Samples, SeriesKey
from agentmedic.engine.silences import Silence, active_silences, find_silence
from agentmedic.engine.state import (
    ActionStamp,
    AgentState,
    NoticeRecord,
    PolicyState,
    RuleState,
    SystemicEpisode,
)

__all__ = ["AgentWork", "Cycle"]


class AgentWork:
    """Working state of one agent during a cycle (copy-on-write over the prior state)."""

    __slots__ = (
        "agent",
        "assume",
        "changed_at",
        "disabled",
        "downgraded",
        "external_zero",
        "figures",
        "frozen",
        "healthy_since",
        "lacks_data",
        "no_data_since",
        "prior",
        "probation",
        "rejected",
        "restored_at",
        "retry",
        "rules",
        "stage_v",
        "status",
        "unknown",
        "values",
        "verdicts",
        "workload",
    )

    def __init__(
        self,
        agent: AgentId,
        workload: AgentInput,
        values: Mapping[SeriesKey, float | None],
        prior: AgentState,
    ) -> None:
        self.agent = agent
        self.workload = workload
        """What the operator knows of the agent's workload."""
        self.values = values
        """The agent's samples."""
        self.prior = prior
        """The agent's state of the previous cycle."""
        self.rules: Mapping[str, RuleState] = prior.rules
        self.no_data_since = prior.no_data_since
        self.healthy_since = prior.healthy_since
        self.disabled = prior.disabled
        self.downgraded = prior.downgraded
        self.changed_at = prior.changed_at
        self.restored_at = prior.restored_at
        self.probation = prior.probation
        """The verdict on the latest change on probation."""
        self.rejected = prior.rejected
        """Tiers a probation reverted, and when (replace the mapping, never mutate it)."""
        self.frozen = False
        """Not judged this cycle (disabled, at zero replicas, or its metrics undefined)."""
        self.external_zero = False
        """At zero replicas without our record (a person, or KEDA idling it)."""
        self.unknown = workload.metrics_unknown
        """Its metrics came back undefined (NaN): held, and no change of any kind."""
        self.lacks_data = False
        """Some rule had no (or too little) data."""
        self.assume = False
        """noData.mode breach applies: missing conditions count as breaching."""
        self.verdicts: list[int] = []
        """Each rule's verdict this cycle, in spec order (empty when frozen)."""
        self.retry: set[tuple[str, str]] = set()
        """(rule, kind) of changes decided before that never showed on the workload."""
        self.status = AgentStatus.HEALTHY
        self.figures: StageInput | None = None
        """The agent's spend figures (with a budget)."""
        self.stage_v: tuple[int, int] = (UNKNOWN, UNKNOWN)
        """The soft and hard budget stages' verdicts."""

    def set_rule(self, name: str, rs: RuleState | None) -> None:
        """Set (or, with None, drop) one rule's state, copying the prior mapping once."""
        if self.rules.get(name) is rs:
            return
        rules = dict(self.rules) if self.rules is self.prior.rules else self.rules
        assert isinstance(rules, dict)
        if rs is None:
            rules.pop(name, None)
        else:
            rules[name] = rs
        self.rules = rules

    def result(self) -> AgentState:
        """The agent's new state: the prior object itself when nothing changed."""
        p = self.prior
        if (
            self.rules is p.rules
            and self.disabled is p.disabled
            and self.downgraded is p.downgraded
            and self.no_data_since == p.no_data_since
            and self.healthy_since == p.healthy_since
            and self.changed_at == p.changed_at
            and self.restored_at == p.restored_at
            and self.probation is p.probation
            and self.rejected is p.rejected
        ):
            return p
        return AgentState(
            rules=self.rules,
            no_data_since=self.no_data_since,
            healthy_since=self.healthy_since,
            disabled=self.disabled,
            downgraded=self.downgraded,
            changed_at=self.changed_at,
            restored_at=self.restored_at,
            probation=self.probation,
            rejected=self.rejected,
        )


@dataclass(slots=True)
class Cycle:
    """One evaluation of one policy: its inputs, then what the stages accumulate."""

    # -- inputs (never changed)
    policy: PolicyInput
    samples: Samples
    prior: PolicyState
    now: datetime
    plan: CyclePlan
    spec: AgentPolicySpec = field(init=False)
    uid: str = field(init=False)
    rules: tuple[CompiledRule, ...] = field(init=False)
    dry_run: bool = field(init=False)
    quiet: bool = field(init=False)
    """Inside quiet hours: workload changes wait."""
    silences: tuple[Silence, ...] = field(init=False)
    """The silences in force now that can apply to this policy."""

    # -- rules stage
    work: dict[AgentId, AgentWork] = field(default_factory=dict)
    """Every selected agent's working state, in the policy's order."""
    considered: int = 0
    """Agents judged this cycle (not frozen): the base of the systemic share."""
    breaching: list[list[AgentWork]] = field(init=False)
    """Per rule (spec order), the agents breaching it this cycle."""
    reverts: dict[AgentId, Revert] = field(default_factory=dict)
    """Agents whose change someone else put back (onRevert: told, or applied again)."""
    ended: dict[str, str] = field(default_factory=dict)
    """Episode key → why it ended this cycle (a Reason value), for resolved messages."""

    # -- budgets stage
    period: Period | None = None
    budget_states: dict[str, RuleState] = field(init=False)
    """Policy scope: each stage's state."""
    policy_figures: StageInput | None = None
    """Policy scope: the fleet's spend figures."""
    spend: SpendReport | None = None

    # -- systemic stage
    systemic: dict[str, SystemicEpisode] = field(default_factory=dict)
    """Rules (and noData) breached by enough of the fleet to be one fleet episode."""

    # -- probation stage
    probation: list[ProbationOutcome] = field(default_factory=list)
    """Verdicts reached this cycle on changes on probation."""
    probation_notices: list[Notification] = field(default_factory=list)
    """Their messages (regressions), sent with the notices stage's."""
    peer_figures: dict[timedelta, dict[str, float | None]] = field(default_factory=dict)
    """Per window, the medians of the agents not on probation (stages/peers.py): taken
    once per cycle, however many changes are judged or made in it."""

    # -- remediation and recovery stages
    decisions: list[Decision] = field(default_factory=list)
    stamps: list[ActionStamp] = field(default_factory=list)
    """Changes granted this cycle that count against maxActionsPerHour."""
    escalations: dict[tuple[AgentId, str], tuple[str, str]] = field(default_factory=dict)
    """(agent, rule) → (reason, message): no change possible, a person must act."""
    decided: dict[tuple[AgentId, str], Decision] = field(default_factory=dict)
    """(agent, rule) → the change granted this cycle."""
    held: dict[tuple[AgentId, str], Decision] = field(default_factory=dict)
    """(agent, rule) → the change a guardrail stopped this cycle."""

    # -- notices stage
    notices: dict[str, NoticeRecord] = field(init=False)
    told: dict[str, datetime] = field(init=False)
    """Messages said once (see PolicyState.told)."""
    no_data_channels: tuple[str, ...] = ()

    def silenced(self, agent: AgentId | None, rule: str) -> Silence | None:
        """The silence covering ``rule`` of ``agent`` (None: the fleet) now, if any."""
        if not self.silences:
            return None
        return find_silence(self.silences, self.policy.name, agent, rule)

    def __post_init__(self) -> None:
        self.spec = self.policy.spec
        self.uid = self.policy.uid
        self.rules = self.plan.rules
        self.dry_run = self.spec.guardrails.dry_run
        self.quiet = in_quiet_hours(self.spec.guardrails.quiet_hours, self.now)
        self.silences = active_silences(self.policy.silences, self.policy.name, self.now)
        self.breaching = [[] for _ in self.rules]
        self.budget_states = dict(self.prior.budget)
        self.notices = dict(self.prior.notices)
        self.told = dict(self.prior.told)
