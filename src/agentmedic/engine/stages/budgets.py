"""Stage 3: spend, forecast and the soft/hard budget stages.

Finance's AgentBudgets and ClusterAgentBudgets reach the agents as verdicts and become
rule states first (:func:`~agentmedic.engine.stages.external.external_budgets`); then the
policy's own ``spec.budget``. Each agent's spend and burn give its figures
(:class:`~agentmedic.engine.budget.StageInput`) through the one forecast
(:class:`~agentmedic.engine.budget.Forecaster`). With scope agent each agent's stages are
judged on its own figures; with scope policy the fleet's sum is judged once and every
agent mirrors the policy's stage with its own episode key.
"""

from __future__ import annotations

from datetime import datetime

from agentmedic.api.types import Budget, BudgetScope
from agentmedic.engine.budget import (
    HARD,
    SOFT,
    Forecaster,
    StageInput,
    StageLimits,
)
from agentmedic.engine.conditions import BREACH, CLEAR
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import episode_key
from agentmedic.engine.outcome import SpendReport
from agentmedic.engine.periods import Period, budget_period, spend_window
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.requirements import burn_key, spend_key
from agentmedic.engine.series import AgentId
from agentmedic.engine.stages.external import external_budgets
from agentmedic.engine.state import Mark, RuleState

__all__ = ["ROLLING_HYSTERESIS", "budgets", "hold_factor"]

ROLLING_HYSTERESIS = 0.9
"""A firing budget stage of a rolling period ends only when spend is below 90% of its
threshold: the window's spend moves with every sample, and a stage flapping at the line
would restore and remediate the agent over and over."""


def hold_factor(period: Period, rs: RuleState | None) -> float:
    """The share of the threshold that keeps a firing rolling-period stage firing."""
    if period.rolling and rs is not None and rs.firing_since is not None:
        return ROLLING_HYSTERESIS
    return 1.0


def budgets(c: Cycle) -> None:
    """The budget stage: figures per agent, then the stages per agent or for the policy;
    then the stages of finance's budgets (:mod:`~agentmedic.engine.stages.external`)."""
    external_budgets(c)
    budget = c.spec.budget
    if budget is None:
        return
    c.period = period = budget_period(budget, c.now)
    if not period.rolling and c.prior.budget_period_start != period.start:
        _new_period(c)
    totals = _figures(c, budget, period)
    if budget.scope == BudgetScope.AGENT:
        _agent_stages(c, budget, period, totals)
    else:
        _policy_stages(c, budget, period, totals)


class _Totals:
    """The fleet's sums over the agents' figures."""

    __slots__ = ("burn", "crosses", "forecast", "per_agent", "spent")

    def __init__(self) -> None:
        self.spent: float | None = None
        self.burn: float | None = None
        self.forecast: float | None = None
        self.crosses: datetime | None = None
        """The earliest crossing of any agent."""
        self.per_agent: dict[AgentId, float] = {}


def _new_period(c: Cycle) -> None:
    """A calendar period began: every stage episode of the last one ends."""
    for old in c.budget_states.values():
        if old.episode is not None:
            c.ended[old.episode] = DecisionReason.PERIOD_ENDED
    c.budget_states = {}
    for a in c.work.values():
        for stage in (SOFT, HARD):
            rs = a.rules.get(stage)
            if rs is not None and rs.episode is not None:
                c.ended[rs.episode] = DecisionReason.PERIOD_ENDED
                a.set_rule(stage, rs.idle())


def _figures(c: Cycle, budget: Budget, period: Period) -> _Totals:
    """Each agent's spend figures (``a.figures``), and the fleet's sums."""
    window = spend_window(budget, c.now)
    skey, bkey = spend_key(c.spec, c.now), burn_key(c.spec)
    assert skey is not None
    assert bkey is not None
    canon = c.plan.canon
    skey, bkey = canon.get(skey, skey), canon.get(bkey, bkey)
    at = Forecaster.of(budget, period, c.now).at
    t = _Totals()
    for a in c.work.values():
        get = a.values.get
        spent, burn = get(skey), get(bkey)
        if spent is not None and spent == spent:
            t.per_agent[a.agent] = spent
            t.spent = spent + (t.spent or 0.0)
        else:
            spent = None
        if burn is not None and burn == burn:
            t.burn = burn + (t.burn or 0.0)
        else:
            burn = None
        fc, crossing = at(spent, burn)
        if fc is not None:
            t.forecast = fc + (t.forecast or 0.0)
        if crossing is not None and (t.crosses is None or crossing < t.crosses):
            t.crosses = crossing
        a.figures = StageInput(spent, burn, fc, window, crossing)
    return t


