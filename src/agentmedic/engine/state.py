"""What the engine remembers between cycles, and how it is stored.

The state splits in two so each part lives next to what it describes:

- per agent (:class:`AgentState`), stored by the operator in an annotation on that
  agent's workload: each rule's phase (pending since, firing since and the episode,
  clear since), which of its actions the episode already took, the last action time
  (cooldown), the agent's disabled/downgraded marks, and since when data has been
  missing or the agent healthy;
- per policy (:class:`PolicyState` minus ``agents``), stored in the policy's status or
  an annotation on it: the actions of the last hour (rate limit), systemic episodes,
  the budget period and which stages fired, the notifications sent per episode (a
  resolve owed), and the messages said once (``told``: a failed prompt Job's).

Everything is immutable; an evaluation returns a new :class:`PolicyState` that reuses
every unchanged :class:`AgentState` object, so ``changed_agents`` and ``==`` are cheap
and the operator writes only what changed. ``to_dict``/``from_dict`` produce and read
JSON-compatible dicts (times as ISO 8601 strings).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmedic.api.types import Severity
from agentmedic.engine.series import AgentId

__all__ = [
    "STATE_VERSION",
    "ActionStamp",
    "AgentState",
    "Mark",
    "NoticeRecord",
    "PolicyState",
    "ProbationMemo",
    "RuleState",
    "SystemicEpisode",
]

STATE_VERSION = 1
"""Bumped when the stored shape changes incompatibly; older state is then discarded."""


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _p(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v is not False and v != []}


@dataclass(frozen=True, slots=True)
class RuleState:
    """One rule on one agent (budget stages use the names ``budget.soft``/``budget.hard``)."""

    pending_since: datetime | None = None
    """First breaching evaluation of the current breach; also the episode's start."""
    firing_since: datetime | None = None
    """When the breach had held for ``for`` and the rule fired."""
    episode: str | None = None
    """The episode key while firing."""
    clear_since: datetime | None = None
    """While firing: the first clear evaluation of a recovery still shorter than recoverFor."""
    systemic: bool = False
    """The breach is part of a fleet-wide outage: no action and no per-agent page for it."""
    done: frozenset[str] = frozenset()
    """Workload actions (scaleToZero, switchModel, promptOptimization) this episode took."""
    suppressed: str | None = None
    """The last suppression reason reported in this episode (reported once, not every cycle)."""
    last_action_at: datetime | None = None
    """When this rule last changed this agent (cooldown); survives the episode."""
    last_action_episode: str | None = None
    """The episode of that change; repeating the same episode's change is not a second one."""

    @property
    def firing(self) -> bool:
        """The rule fires on this agent."""
        return self.firing_since is not None

    @property
    def pending(self) -> bool:
        """The rule breaches on this agent but not yet for long enough."""
        return self.pending_since is not None and self.firing_since is None

    def idle(self) -> RuleState | None:
        """The state after the episode ends: only the cooldown memory is kept."""
        if self.last_action_at is None:
            return None
        return RuleState(
            last_action_at=self.last_action_at, last_action_episode=self.last_action_episode
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict without empty fields."""
        return _drop_none(
            {
                "pendingSince": _t(self.pending_since),
                "firingSince": _t(self.firing_since),
                "episode": self.episode,
                "clearSince": _t(self.clear_since),
                "systemic": self.systemic,
                "done": sorted(self.done),
                "suppressed": self.suppressed,
                "lastActionAt": _t(self.last_action_at),
                "lastActionEpisode": self.last_action_episode,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RuleState:
        """Read what :meth:`to_dict` wrote."""
        return cls(
            pending_since=_p(d.get("pendingSince")),
            firing_since=_p(d.get("firingSince")),
            episode=d.get("episode"),
            clear_since=_p(d.get("clearSince")),
            systemic=bool(d.get("systemic", False)),
            done=frozenset(d.get("done", ())),
            suppressed=d.get("suppressed"),
            last_action_at=_p(d.get("lastActionAt")),
            last_action_episode=d.get("lastActionEpisode"),
        )


@dataclass(frozen=True, slots=True)
class Mark:
    """The engine's view of a change to an agent's workload (disabled or downgraded).

    ``confirmed`` becomes True when the operator's record on the workload shows the change;
    a non-dry-run change still unconfirmed after two intervals is decided again. A dry-run
    mark is virtual: nothing was changed, it only counts toward maxDisabledPercent and
    lasts as long as its episode.
    """

    episode: str
    """The episode key of the change."""
    rule: str
    """The rule (or budget stage) behind it."""
    at: datetime
    """When it was decided (or, when adopted from a record, when the record says)."""
    confirmed: bool = False
    """The workload's record shows the change."""
    dry_run: bool = False
    """Decided in dry run: nothing was changed."""
    from_model: str | None = None
    """Downgrade: the model before agentmedic first changed it."""
    to_model: str | None = None
    """Downgrade: the model the workload runs now."""
    restoring_at: datetime | None = None
    """When a restore of this change was decided and not yet observed."""
    restore_to: str | None = None
    """Downgrade: the model that restore moves to (one tier up, or from_model)."""
    suppressed: str | None = None
    """The last suppression reason reported for its restore."""
    reverted_at: datetime | None = None
    """Since when the workload shows the value from before the change again, put back by
    someone else (the record still says agentmedic's); None while the change holds."""
    reverts: int = 0
    """How many times in this episode the change was seen reverted."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict without empty fields."""
        return _drop_none(
            {
                "episode": self.episode,
                "rule": self.rule,
                "at": _t(self.at),
                "confirmed": self.confirmed,
                "dryRun": self.dry_run,
                "fromModel": self.from_model,
                "toModel": self.to_model,
                "restoringAt": _t(self.restoring_at),
                "restoreTo": self.restore_to,
                "suppressed": self.suppressed,
                "revertedAt": _t(self.reverted_at),
                "reverts": self.reverts or None,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mark:
        """Read what :meth:`to_dict` wrote."""
        at = _p(d["at"])
        assert at is not None
        return cls(
            episode=d["episode"],
            rule=d["rule"],
            at=at,
            confirmed=bool(d.get("confirmed", False)),
            dry_run=bool(d.get("dryRun", False)),
            from_model=d.get("fromModel"),
            to_model=d.get("toModel"),
            restoring_at=_p(d.get("restoringAt")),
            restore_to=d.get("restoreTo"),
            suppressed=d.get("suppressed"),
            reverted_at=_p(d.get("revertedAt")),
            reverts=int(d.get("reverts") or 0),
        )


@dataclass(frozen=True, slots=True)
class ProbationMemo:
    """The verdict on the latest change on probation: judged once, never again."""

    episode: str
    """The episode key of the judged change (its record on the workload)."""
    verdict: str
    """Verified, Regressed or Inconclusive; not a verdict yet: Extended while too little
    traffic after the change has it watched for another window, Held while its peers fell
    as far (stages/peers.py), Resumed once they recovered; Superseded when someone replaced
    the change before it was judged."""
    at: datetime
    """When it was judged (Extended: when the latest window was found short; Held: when
    the hold began; Resumed: when the peers were found recovered)."""
    new: str = ""
    """The value the change had set (the tier a revert rejects)."""
    stopped: bool = False
    """The regression scaled the agent to zero (verify.onRegression scaleToZero): its page
    resolves when a person restores the agent."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return _drop_none(
            {
                "episode": self.episode,
                "verdict": self.verdict,
                "at": _t(self.at),
                "new": self.new,
                "stopped": self.stopped or None,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbationMemo:
        """Read what :meth:`to_dict` wrote."""
        at = _p(d["at"])
        assert at is not None
        return cls(
            d["episode"], d["verdict"], at, str(d.get("new", "")), bool(d.get("stopped", False))
        )


@dataclass(frozen=True, slots=True)
class AgentState:
    """Everything remembered about one agent: stored on its workload."""

    rules: Mapping[str, RuleState] = field(default_factory=dict)
    """Per rule (and budget stage) name; idle rules without cooldown memory are absent."""
    no_data_since: datetime | None = None
    """Since when some rule has lacked data (noData.after counts from here)."""
    healthy_since: datetime | None = None
    """Since when a downgraded agent has been healthy (auto recovery counts from here)."""
    disabled: Mark | None = None
    """Set while the agent is (or is being, or in dry run would be) scaled to zero."""
    downgraded: Mark | None = None
    """Set while the agent is (or is being, or in dry run would be) on a cheaper model."""
    changed_at: datetime | None = None
    """When the last workload change (restores included) was decided: one per cycle, even
    when a cycle is evaluated twice."""
    restored_at: datetime | None = None
    """When the agent was last brought back from zero replicas by the engine: it is not
    judged in that cycle (its samples predate the restore)."""
    probation: ProbationMemo | None = None
    """The verdict on the latest change on probation (spec.verify)."""
    rejected: Mapping[str, datetime] = field(default_factory=dict)
    """Model tiers a probation reverted on this agent, each with when: switchModel does not
    move the agent to one for verify.rejectFor from then."""

    @property
    def empty(self) -> bool:
        """Nothing worth storing."""
        return (
            not self.rules
            and self.probation is None
            and not self.rejected
            and self.no_data_since is None
            and self.healthy_since is None
            and self.disabled is None
            and self.downgraded is None
            and self.changed_at is None
            and self.restored_at is None
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict: what the operator stores in the workload's annotation."""
        out: dict[str, Any] = {"v": STATE_VERSION}
        if self.rules:
            out["rules"] = {name: rs.to_dict() for name, rs in sorted(self.rules.items())}
        if self.no_data_since is not None:
            out["noDataSince"] = _t(self.no_data_since)
        if self.healthy_since is not None:
            out["healthySince"] = _t(self.healthy_since)
        if self.disabled is not None:
            out["disabled"] = self.disabled.to_dict()
        if self.downgraded is not None:
            out["downgraded"] = self.downgraded.to_dict()
        if self.changed_at is not None:
            out["changedAt"] = _t(self.changed_at)
        if self.restored_at is not None:
            out["restoredAt"] = _t(self.restored_at)
        if self.probation is not None:
            out["probation"] = self.probation.to_dict()
        if self.rejected:
            out["rejected"] = {k: _t(v) for k, v in sorted(self.rejected.items())}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AgentState:
        """Read what :meth:`to_dict` wrote; state of another version reads as empty."""
        if d.get("v") != STATE_VERSION:
            return EMPTY_AGENT
        return cls(
            rules={k: RuleState.from_dict(v) for k, v in d.get("rules", {}).items()},
            no_data_since=_p(d.get("noDataSince")),
            healthy_since=_p(d.get("healthySince")),
            disabled=Mark.from_dict(d["disabled"]) if "disabled" in d else None,
            downgraded=Mark.from_dict(d["downgraded"]) if "downgraded" in d else None,
            changed_at=_p(d.get("changedAt")),
            restored_at=_p(d.get("restoredAt")),
            probation=ProbationMemo.from_dict(d["probation"]) if "probation" in d else None,
            rejected={k: t for k, v in d.get("rejected", {}).items() if (t := _p(v)) is not None},
        )


EMPTY_AGENT = AgentState()


@dataclass(frozen=True, slots=True)
class ActionStamp:
    """One workload change, kept for an hour for guardrails.maxActionsPerHour."""

    at: datetime
    episode: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return {"at": _t(self.at), "episode": self.episode, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ActionStamp:
        """Read what :meth:`to_dict` wrote."""
        at = _p(d["at"])
        assert at is not None
        return cls(at=at, episode=d["episode"], kind=d["kind"])


@dataclass(frozen=True, slots=True)
class SystemicEpisode:
    """A rule breached by enough of the fleet at once to be a shared outage."""

    since: datetime
    episode: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return {"since": _t(self.since), "episode": self.episode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SystemicEpisode:
        """Read what :meth:`to_dict` wrote."""
        since = _p(d["since"])
        assert since is not None
        return cls(since=since, episode=d["episode"])


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    """A firing notification that was sent and whose resolution is still owed."""

    rule: str
    agent: AgentId | None
    channels: tuple[str, ...]
    severity: Severity
    sent_at: datetime
    detail: str = ""
    """What the resolved message repeats (a regression's before/after numbers)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        out = {
            "rule": self.rule,
            "agent": None if self.agent is None else str(self.agent),
            "channels": list(self.channels),
            "severity": self.severity.value,
            "sentAt": _t(self.sent_at),
        }
        if self.detail:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoticeRecord:
        """Read what :meth:`to_dict` wrote."""
        sent_at = _p(d["sentAt"])
        assert sent_at is not None
        agent = d.get("agent")
        return cls(
            rule=d["rule"],
            agent=None if agent is None else parse_agent_id(agent),
            channels=tuple(d.get("channels", ())),
            severity=Severity(d.get("severity", Severity.MEDIUM.value)),
            sent_at=sent_at,
            detail=str(d.get("detail", "")),
        )


def parse_agent_id(text: str) -> AgentId:
    """``namespace/name`` → :class:`AgentId`."""
    namespace, _, name = text.partition("/")
    return AgentId(namespace, name)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Everything remembered between cycles for one policy (see the module docstring)."""

    agents: Mapping[AgentId, AgentState] = field(default_factory=dict)
    """Per agent; agents with nothing to remember are absent."""
    actions: tuple[ActionStamp, ...] = ()
    """Workload changes of the last hour."""
    systemic: Mapping[str, SystemicEpisode] = field(default_factory=dict)
    """Rules currently breached fleet-wide (and ``noData`` when data is missing fleet-wide)."""
    budget_period_start: datetime | None = None
    """Start of the calendar budget period the stages below belong to."""
    budget: Mapping[str, RuleState] = field(default_factory=dict)
    """Policy-scope budget stages (budget.soft, budget.hard) that fired in this period."""
    notices: Mapping[str, NoticeRecord] = field(default_factory=dict)
    """Firing notifications sent, by episode key, until their resolution is sent."""
    told: Mapping[str, datetime] = field(default_factory=dict)
    """Messages said once and never again (a failed prompt-optimization Job's), by key,
    with when: kept while the record they tell of is on a workload. Stored with the outbox,
    so that a restart neither loses nor repeats them."""

    def agent(self, agent: AgentId) -> AgentState:
        """The agent's state (empty when there is none)."""
        return self.agents.get(agent, EMPTY_AGENT)

    def changed_agents(self, other: PolicyState) -> set[AgentId]:
        """Agents whose stored state differs between ``self`` and ``other`` (cheap: unchanged
        agents share the same object)."""
        mine, theirs = self.agents, other.agents
        changed = {a for a, s in mine.items() if theirs.get(a) is not s and theirs.get(a) != s}
        changed.update(a for a in theirs if a not in mine)
        return changed

    def policy_changed(self, other: PolicyState) -> bool:
        """The policy part (everything but ``agents``) differs."""
        return (
            self.actions != other.actions
            or self.systemic != other.systemic
            or self.budget_period_start != other.budget_period_start
            or self.budget != other.budget
            or self.notices != other.notices
            or self.told != other.told
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyState):
            return NotImplemented
        if self is other:
            return True
        return not self.policy_changed(other) and not self.changed_agents(other)

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ storage

    def policy_to_dict(self) -> dict[str, Any]:
        """The policy part as a JSON-compatible dict."""
        out: dict[str, Any] = {"v": STATE_VERSION}
        if self.actions:
            out["actions"] = [a.to_dict() for a in self.actions]
        if self.systemic:
            out["systemic"] = {k: v.to_dict() for k, v in sorted(self.systemic.items())}
        if self.budget_period_start is not None:
            out["budgetPeriodStart"] = _t(self.budget_period_start)
        if self.budget:
            out["budget"] = {k: v.to_dict() for k, v in sorted(self.budget.items())}
        if self.notices:
            out["notices"] = {k: v.to_dict() for k, v in sorted(self.notices.items())}
        if self.told:
            out["told"] = {k: _t(v) for k, v in sorted(self.told.items())}
        return out

    def agents_to_dict(self) -> dict[str, dict[str, Any]]:
        """Per-agent parts, keyed ``namespace/name``."""
        return {str(a): s.to_dict() for a, s in sorted(self.agents.items())}

    def to_dict(self) -> dict[str, Any]:
        """Both parts in one JSON-compatible dict."""
        return {"policy": self.policy_to_dict(), "agents": self.agents_to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicyState:
        """Read what :meth:`to_dict` wrote."""
        agents = {parse_agent_id(k): v for k, v in d.get("agents", {}).items()}
        return cls.from_parts(d.get("policy"), agents)

    @classmethod
    def from_parts(
        cls, policy: Mapping[str, Any] | None, agents: Mapping[AgentId, Mapping[str, Any]]
    ) -> PolicyState:
        """Reassemble the state from the policy part and the per-agent parts the operator
        read from the workloads' annotations (either may be missing after a loss)."""
        agent_states = {a: AgentState.from_dict(d) for a, d in agents.items()}
        agent_states = {a: s for a, s in agent_states.items() if not s.empty}
        if policy is None or policy.get("v") != STATE_VERSION:
            return cls(agents=agent_states)
        return cls(
            agents=agent_states,
            actions=tuple(ActionStamp.from_dict(a) for a in policy.get("actions", ())),
            systemic={
                k: SystemicEpisode.from_dict(v) for k, v in policy.get("systemic", {}).items()
            },
            budget_period_start=_p(policy.get("budgetPeriodStart")),
            budget={k: RuleState.from_dict(v) for k, v in policy.get("budget", {}).items()},
            notices={k: NoticeRecord.from_dict(v) for k, v in policy.get("notices", {}).items()},
            told={k: t for k, v in policy.get("told", {}).items() if (t := _p(v)) is not None},
        )


def prune_actions(actions: Iterable[ActionStamp], since: datetime) -> tuple[ActionStamp, ...]:
    """Keep the stamps newer than ``since``."""
    return tuple(a for a in actions if a.at > since)
