"""One evaluation cycle of one policy: ``evaluate(policy, samples, prior, now) -> Outcome``.

The cycle reads top to bottom:

1. reconcile: compare what the engine decided with what the workloads show (the
   operator's records), confirm changes that landed, notice restores, and forget
   changes that never landed so they are decided again with the same episode key;
2. rules: each agent's verdict per rule and its state machine
   (idle → pending → firing → idle), with the no-data stance; disabled agents are frozen;
3. budget: spend, forecast and the soft/hard stages;
4. systemic: rules breached by enough of the fleet at once become one fleet episode;
5. remediation: the changes firing episodes still owe, strongest and worst first,
   through the guardrail chain, at most one per agent;
6. restore: auto recovery and the new budget period;
7. status, notifications (an episode's firing message when it starts, resolved when it
   ends) and the new state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from agentmedic.api.durations import format_duration
from agentmedic.api.types import (
    Action,
    AgentCounts,
    AgentPolicySpec,
    BudgetScope,
    NoDataMode,
    OnNewPeriod,
    RecoveryMode,
    Severity,
)
from agentmedic.engine.budget import (
    HARD,
    SOFT,
    StageInput,
    forecast,
    stage_evidence,
    stage_verdict,
)
from agentmedic.engine.conditions import (
    BREACH,
    CLEAR,
    UNKNOWN,
    CompiledRule,
    Evidence,
    compile_rule,
    severity_rank,
    strength,
)
from agentmedic.engine.guardrails import Candidate, Guard, evaluate_chain
from agentmedic.engine.inputs import PolicyInput, Workload, episode_key, episode_policy_uid
from agentmedic.engine.outcome import (
    AgentStatus,
    Decision,
    DecisionKind,
    Notification,
    Outcome,
    Restore,
    SpendReport,
)
from agentmedic.engine.periods import Period, budget_period, in_quiet_hours, spend_window
from agentmedic.engine.reasons import Reason
from agentmedic.engine.requirements import burn_key, spend_key
from agentmedic.engine.series import AgentId, Samples, SeriesKey
from agentmedic.engine.state import (
    EMPTY_AGENT,
    ActionStamp,
    AgentState,
    Mark,
    NoticeRecord,
    PolicyState,
    RuleState,
    SystemicEpisode,
    prune_actions,
)

__all__ = ["NO_DATA_RULE", "evaluate"]

NO_DATA_RULE = "noData"
"""The rule name of no-data notifications (per agent, or fleet-wide)."""

_EMPTY: Mapping[SeriesKey, float | None] = MappingProxyType({})
_HOUR = timedelta(hours=1)
_STAGE_SEVERITY = {SOFT: Severity.MEDIUM, HARD: Severity.HIGH}
_STAGE_REASON = {SOFT: Reason.BUDGET_SOFT_LIMIT, HARD: Reason.BUDGET_HARD_LIMIT}
_WORKLOAD_KINDS = ("scaleToZero", "switchModel", "promptOptimization")
_DONE_ALL = frozenset(_WORKLOAD_KINDS)
_ACTION_TEXT = {
    "scaleToZero": "scaled to zero",
    "switchModel": "switched model",
    "promptOptimization": "started a prompt-optimization Job",
}


def evaluate(
    policy: PolicyInput, samples: Samples, prior: PolicyState | None, now: datetime
) -> Outcome:
    """Decide what should happen to the policy's agents now.

    ``samples`` holds the series :func:`~agentmedic.engine.requirements` asked for (a
    missing agent or key is no data); ``prior`` is the state the previous cycle returned
    (None on the first cycle); ``now`` must be timezone-aware. Pure: no I/O, no clock.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    return _Cycle(policy, samples, prior if prior is not None else PolicyState(), now).run()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a cycle derives from the spec alone: compiled once per spec, not per cycle."""

    rules: tuple[CompiledRule, ...]
    canon: Mapping[SeriesKey, SeriesKey]
    """Each key of the samples to itself (see :func:`_plan`)."""
    stage_actions: Mapping[str, tuple[tuple[str, Action], ...]]
    known_rules: frozenset[str]
    retry_after: timedelta
    longest_window: timedelta


_PLANS: dict[int, tuple[AgentPolicySpec, _Plan]] = {}
_MAX_PLANS = 1024


def _plan(spec: AgentPolicySpec, canon: tuple[SeriesKey, ...]) -> _Plan:
    """The spec's plan, with the rules' series keys resolved to ``canon`` (the very key
    objects the samples use, so that lookups hit on identity).

    Memoised on the spec object (kept alive by the memo, so its id is not reused): an
    operator evaluates the same spec every interval and a backtest thousands of times,
    and compiling the rules was a tenth of a replay. Specs are frozen pydantic models
    that nothing changes in place, so the memo cannot go stale. The keys are those of the
    first cycle's samples: later cycles' keys are equal to them, if not the same objects
    (a calendar budget's spend key even changes every cycle), and equal keys find the
    same values, only without the identity shortcut.
    """
    hit = _PLANS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    index = {k: k for k in canon}
    stage_actions: dict[str, tuple[tuple[str, Action], ...]] = {SOFT: (), HARD: ()}
    if spec.budget is not None:
        for stage, limit in ((SOFT, spec.budget.soft), (HARD, spec.budget.hard)):
            if limit is not None:
                acts = [(x.kind, x) for x in limit.actions if x.kind in _WORKLOAD_KINDS]
                acts.sort(key=lambda ka: -strength(ka[0]))
                stage_actions[stage] = tuple(acts)
    plan = _Plan(
        rules=tuple(compile_rule(r, spec.agent_label, index) for r in spec.rules),
        canon=MappingProxyType(index),
        stage_actions=MappingProxyType(stage_actions),
        known_rules=frozenset(
            [r.name for r in spec.rules] + ([SOFT, HARD] if spec.budget is not None else [])
        ),
        retry_after=max(2 * spec.interval, timedelta(seconds=1)),
        longest_window=max(
            (c.window for r in spec.rules for c in (*r.all_of, *r.any_of)), default=timedelta(0)
        ),
    )
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(spec)] = (spec, plan)
    return plan


class _Agent:
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
        "restored_at",
        "retry",
        "rules",
        "stage_v",
        "status",
        "values",
        "verdicts",
        "workload",
    )

    def __init__(
        self,
        agent: AgentId,
        workload: Workload,
        values: Mapping[SeriesKey, float | None],
        prior: AgentState,
    ) -> None:
        self.agent = agent
        self.workload = workload
        self.values = values
        self.prior = prior
        self.rules: Mapping[str, RuleState] = prior.rules
        self.no_data_since = prior.no_data_since
        self.healthy_since = prior.healthy_since
        self.disabled = prior.disabled
        self.downgraded = prior.downgraded
        self.changed_at = prior.changed_at
        self.restored_at = prior.restored_at
        self.frozen = False
        self.external_zero = False
        self.lacks_data = False
        self.assume = False
        self.verdicts: list[int] = []
        self.retry: set[tuple[str, str]] = set()
        self.status = AgentStatus.HEALTHY
        self.figures: StageInput | None = None
        self.stage_v: tuple[int, int] = (UNKNOWN, UNKNOWN)

    def set_rule(self, name: str, rs: RuleState | None) -> None:
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
        p = self.prior
        if (
            self.rules is p.rules
            and self.disabled is p.disabled
            and self.downgraded is p.downgraded
            and self.no_data_since == p.no_data_since
            and self.healthy_since == p.healthy_since
            and self.changed_at == p.changed_at
            and self.restored_at == p.restored_at
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
        )


class _Cycle:
    def __init__(
        self, policy: PolicyInput, samples: Samples, prior: PolicyState, now: datetime
    ) -> None:
        self.policy = policy
        self.spec = spec = policy.spec
        self.samples = samples
        self.prior = prior
        self.now = now
        self.uid = policy.uid
        canon: tuple[SeriesKey, ...] = ()
        for inner in samples.values():
            if inner:
                canon = tuple(inner)
                break
        plan = _plan(spec, canon)
        self.rules: tuple[CompiledRule, ...] = plan.rules
        self.canon = plan.canon
        self.stage_actions = plan.stage_actions
        self.known_rules = plan.known_rules
        self.retry_after = plan.retry_after
        self.longest_window = plan.longest_window
        self.dry_run = spec.guardrails.dry_run
        self.quiet = in_quiet_hours(spec.guardrails.quiet_hours, now)
        self.work: dict[AgentId, _Agent] = {}
        self.breaching: list[list[_Agent]] = [[] for _ in self.rules]
        self.considered = 0
        self.decisions: list[Decision] = []
        self.stamps: list[ActionStamp] = []
        self.ended: dict[str, str] = {}
        self.escalations: dict[tuple[AgentId, str], tuple[str, str]] = {}
        self.decided: dict[tuple[AgentId, str], Decision] = {}
        self.held: dict[tuple[AgentId, str], Decision] = {}
        self.systemic: dict[str, SystemicEpisode] = {}
        # budget
        self.period: Period | None = None
        self.budget_states: dict[str, RuleState] = dict(prior.budget)
        self.policy_figures: StageInput | None = None
        self.policy_stage_v: tuple[int, int] = (UNKNOWN, UNKNOWN)
        self.spend: SpendReport | None = None
        self.notices: dict[str, NoticeRecord] = dict(prior.notices)
        self.no_data_channels: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the cycle

    def run(self) -> Outcome:
        samples_get = self.samples.get
        prior_get = self.prior.agents.get
        for agent, workload in self.policy.agents.items():
            a = _Agent(agent, workload, samples_get(agent) or _EMPTY, prior_get(agent, EMPTY_AGENT))
            self.work[agent] = a
            self._reconcile(a)
            if not a.frozen:
                self.considered += 1
                self._rules(a)
        for agent in self.prior.agents:
            if agent not in self.work:
                self._agent_gone(agent)
        if self.spec.budget is not None:
            self._budget()
        self._systemic()
        self._remediate()
        self._restore()
        counts = self._status()
        notifications = self._notifications()
        decisions = sorted(
            self.decisions,
            key=lambda d: (
                (-d.precedence[0], -d.precedence[1], -d.precedence[2]),
                d.agent,
                d.rule,
            ),
        )
        return Outcome(
            state=self._state(),
            decisions=decisions,
            notifications=notifications,
            agents={a.agent: a.status for a in self.work.values()},
            counts=counts,
            spend=self.spend,
        )

    # ------------------------------------------------------------------ 1. reconcile

    def _reconcile(self, a: _Agent) -> None:
        if a.rules and not self.known_rules.issuperset(a.rules):
            # Rules removed from the spec: forget them (their messages resolve).
            for name in [n for n in a.rules if n not in self.known_rules]:
                a.set_rule(name, None)
        self._reconcile_disabled(a)
        self._reconcile_downgraded(a)
        w = a.workload
        if a.restored_at == self.now or (a.disabled is not None and not a.disabled.dry_run):
            # A disabled agent has no executions: its rules would see no data, which must
            # neither resolve its episode nor count against it. Hold every rule as it is.
            a.frozen = True
            a.no_data_since = None
        elif w.replicas == 0:
            # Scaled to zero by someone else (or KEDA idling it): nothing runs, nothing to judge.
            a.frozen = True
            a.external_zero = True
            a.no_data_since = None

    def _reconcile_disabled(self, a: _Agent) -> None:
        m, rec, now = a.disabled, a.workload.disabled, self.now
        if m is not None and not m.dry_run and not m.confirmed:
            if rec is not None and rec.episode == m.episode:
                a.disabled = replace(m, confirmed=True)
                return
            if now - m.at < self.retry_after:
                return  # decided recently; the record may not have reached us yet
            self._forget(a, m, "scaleToZero")
            a.disabled = m = None
        if rec is not None:
            if m is None or m.episode != rec.episode:
                a.disabled = Mark(rec.episode, rec.rule, rec.at, confirmed=True)
            return
        if m is not None and m.confirmed:
            a.disabled = None
            if m.restoring_at is not None:
                # Our own restore (auto recovery or a new budget period) ends the episode
                # that disabled the agent: if it fails again, that is a new episode. A
                # person's restore does not: the episode goes on, acted, until it clears.
                rs = a.rules.get(m.rule)
                if rs is not None and rs.episode == m.episode:
                    a.set_rule(m.rule, rs.idle())
                    self.ended[m.episode] = Reason.RESTORED

    def _reconcile_downgraded(self, a: _Agent) -> None:
        m, rec, now, w = a.downgraded, a.workload.downgraded, self.now, a.workload
        if m is not None and not m.dry_run and not m.confirmed:
            if rec is not None and rec.episode == m.episode:
                a.downgraded = m = replace(m, confirmed=True, to_model=w.model or m.to_model)
            elif now - m.at < self.retry_after:
                return
            else:
                self._forget(a, m, "switchModel")
                a.downgraded = m = None
        if rec is not None:
            if m is None or m.episode != rec.episode:
                a.downgraded = Mark(
                    rec.episode,
                    rec.rule,
                    rec.at,
                    confirmed=True,
                    from_model=rec.previous_model,
                    to_model=w.model,
                )
                return
            if m.restoring_at is not None and w.model is not None and w.model == m.restore_to:
                # One tier back up landed; the next step waits another healthyFor.
                a.downgraded = replace(m, to_model=w.model, restoring_at=None, restore_to=None)
                a.healthy_since = now
            elif w.model is not None and w.model != m.to_model:
                a.downgraded = replace(m, to_model=w.model)
            return
        if m is not None and m.confirmed:
            a.downgraded = None
            a.healthy_since = None

    def _forget(self, a: _Agent, m: Mark, kind: str) -> None:
        """A change never showed up on the workload: decide it again (same episode key)."""
        rs = a.rules.get(m.rule)
        if rs is not None and rs.episode == m.episode:
            # Only the change that never landed is owed again: after a scale to zero the
            # weaker actions of the episode stay moot.
            a.set_rule(m.rule, replace(rs, done=rs.done - {kind}))
            a.retry.add((m.rule, kind))

    def _agent_gone(self, agent: AgentId) -> None:
        for rs in self.prior.agents[agent].rules.values():
            if rs.episode is not None:
                self.ended[rs.episode] = Reason.AGENT_GONE

    # ------------------------------------------------------------------ 2. rules

    def _rules(self, a: _Agent) -> None:
        values, rules_state = a.values, a.rules
        verdicts = a.verdicts
        lacks = False
        if rules_state:
            for r in self.rules:
                rs = rules_state.get(r.name)
                v = r.verdict(values, rs is not None and rs.firing_since is not None)
                lacks = lacks or v == UNKNOWN
                verdicts.append(v)
        else:
            for r in self.rules:
                v = r.verdict(values, False)
                lacks = lacks or v == UNKNOWN
                verdicts.append(v)
        now = self.now
        if lacks:
            a.lacks_data = True
            if a.no_data_since is None:
                a.no_data_since = now
            nd = self.spec.no_data
            a.assume = nd.mode == NoDataMode.BREACH and now - a.no_data_since >= nd.after
        elif a.no_data_since is not None:
            a.no_data_since = None
        if not rules_state and BREACH not in verdicts and not a.assume:
            return  # the common case: nothing pending, nothing breaching
        for i, r in enumerate(self.rules):
            v = verdicts[i]
            if v == UNKNOWN and a.assume:
                v = verdicts[i] = BREACH
            rs = rules_state.get(r.name)
            if rs is None and v != BREACH:
                continue
            new = self._advance(a, r, rs, v)
            if new is not rs:
                a.set_rule(r.name, new)
            if v == BREACH:
                self.breaching[i].append(a)

    def _advance(
        self, a: _Agent, r: CompiledRule, rs: RuleState | None, v: int
    ) -> RuleState | None:
        now = self.now
        if rs is None or rs.pending_since is None:  # idle
            if v != BREACH:
                return rs
            if r.for_ <= timedelta(0):
                return self._fire(a, r, rs, now)
            return RuleState(
                pending_since=now,
                last_action_at=None if rs is None else rs.last_action_at,
                last_action_episode=None if rs is None else rs.last_action_episode,
            )
        if rs.firing_since is None:  # pending
            if v == BREACH:
                if now - rs.pending_since >= r.for_:
                    return self._fire(a, r, rs, rs.pending_since)
                return rs
            if v == CLEAR:
                return rs.idle()
            return rs  # no data: hold, never fire on missing data
        # firing
        if v == BREACH:
            return rs if rs.clear_since is None else replace(rs, clear_since=None)
        if v == CLEAR:
            since = rs.clear_since or now
            if now - since >= r.recover_for:
                assert rs.episode is not None
                self.ended.setdefault(rs.episode, Reason.RESOLVED)
                return rs.idle()
            return rs if rs.clear_since is not None else replace(rs, clear_since=now)
        return rs  # no data: hold; a missing metric is not a recovery

    def _fire(self, a: _Agent, r: CompiledRule, rs: RuleState | None, start: datetime) -> RuleState:
        return RuleState(
            pending_since=start,
            firing_since=self.now,
            episode=episode_key(self.uid, a.agent, r.name, start),
            systemic=rs is not None and rs.systemic,
            last_action_at=None if rs is None else rs.last_action_at,
            last_action_episode=None if rs is None else rs.last_action_episode,
        )

    # ------------------------------------------------------------------ 3. budget

    def _budget(self) -> None:
        budget = self.spec.budget
        assert budget is not None
        now = self.now
        self.period = period = budget_period(budget, now)
        window = spend_window(budget, now)
        skey, bkey = spend_key(self.spec, now), burn_key(self.spec)
        assert skey is not None
        assert bkey is not None
        skey, bkey = self.canon.get(skey, skey), self.canon.get(bkey, bkey)
        new_period = not period.rolling and self.prior.budget_period_start != period.start
        if new_period:
            for old in self.budget_states.values():
                if old.episode is not None:
                    self.ended[old.episode] = Reason.PERIOD_ENDED
            self.budget_states = {}
        # The forecast and crossing arithmetic of budget.forecast(), inlined for the fleet.
        fw = budget.forecast_window.total_seconds()
        per_second = 1 / fw if fw > 0 else 0.0
        if period.rolling:
            horizon = period.length.total_seconds()
            spent_counts = 0.0
        else:
            horizon = max(0.0, (period.end - now).total_seconds())
            spent_counts = 1.0
        limit = budget.limit_usd
        soft_at = limit * budget.soft.at_percent / 100 if budget.soft is not None else math.inf
        soft_forecast = budget.soft is not None and budget.soft.forecast
        total: float | None = None
        total_burn: float | None = None
        per_agent: dict[AgentId, float] = {}
        sum_forecast: float | None = None
        earliest: float | None = None
        agent_scope = budget.scope == BudgetScope.AGENT
        has_soft, has_hard = budget.soft is not None, budget.hard is not None
        for a in self.work.values():
            get = a.values.get
            spent, burn = get(skey), get(bkey)
            if spent is not None and spent == spent:
                per_agent[a.agent] = spent
                total = spent + (total or 0.0)
            else:
                spent = None
            fc: float | None = None
            crossing: datetime | None = None
            if burn is not None and burn == burn:
                total_burn = burn + (total_burn or 0.0)
                if spent is not None:
                    rate = burn * per_second
                    fc = spent * spent_counts + rate * horizon
                    sum_forecast = fc + (sum_forecast or 0.0)
                    if spent < limit and rate > 0:
                        seconds = (limit - spent) / rate
                        if seconds <= horizon:
                            crossing = now + timedelta(seconds=seconds)
                            if earliest is None or seconds < earliest:
                                earliest = seconds
            else:
                burn = None
            a.figures = StageInput(spent, burn, fc, window, crossing)
            if new_period:
                for stage in (SOFT, HARD):
                    rs = a.rules.get(stage)
                    if rs is not None and rs.episode is not None:
                        self.ended[rs.episode] = Reason.PERIOD_ENDED
                        a.set_rule(stage, rs.idle())
            if not agent_scope:
                continue
            if spent is None:
                soft_v = hard_v = UNKNOWN
            else:
                # A rolling window's spend jitters with every sample: a firing stage ends
                # only once spend is clearly below its threshold (ROLLING_HYSTERESIS).
                soft_k = _hold_factor(period, a.rules.get(SOFT))
                hard_k = _hold_factor(period, a.rules.get(HARD))
                hard_v = BREACH if has_hard and spent >= limit * hard_k else CLEAR
                soft_v = (
                    BREACH
                    if has_soft
                    and (
                        spent >= soft_at * soft_k
                        or (soft_forecast and fc is not None and fc >= limit * soft_k)
                    )
                    else CLEAR
                )
            a.stage_v = (soft_v, hard_v)
            rules = a.rules
            for stage, v, on in ((SOFT, soft_v, has_soft), (HARD, hard_v, has_hard)):
                if not on:
                    continue
                rs = rules.get(stage)
                if rs is None and v != BREACH:
                    continue
                new = self._advance_stage(a.agent, stage, rs, v, period)
                if new is not rs:
                    a.set_rule(stage, new)
        crosses = None if earliest is None else now + timedelta(seconds=earliest)
        if agent_scope:
            self.spend = SpendReport(
                period.start,
                period.end,
                total or 0.0,
                limit,
                sum_forecast,
                crosses,
                per_agent,
            )
            return
        fc, crosses = forecast(budget, period, now, total, total_burn)
        figures = StageInput(total, total_burn, fc, window, crosses)
        self.policy_figures = figures
        self.spend = SpendReport(
            period.start, period.end, total or 0.0, limit, fc, crosses, per_agent
        )
        verdicts = []
        for stage, on in ((SOFT, has_soft), (HARD, has_hard)):
            if not on:
                verdicts.append(CLEAR)
                continue
            v = stage_verdict(budget, stage, figures)
            held = self.budget_states.get(stage)
            if v == CLEAR and _hold_factor(period, held) < 1.0 and figures.spent is not None:
                threshold = limit if stage == HARD else soft_at
                if figures.spent >= threshold * ROLLING_HYSTERESIS:
                    v = BREACH
            verdicts.append(v)
            policy_rs = self._advance_stage(None, stage, self.budget_states.get(stage), v, period)
            if policy_rs is None:
                self.budget_states.pop(stage, None)
            else:
                self.budget_states[stage] = policy_rs
            for a in self.work.values():
                self._mirror_stage(a, stage, policy_rs)
        self.policy_stage_v = (verdicts[0], verdicts[1])
        for a in self.work.values():
            a.stage_v = self.policy_stage_v

    def _advance_stage(
        self, agent: AgentId | None, stage: str, rs: RuleState | None, v: int, period: Period
    ) -> RuleState | None:
        firing = rs is not None and rs.firing_since is not None
        if not firing:
            if v != BREACH:
                return rs
            start = self.now if period.rolling else period.start
            return RuleState(
                pending_since=start,
                firing_since=self.now,
                episode=episode_key(self.uid, agent, stage, start),
                last_action_at=None if rs is None else rs.last_action_at,
                last_action_episode=None if rs is None else rs.last_action_episode,
            )
        assert rs is not None
        assert rs.episode is not None
        if period.rolling and v == CLEAR:
            self.ended[rs.episode] = Reason.PERIOD_ENDED
            return rs.idle()
        return rs

    def _mirror_stage(self, a: _Agent, stage: str, policy_rs: RuleState | None) -> None:
        """Policy scope: each agent follows the policy's stage, with its own episode key."""
        rs = a.rules.get(stage)
        firing = policy_rs is not None and policy_rs.firing_since is not None
        if firing and (rs is None or rs.firing_since is None):
            assert policy_rs is not None
            assert policy_rs.pending_since is not None
            start = policy_rs.pending_since
            a.set_rule(
                stage,
                RuleState(
                    pending_since=start,
                    firing_since=self.now,
                    episode=episode_key(self.uid, a.agent, stage, start),
                    last_action_at=None if rs is None else rs.last_action_at,
                    last_action_episode=None if rs is None else rs.last_action_episode,
                ),
            )
        elif not firing and rs is not None and rs.firing_since is not None:
            assert rs.episode is not None
            self.ended[rs.episode] = Reason.PERIOD_ENDED
            a.set_rule(stage, rs.idle())

    # ------------------------------------------------------------------ 4. systemic

    def _systemic(self) -> None:
        g = self.spec.guardrails
        n = self.considered
        for i, r in enumerate(self.rules):
            hits = self.breaching[i]
            active = n >= g.systemic_min_agents and len(hits) * 100 >= g.systemic_percent * n
            prior = self.prior.systemic.get(r.name)
            if active:
                self.systemic[r.name] = prior or SystemicEpisode(
                    self.now, episode_key(self.uid, None, r.name, self.now)
                )
                for a in hits:
                    rs = a.rules.get(r.name)
                    if rs is None or rs.systemic:
                        continue
                    if rs.firing_since is None or rs.firing_since == self.now:
                        a.set_rule(r.name, replace(rs, systemic=True))
            elif prior is not None:
                self.ended[prior.episode] = Reason.OUTAGE_OVER
        # When an outage ends, the breaches it covered start over: an agent still breaching
        # begins a new breach now and needs a fresh `for` before anything is done to it.
        ended = {name for name in self.prior.systemic if name not in self.systemic}
        if not ended:
            return
        for i, r in enumerate(self.rules):
            if r.name not in ended:
                continue
            breaching = {a.agent for a in self.breaching[i]}
            for a in self.work.values():
                rs = a.rules.get(r.name)
                if rs is None or not rs.systemic:
                    continue
                fresh = rs.idle()
                if a.agent in breaching:
                    fresh = self._advance(a, r, fresh, BREACH)
                a.set_rule(r.name, fresh)

    # ------------------------------------------------------------------ 5. remediation

    def _candidates(self) -> list[Candidate]:
        out: list[Candidate] = []
        budget = self.spec.budget
        now = self.now
        for a in self.work.values():
            if not a.rules or a.frozen or a.disabled is not None:
                continue  # nothing firing; or disabled (or in dry run would be): nothing to change
            for i, r in enumerate(self.rules):
                rs = a.rules.get(r.name)
                if rs is None or rs.firing_since is None or rs.systemic or not r.workload_actions:
                    continue
                if a.verdicts[i] != BREACH:
                    continue  # act only on present evidence, never on a held state
                badness = -1.0
                for kind, action in r.workload_actions:
                    if kind in rs.done:
                        continue
                    if badness < 0:
                        badness = r.badness(a.values)

                    def build(a: _Agent = a, r: CompiledRule = r, rs: RuleState = rs) -> Evidence:
                        # hysteresis applies unless the rule fired in this very cycle
                        firing = rs.firing_since != now
                        return r.evidence(a.values, firing, a.assume, rs.pending_since, now)

                    c = self._candidate(a, r.name, kind, action, r.severity, rs, build)
                    c.badness = badness
                    out.append(c)
            if budget is None:
                continue
            for index, stage in enumerate((SOFT, HARD)):
                rs = a.rules.get(stage)
                if rs is None or rs.firing_since is None or a.stage_v[index] != BREACH:
                    continue
                figures = a.figures if budget.scope == BudgetScope.AGENT else self.policy_figures
                assert figures is not None
                mine = (a.figures.spent if a.figures is not None else None) or 0.0

                def build_stage(
                    stage: str = stage, figures: StageInput = figures, rs: RuleState = rs
                ) -> Evidence:
                    return stage_evidence(budget, stage, figures, rs.pending_since, now)

                for kind, action in self.stage_actions[stage]:
                    if kind in rs.done:
                        continue
                    c = self._candidate(
                        a, stage, kind, action, _STAGE_SEVERITY[stage], rs, build_stage
                    )
                    c.reason_code = _STAGE_REASON[stage]
                    if stage == SOFT:
                        c.note = figures.describe_crossing(budget.limit_usd)
                    c.badness = mine / budget.limit_usd
                    out.append(c)
        out.sort(key=lambda c: (-c.strength, -c.severity_rank, -c.badness, c.agent, c.rule))
        return out

    def _candidate(
        self,
        a: _Agent,
        rule: str,
        kind: str,
        action: Action,
        severity: Severity,
        rs: RuleState,
        build: Callable[[], Evidence],
    ) -> Candidate:
        assert rs.episode is not None
        return Candidate(
            agent=a.agent,
            rule=rule,
            kind=kind,
            action=action,
            severity=severity,
            severity_rank=severity_rank(severity),
            episode=rs.episode,
            badness=0.0,
            build_evidence=build,
            rule_state=rs,
            reason_code=Reason.RULE_FIRING,
            retry=(rule, kind) in a.retry,
        )

    def _remediate(self) -> None:
        candidates = self._candidates()
        if not candidates:
            return
        g = self.spec.guardrails
        recent = {(s.episode, s.kind) for s in self.prior.actions if s.at > self.now - _HOUR}
        guard = Guard(
            now=self.now,
            quiet=self.quiet,
            cooldown=g.cooldown,
            max_per_hour=g.max_actions_per_hour,
            max_disabled=math.floor(len(self.work) * g.max_disabled_percent / 100),
            # An agent restored in this very cycle frees its slot from the next cycle on,
            # so evaluating the cycle again after the restore landed decides the same.
            disabled=sum(
                1 for a in self.work.values() if a.disabled is not None or a.restored_at == self.now
            ),
            recent=recent,
            systemic_rules=frozenset(self.systemic),
        )
        for c in candidates:
            a = self.work[c.agent]
            if a.changed_at == self.now:
                continue  # one workload change per agent per cycle; the rest wait
            if a.disabled is not None:
                continue
            rs = a.rules[c.rule]
            c.rule_state = rs
            target: str | None = None
            if c.kind == "switchModel":
                target, infeasible = self._switch_target(a, c.action)
                if infeasible is not None:
                    reason, message = infeasible
                    a.set_rule(c.rule, replace(rs, done=rs.done | {c.kind}))
                    self.escalations[(c.agent, c.rule)] = (reason, message)
                    self._emit(c, a, suppressed=(reason, message))
                    continue
            stopped = evaluate_chain(c, guard)
            if stopped is not None:
                if rs.suppressed != stopped[0]:
                    a.set_rule(c.rule, replace(rs, suppressed=stopped[0]))
                    self._emit(c, a, suppressed=stopped)
                continue
            decision = self._emit(c, a, to_model=target)
            self.decided.setdefault((c.agent, c.rule), decision)
            done = _DONE_ALL if c.kind == "scaleToZero" else rs.done | {c.kind}
            a.set_rule(
                c.rule,
                replace(
                    rs,
                    done=done,
                    suppressed=None,
                    last_action_at=self.now,
                    last_action_episode=c.episode,
                ),
            )
            if (c.episode, c.kind) not in guard.recent:
                self.stamps.append(ActionStamp(self.now, c.episode, c.kind))
                guard.recent.add((c.episode, c.kind))
            if c.kind == "scaleToZero":
                a.disabled = Mark(c.episode, c.rule, self.now, dry_run=self.dry_run)
                guard.disabled += 1
            elif c.kind == "switchModel":
                prev = a.downgraded
                a.downgraded = Mark(
                    c.episode,
                    c.rule,
                    self.now,
                    dry_run=self.dry_run,
                    from_model=prev.from_model if prev is not None else a.workload.model,
                    to_model=target,
                )
            a.changed_at = self.now

    def _switch_target(
        self, a: _Agent, action: Action
    ) -> tuple[str | None, tuple[str, str] | None]:
        model = self.spec.model
        if model is None:
            return None, (Reason.NO_MODEL_TIERS, "switchModel needs spec.model and its tiers")
        tiers = model.tiers
        current = a.workload.model
        if current is None or current not in tiers:
            shown = "unknown" if current is None else repr(current)
            return None, (
                Reason.UNKNOWN_MODEL,
                f"current model {shown} is not one of spec.model.tiers "
                f"({', '.join(tiers)}); not switching",
            )
        at = tiers.index(current)
        wanted = action.switch_model.to if action.switch_model is not None else None
        if wanted is not None and wanted in tiers:
            if tiers.index(wanted) <= at:
                return None, (
                    Reason.ALREADY_CHEAPEST,
                    f"already on {current}, at or below the requested tier {wanted}; escalate",
                )
            return wanted, None
        if at + 1 >= len(tiers):
            return None, (
                Reason.ALREADY_CHEAPEST,
                f"already on the cheapest tier {current}; a person must decide what next",
            )
        return tiers[at + 1], None

    def _emit(
        self,
        c: Candidate,
        a: _Agent,
        *,
        suppressed: tuple[str, str] | None = None,
        to_model: str | None = None,
    ) -> Decision:
        kind = DecisionKind(c.kind)
        what = {
            DecisionKind.SCALE_TO_ZERO: "scale to zero",
            DecisionKind.SWITCH_MODEL: (
                f"switch model {a.workload.model} → {to_model}" if to_model else "switch model"
            ),
            DecisionKind.PROMPT_OPTIMIZATION: "start a prompt-optimization Job",
        }[kind]
        head = "rule" if not c.rule.startswith("budget.") else "budget stage"
        reason = f"{head} {c.rule} firing: {c.evidence.describe()}{c.note}; {what}"
        if c.retry:
            reason += " (again: the earlier decision was not observed on the workload)"
        if suppressed is not None:
            reason += f" — not done: {suppressed[1]}"
        elif self.dry_run:
            reason += " (dry run: nothing changed)"
        decision = Decision(
            kind=kind,
            agent=c.agent,
            workload=f"{a.workload.kind}/{a.workload.name or c.agent.name}",
            rule=c.rule,
            severity=c.severity,
            episode=c.episode,
            reason_code=Reason.NOT_YET_APPLIED if c.retry else c.reason_code,
            reason=reason,
            evidence=c.evidence,
            at=self.now,
            dry_run=self.dry_run,
            suppressed_by=None if suppressed is None else suppressed[0],
            from_model=a.workload.model if kind == DecisionKind.SWITCH_MODEL else None,
            to_model=to_model,
            prompt_optimization=(
                c.action.prompt_optimization if kind == DecisionKind.PROMPT_OPTIMIZATION else None
            ),
            badness=c.badness,
        )
        self.decisions.append(decision)
        if suppressed is not None:
            self.held.setdefault((c.agent, c.rule), decision)
        return decision

    # ------------------------------------------------------------------ 6. restore

    def _restore(self) -> None:
        for a in self.work.values():
            if a.changed_at == self.now:
                continue
            if a.disabled is not None:
                self._restore_disabled(a)
            elif a.downgraded is not None:
                self._restore_downgraded(a)

    def _ours(self, m: Mark) -> bool:
        return m.confirmed and not m.dry_run and episode_policy_uid(m.episode) == self.uid

    def _restoring(self, m: Mark) -> bool:
        return m.restoring_at is not None and self.now - m.restoring_at < self.retry_after

    def _budget_over(self, a: _Agent, m: Mark) -> Evidence | None:
        """Evidence that the budget episode behind ``m`` is over, when onNewPeriod restores."""
        budget = self.spec.budget
        if budget is None or budget.on_new_period != OnNewPeriod.RESTORE:
            return None
        rs = a.rules.get(m.rule)
        if rs is not None and rs.firing_since is not None and rs.episode == m.episode:
            return None
        since = self.period.start if self.period is not None else self.now
        return Evidence("all", (), since, timedelta(0), self.now)

    def _restore_disabled(self, a: _Agent) -> None:
        m = a.disabled
        assert m is not None
        if not self._ours(m) or self._restoring(m):
            return
        recovery = self.spec.recovery
        if m.rule.startswith("budget."):
            evidence = self._budget_over(a, m)
            code = Reason.BUDGET_PERIOD_ENDED
            why = f"the budget episode that disabled it ({m.rule}) is over"
        else:
            # Down for healthyFor, and at least for the longest window of the rules: a
            # restored agent must never be judged again on data from before it was disabled.
            wait = max(recovery.healthy_for, self.longest_window)
            if recovery.mode != RecoveryMode.AUTO or self.now - m.at < wait:
                return  # the common case for a disabled agent: not yet
            evidence = Evidence("all", (), m.at, wait, self.now)
            code = Reason.AUTO_RECOVERY
            why = (
                f"disabled by {m.rule} for {format_duration(self.now - m.at)} "
                f"(recovery.healthyFor {format_duration(recovery.healthy_for)}, longest "
                f"window {format_duration(self.longest_window)}); "
                "restoring to see whether it recovered"
            )
        if evidence is None:
            return
        self._emit_restore(a, m, Restore(replicas=True), code, why, evidence, disabled=True)

    def _restore_downgraded(self, a: _Agent) -> None:
        m = a.downgraded
        assert m is not None
        if not self._ours(m) or self._restoring(m):
            return
        recovery = self.spec.recovery
        current = a.workload.model or m.to_model
        if m.rule.startswith("budget."):
            evidence = self._budget_over(a, m)
            if evidence is None:
                return
            restore = Restore(model=m.from_model, complete=True)
            code = Reason.BUDGET_PERIOD_ENDED
            why = (
                f"the budget episode that downgraded it ({m.rule}) is over; back to {m.from_model}"
            )
        else:
            if recovery.mode != RecoveryMode.AUTO or a.healthy_since is None:
                return
            if self.now - a.healthy_since < recovery.healthy_for:
                return
            if any(
                (rs := a.rules.get(s)) is not None and rs.firing_since is not None
                for s in (SOFT, HARD)
            ):
                return  # stepping up while the budget is spent would only be undone again
            evidence = Evidence("all", (), a.healthy_since, recovery.healthy_for, self.now)
            restore = self._step_up(current, m.from_model)
            code = Reason.AUTO_RECOVERY
            why = (
                f"healthy for {format_duration(self.now - a.healthy_since)}; "
                f"model {current} → {restore.model}"
            )
        self._emit_restore(a, m, restore, code, why, evidence, disabled=False)

    def _step_up(self, current: str | None, original: str | None) -> Restore:
        tiers = self.spec.model.tiers if self.spec.model is not None else []
        if current in tiers and original in tiers:
            assert current is not None
            assert original is not None
            at, home = tiers.index(current), tiers.index(original)
            if at - 1 > home:
                return Restore(model=tiers[at - 1], complete=False)
        return Restore(model=original, complete=True)

    def _emit_restore(
        self,
        a: _Agent,
        m: Mark,
        restore: Restore,
        code: str,
        why: str,
        evidence: Evidence,
        *,
        disabled: bool,
    ) -> None:
        suppressed: str | None = None
        if self.quiet:
            suppressed = Reason.QUIET_HOURS
            why += " — not done: inside quiet hours, the restore waits for the window to end"
        elif self.dry_run:
            why += " (dry run: nothing changed)"
        decision = Decision(
            kind=DecisionKind.RESTORE,
            agent=a.agent,
            workload=f"{a.workload.kind}/{a.workload.name or a.agent.name}",
            rule=m.rule,
            severity=Severity.INFO,
            episode=m.episode,
            reason_code=code,
            reason=why,
            evidence=evidence,
            at=self.now,
            dry_run=self.dry_run,
            suppressed_by=suppressed,
            restore=restore,
        )
        marker = suppressed or (Reason.DRY_RUN if self.dry_run else None)
        if marker is not None:
            # Nothing will change, so nothing will be observed: report once, then wait.
            if m.suppressed == marker:
                return
            new = replace(m, suppressed=marker)
        else:
            new = replace(m, restoring_at=self.now, restore_to=restore.model, suppressed=None)
            a.changed_at = self.now
            if restore.replicas:
                # Evaluated again in this same cycle, the agent must not be judged on samples
                # taken while it was down.
                a.restored_at = self.now
        if disabled:
            a.disabled = new
        else:
            a.downgraded = new
        self.decisions.append(decision)

    # ------------------------------------------------------------------ 7. status, notify

    def _status(self) -> AgentCounts:
        counts = dict.fromkeys(AgentStatus, 0)
        auto = self.spec.recovery.mode == RecoveryMode.AUTO
        for a in self.work.values():
            # Dry-run marks are virtual: they last as long as their episode.
            for attr in ("disabled", "downgraded"):
                m: Mark | None = getattr(a, attr)
                if m is not None and m.dry_run:
                    rs = a.rules.get(m.rule)
                    if rs is None or rs.episode != m.episode:
                        setattr(a, attr, None)
            firing = pending = False
            for name, rs in a.rules.items():
                if rs.pending_since is None or name.startswith("budget."):
                    continue
                if rs.firing_since is not None:
                    firing = True
                else:
                    pending = True
            if a.disabled is not None and not a.disabled.dry_run:
                status = AgentStatus.DISABLED
            elif firing:
                status = AgentStatus.BREACHING
            elif pending:
                status = AgentStatus.PENDING
            elif a.downgraded is not None and not a.downgraded.dry_run:
                status = AgentStatus.DOWNGRADED
            elif a.lacks_data or a.external_zero:
                status = AgentStatus.NO_DATA
            else:
                status = AgentStatus.HEALTHY
            a.status = status
            counts[status] += 1
            if auto and status == AgentStatus.DOWNGRADED and not a.lacks_data:
                if a.healthy_since is None:
                    a.healthy_since = self.now
            else:
                a.healthy_since = None
        return AgentCounts(
            total=len(self.work),
            healthy=counts[AgentStatus.HEALTHY],
            pending=counts[AgentStatus.PENDING],
            breaching=counts[AgentStatus.BREACHING],
            disabled=counts[AgentStatus.DISABLED],
            downgraded=counts[AgentStatus.DOWNGRADED],
            no_data=counts[AgentStatus.NO_DATA],
        )

    def _notifications(self) -> list[Notification]:
        desired: dict[str, tuple[str, _Agent | None, int | str]] = {}
        rule_index = {r.name: i for i, r in enumerate(self.rules)}
        budget = self.spec.budget
        stage_channels: dict[str, tuple[str, ...]] = {}
        if budget is not None:
            for stage, limit in ((SOFT, budget.soft), (HARD, budget.hard)):
                if limit is not None:
                    stage_channels[stage] = _channels(limit.actions)
        per_agent_budget = budget is not None and budget.scope == BudgetScope.AGENT
        for a in self.work.values():
            for name, rs in a.rules.items():
                if rs.firing_since is None or rs.systemic or rs.episode is None:
                    continue
                if name.startswith("budget."):
                    if per_agent_budget and stage_channels.get(name):
                        desired[rs.episode] = ("stage", a, name)
                    continue
                i = rule_index.get(name)
                if i is not None and self.rules[i].channels:
                    desired[rs.episode] = ("rule", a, i)
        if budget is not None and not per_agent_budget:
            for stage, rs in self.budget_states.items():
                if rs.firing_since is not None and rs.episode and stage_channels.get(stage):
                    desired[rs.episode] = ("stage", None, stage)
        for name, ep in self.systemic.items():
            i = rule_index[name]
            if self.rules[i].channels:
                desired[ep.episode] = ("systemic", None, i)
        self._no_data_notices(desired)

        out: list[Notification] = []
        notices = dict(self.prior.notices)
        renotify = {c.name: c.renotify_after for c in self.spec.notifications.channels}
        for key, (what, who, ref) in desired.items():
            known = notices.get(key)
            if known is not None:
                # A still-firing episode is said again once the soonest renotifyAfter of its
                # channels has passed; each channel's own renotifyAfter and rate limit are
                # the notifier's to apply.
                due = min((renotify[c] for c in known.channels if c in renotify), default=None)
                if due is None or self.now - known.sent_at < due:
                    continue
            n = self._firing(key, what, who, ref, stage_channels)
            if n is None:
                continue
            out.append(n)
            notices[key] = NoticeRecord(n.rule, n.agent, n.channels, n.severity, self.now)
        for key, rec in self.prior.notices.items():
            if key in desired:
                continue
            del notices[key]
            reason = self.ended.get(key)
            if reason is None:
                if rec.agent is not None and rec.agent not in self.work:
                    reason = Reason.AGENT_GONE
                elif rec.rule == NO_DATA_RULE:
                    reason = Reason.DATA_RETURNED
                else:
                    reason = Reason.RESOLVED
            out.append(
                Notification(
                    channels=rec.channels,
                    episode=key,
                    agent=rec.agent,
                    rule=rec.rule,
                    severity=rec.severity,
                    state="resolved",
                    summary=_resolved_summary(rec, reason),
                    reason_code=reason,
                    dry_run=self.dry_run,
                    at=self.now,
                )
            )
        self.notices = notices
        return out

    def _no_data_notices(self, desired: dict[str, tuple[str, _Agent | None, int | str]]) -> None:
        nd = self.spec.no_data
        channels = tuple(nd.channels)
        if not channels and nd.mode == NoDataMode.NOTIFY:
            channels = tuple(dict.fromkeys(ch for r in self.rules for ch in r.channels))
        self.no_data_channels = channels
        if not channels:
            return
        late = [
            a
            for a in self.work.values()
            if a.no_data_since is not None and self.now - a.no_data_since >= nd.after
        ]
        g = self.spec.guardrails
        n = self.considered
        fleet = n >= g.systemic_min_agents and len(late) * 100 >= g.systemic_percent * n
        prior = self.prior.systemic.get(NO_DATA_RULE)
        if fleet and late:
            ep = prior or SystemicEpisode(
                self.now, episode_key(self.uid, None, NO_DATA_RULE, self.now)
            )
            self.systemic[NO_DATA_RULE] = ep
            desired[ep.episode] = ("nodata", None, len(late))
            return
        if prior is not None:
            self.ended[prior.episode] = Reason.DATA_RETURNED
        for a in late:
            assert a.no_data_since is not None
            key = episode_key(self.uid, a.agent, NO_DATA_RULE, a.no_data_since)
            desired[key] = ("nodata", a, 1)

    def _firing(
        self,
        key: str,
        what: str,
        a: _Agent | None,
        ref: int | str,
        stage_channels: Mapping[str, tuple[str, ...]],
    ) -> Notification | None:
        now = self.now
        if what == "rule":
            assert a is not None
            assert isinstance(ref, int)
            r = self.rules[ref]
            firing = a.rules[r.name]
            evidence = r.evidence(
                a.values, firing.firing_since != now, a.assume, firing.pending_since, now
            )
            return self._agent_notice(key, a, r.name, r.severity, r.channels, evidence)
        if what == "stage":
            assert isinstance(ref, str)
            budget = self.spec.budget
            assert budget is not None
            figures = self.policy_figures if a is None else a.figures
            if figures is None:
                return None
            rs = self.budget_states.get(ref) if a is None else a.rules.get(ref)
            evidence = stage_evidence(
                budget, ref, figures, None if rs is None else rs.pending_since, now
            )
            note = figures.describe_crossing(budget.limit_usd) if ref == SOFT else ""
            if a is not None:
                return self._agent_notice(
                    key, a, ref, _STAGE_SEVERITY[ref], stage_channels[ref], evidence, note
                )
            return Notification(
                channels=stage_channels[ref],
                episode=key,
                agent=None,
                rule=ref,
                severity=_STAGE_SEVERITY[ref],
                state="firing",
                summary=f"policy {self.policy.namespace}/{self.policy.name}: {ref} reached — "
                f"{evidence.describe()}{note}; applies to all {len(self.work)} agents",
                reason_code=_STAGE_REASON[ref],
                evidence=evidence,
                dry_run=self.dry_run,
                at=now,
            )
        if what == "systemic":
            assert isinstance(ref, int)
            r = self.rules[ref]
            hits = len(self.breaching[ref])
            severity = max(r.severity, Severity.HIGH, key=severity_rank)
            return Notification(
                channels=r.channels,
                episode=key,
                agent=None,
                rule=r.name,
                severity=severity,
                state="firing",
                summary=f"policy {self.policy.namespace}/{self.policy.name}: {hits} of "
                f"{self.considered} agents breach rule {r.name} at once — likely an outage of "
                "a shared dependency (model provider, network); no agent is disabled",
                reason_code=Reason.SYSTEMIC_OUTAGE,
                action="none: systemic outage, paging instead of disabling",
                escalate=True,
                dry_run=self.dry_run,
                at=now,
            )
        # no data
        assert isinstance(ref, int)
        after = format_duration(self.spec.no_data.after)
        if a is None:
            summary = (
                f"policy {self.policy.namespace}/{self.policy.name}: {ref} of "
                f"{self.considered} agents have had no (or too little) data for over {after}; "
                "is the metrics backend or the scrape down?"
            )
        else:
            summary = (
                f"{a.agent}: no (or too little) data for over {after}; "
                f"noData.mode {self.spec.no_data.mode.value}"
            )
        return Notification(
            channels=self.no_data_channels,
            episode=key,
            agent=None if a is None else a.agent,
            rule=NO_DATA_RULE,
            severity=Severity.MEDIUM,
            state="firing",
            summary=summary,
            reason_code=Reason.NO_DATA,
            action="none: missing data is neither health nor sickness",
            dry_run=self.dry_run,
            at=now,
        )

    def _agent_notice(
        self,
        key: str,
        a: _Agent,
        rule: str,
        severity: Severity,
        channels: tuple[str, ...],
        evidence: Evidence,
        note: str = "",
    ) -> Notification:
        decision = self.decided.get((a.agent, rule))
        escalation = self.escalations.get((a.agent, rule))
        suppressed = self.held.get((a.agent, rule))
        action: str | None = None
        undo: str | None = None
        if decision is not None:
            action = _ACTION_TEXT[decision.kind.value]
            if decision.kind == DecisionKind.SWITCH_MODEL:
                action += f" {decision.from_model} → {decision.to_model}"
            if decision.dry_run:
                action = "would have " + action + " (dry run)"
            else:
                undo = decision.undo
        elif suppressed is not None and suppressed.suppressed_by:
            action = f"{suppressed.kind.value} not done ({suppressed.suppressed_by})"
        elif a.disabled is not None and not a.disabled.dry_run:
            action = "none: the agent is already disabled"
        text = f"{a.agent}: {rule} firing — {evidence.describe()}{note}"
        if action:
            text += f"; {action}"
        if escalation is not None:
            text += f"; {escalation[1]}"
        return Notification(
            channels=channels,
            episode=key,
            agent=a.agent,
            rule=rule,
            severity=severity,
            state="firing",
            summary=text,
            reason_code=Reason.RULE_FIRING
            if not rule.startswith("budget.")
            else (_STAGE_REASON[rule]),
            evidence=evidence,
            action=action,
            undo=undo,
            escalate=escalation is not None,
            dry_run=self.dry_run,
            at=self.now,
        )

    # ------------------------------------------------------------------ new state

    def _state(self) -> PolicyState:
        agents: dict[AgentId, AgentState] = {}
        for a in self.work.values():
            st = a.result()
            if not st.empty:
                agents[a.agent] = st
        actions = prune_actions(self.prior.actions, self.now - _HOUR) + tuple(self.stamps)
        if actions == self.prior.actions:
            actions = self.prior.actions
        period = self.period
        return PolicyState(
            agents=agents,
            actions=actions,
            systemic=self.systemic if self.systemic != self.prior.systemic else self.prior.systemic,
            budget_period_start=(
                period.start if period is not None and not period.rolling else None
            ),
            budget=self.budget_states
            if self.budget_states != self.prior.budget
            else self.prior.budget,
            notices=self.notices if self.notices != self.prior.notices else self.prior.notices,
        )


def _channels(actions: list[Action]) -> tuple[str, ...]:
    out: list[str] = []
    for a in actions:
        if a.notify is not None:
            out.extend(ch for ch in a.notify.channels if ch not in out)
    return tuple(out)


def _resolved_summary(rec: NoticeRecord, reason: str) -> str:
    who = str(rec.agent) if rec.agent is not None else "fleet"
    text: dict[str, str] = {
        Reason.RESOLVED: "conditions clear again",
        Reason.RESTORED: "agent restored; episode over",
        Reason.AGENT_GONE: "agent no longer selected by the policy",
        Reason.DATA_RETURNED: "data is back",
        Reason.OUTAGE_OVER: "fewer agents breach the rule now; outage over",
        Reason.PERIOD_ENDED: "budget period over",
    }
    return f"{who}: {rec.rule} resolved — {text.get(reason, reason)}"


ROLLING_HYSTERESIS = 0.9
"""A firing budget stage of a rolling period ends only when spend is below 90% of its
threshold: the window's spend moves with every sample, and a stage flapping at the line
would restore and remediate the agent over and over."""


def _hold_factor(period: Period, rs: RuleState | None) -> float:
    """The share of the threshold that keeps a firing rolling-period stage firing."""
    if period.rolling and rs is not None and rs.firing_since is not None:
        return ROLLING_HYSTERESIS
    return 1.0