def _agent_stages(c: Cycle, budget: Budget, period: Period, t: _Totals) -> None:
    """Scope agent: each agent's stages on its own figures."""
    limits = StageLimits.of(budget)
    for a in c.work.values():
        figures = a.figures
        assert figures is not None
        # A rolling window's spend jitters with every sample: a firing stage ends
        # only once spend is clearly below its threshold (ROLLING_HYSTERESIS).
        soft_k = hold_factor(period, a.rules.get(SOFT))
        hard_k = hold_factor(period, a.rules.get(HARD))
        soft_v = limits.verdict(SOFT, figures.spent, figures.forecast, soft_k, soft_k)
        hard_v = limits.verdict(HARD, figures.spent, figures.forecast, hard_k)
        a.stage_v = (soft_v, hard_v)
        for stage, v, on in ((SOFT, soft_v, limits.has_soft), (HARD, hard_v, limits.has_hard)):
            if not on:
                continue
            rs = a.rules.get(stage)
            if rs is None and v != BREACH:
                continue
            new = advance_stage(c, a.agent, stage, rs, v, period)
            if new is not rs:
                a.set_rule(stage, new)
    c.spend = SpendReport(
        period.start,
        period.end,
        t.spent or 0.0,
        budget.limit_usd,
        t.forecast,
        t.crosses,
        t.per_agent,
    )


def _policy_stages(c: Cycle, budget: Budget, period: Period, t: _Totals) -> None:
    """Scope policy: the fleet's sum judged once; every agent mirrors the policy's stage."""
    fc, crosses = Forecaster.of(budget, period, c.now).at(t.spent, t.burn)
    figures = StageInput(t.spent, t.burn, fc, spend_window(budget, c.now), crosses)
    c.policy_figures = figures
    c.spend = SpendReport(
        period.start, period.end, t.spent or 0.0, budget.limit_usd, fc, crosses, t.per_agent
    )
    limits = StageLimits.of(budget)
    verdicts: list[int] = []
    for stage, on in ((SOFT, limits.has_soft), (HARD, limits.has_hard)):
        if not on:
            verdicts.append(CLEAR)
            continue
        held = c.budget_states.get(stage)
        # The hysteresis of a rolling period holds on spend only, not on the forecast.
        v = limits.verdict(stage, figures.spent, figures.forecast, hold_factor(period, held))
        verdicts.append(v)
        policy_rs = advance_stage(c, None, stage, held, v, period)
        if policy_rs is None:
            c.budget_states.pop(stage, None)
        else:
            c.budget_states[stage] = policy_rs
        for a in c.work.values():
            _mirror_stage(c, a, stage, policy_rs)
    stage_v = (verdicts[0], verdicts[1])
    for a in c.work.values():
        a.stage_v = stage_v


def advance_stage(
    c: Cycle, agent: AgentId | None, stage: str, rs: RuleState | None, v: int, period: Period
) -> RuleState | None:
    """A stage fires the first cycle it breaches; a rolling one ends when clear again."""
    firing = rs is not None and rs.firing_since is not None
    if not firing:
        if v != BREACH:
            return rs
        start = c.now if period.rolling else period.start
        episode = episode_key(c.uid, agent, stage, start)
        done: frozenset[str] = frozenset()
        acted = _acted_in_window(c, agent, stage, period)
        if acted is not None:
            # A rolling stage that acted on this agent within the window is the same
            # episode (the memory of it was lost, e.g. to a crash before it was saved): it
            # does not act a second time.
            mark, kind = acted
            start, episode, done = mark.at, mark.episode, frozenset({kind})
        return RuleState(
            pending_since=start,
            firing_since=c.now,
            episode=episode,
            done=done,
            last_action_at=None if rs is None else rs.last_action_at,
            last_action_episode=None if rs is None else rs.last_action_episode,
        )
    assert rs is not None
    assert rs.episode is not None
    if period.rolling and v == CLEAR:
        c.ended[rs.episode] = DecisionReason.PERIOD_ENDED
        return rs.idle()
    return rs


def _acted_in_window(
    c: Cycle, agent: AgentId | None, stage: str, period: Period
) -> tuple[Mark, str] | None:
    """This policy's confirmed change to ``agent`` by ``stage`` within a rolling period, as
    the workload's record shows it, with the action it records; None for a calendar period
    (its episode is keyed by the period's start, the same after a restart)."""
    if not period.rolling or agent is None:
        return None
    a = c.work.get(agent)
    if a is None:
        return None
    for mark, kind in ((a.disabled, "scaleToZero"), (a.downgraded, "switchModel")):
        if (
            mark is not None
            and mark.confirmed
            and mark.rule == stage
            and mark.episode.startswith(f"{c.uid}:{agent.namespace}/{agent.name}:{stage}:")
            and mark.at >= period.start
        ):
            return mark, kind
    return None


def _mirror_stage(c: Cycle, a: AgentWork, stage: str, policy_rs: RuleState | None) -> None:
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
                firing_since=c.now,
                episode=episode_key(c.uid, a.agent, stage, start),
                last_action_at=None if rs is None else rs.last_action_at,
                last_action_episode=None if rs is None else rs.last_action_episode,
            ),
        )
    elif not firing and rs is not None and rs.firing_since is not None:
        assert rs.episode is not None
        c.ended[rs.episode] = DecisionReason.PERIOD_ENDED
        a.set_rule(stage, rs.idle())
