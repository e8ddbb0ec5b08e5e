"""Finance's budgets inside a policy's cycle: AgentBudget and ClusterAgentBudget stages.

Each agent's :attr:`~agentmedic.engine.inputs.AgentInput.budgets` says what every budget
selecting it decided this cycle (:mod:`agentmedic.engine.finance`). A stage that asks for
a change (downgrade, stop) becomes a rule state on the agent, named
``budget.<kind>/<ns>/<name>/<stage>``, whose episode is keyed by the budget, the stage
and the period's start: the remediation stage turns it into a change through the same
guardrails, records and cooldown as the policy's own rules, and the recovery stage undoes
it when the budget's period is over (onNewPeriod restore). A notify stage leaves the
agents alone: the budget's own channels are told (the operator's budget notices).

Precedence: when the policy's own ``spec.budget`` and finance's budgets all apply to an
agent, only the strictest source acts (stop > downgrade > notify; between equals the one
that already acted, then the policy's own budget, then the budgets by name), and the
decision's reason names it. A budget that no longer selects the agent (deleted, or the
agent left its selection) ends its episode and restores nothing: that is not evidence
that the spend is over; a person restores with ``agentmedic restore``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from agentmedic.api.budget import StageResponse
from agentmedic.api.types import Action, OnNewPeriod, ScaleToZeroAction, Severity, SwitchModelAction
from agentmedic.engine.budget import HARD, SOFT
from agentmedic.engine.conditions import BREACH, Evidence, severity_rank, strength
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.finance import RESPONSE_KIND, BudgetVerdict, is_external_rule
from agentmedic.engine.guardrails import Candidate
from agentmedic.engine.inputs import episode_key
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.state import Mark, RuleState

__all__ = [
    "budget_holds",
    "external_budgets",
    "external_candidates",
    "external_over",
    "strictest_only",
]

_ACTIONS = {
    "scaleToZero": Action(scale_to_zero=ScaleToZeroAction()),
    "switchModel": Action(switch_model=SwitchModelAction()),
}
_SEVERITY = {StageResponse.STOP: Severity.HIGH, StageResponse.DOWNGRADE: Severity.MEDIUM}


def external_budgets(c: Cycle) -> None:
    """Each agent's budget stages follow what the budgets say this cycle."""
    if not c.policy.budgets_known:
        return  # nothing is known yet: every stage is held as it is
    for a in c.work.values():
        if a.unknown:
            continue  # held: no change of any kind this cycle
        verdicts = a.workload.budgets
        if not verdicts and not any(is_external_rule(n) for n in a.rules):
            continue
        # A notify stage changes no workload: the budget's own channels tell people, and
        # the agents carry no state for it.
        current = {v.rule: v for v in verdicts if v.rule is not None and v.strength > 0}
        for name, rs in list(a.rules.items()):
            if not is_external_rule(name):
                continue
            v = current.get(name)
            firing = rs.firing_since is not None
            if firing and v is not None and (v.rolling or rs.pending_since == v.period_start):
                continue  # the same episode goes on
            after: RuleState | None = rs
            if firing and rs.episode is not None:
                c.ended[rs.episode] = DecisionReason.PERIOD_ENDED
                after = rs.idle()
            if not any(x.budget.owns(name) for x in verdicts):
                after = None  # the budget no longer selects the agent: forget it
            a.set_rule(name, after)
        for name, v in current.items():
            _start(c, a, name, v)


def _start(c: Cycle, a: AgentWork, name: str, v: BudgetVerdict) -> None:
    rs = a.rules.get(name)
    if rs is not None and rs.firing_since is not None:
        return
    start = c.now if v.rolling else v.period_start
    a.set_rule(
        name,
        RuleState(
            pending_since=start,
            firing_since=c.now,
            episode=episode_key(c.uid, a.agent, name, start),
            last_action_at=None if rs is None else rs.last_action_at,
            last_action_episode=None if rs is None else rs.last_action_episode,
        ),
    )


def _firing(a: AgentWork) -> Iterable[tuple[BudgetVerdict, RuleState]]:
    """The agent's budget verdicts whose stage fires (asking for a change), with its state."""
    for v in a.workload.budgets:
        name = v.rule
        if name is None or v.strength == 0:
            continue
        rs = a.rules.get(name)
        if rs is not None and rs.firing_since is not None:
            yield v, rs


def external_candidates(c: Cycle, a: AgentWork, out: list[Candidate]) -> None:
    """The changes the budgets' firing stages still owe the agent."""
    for v, rs in _firing(a):
        kind = RESPONSE_KIND.get(v.response) if v.response is not None else None
        if kind is None or kind in rs.done:
            continue
        assert v.response is not None
        assert rs.episode is not None
        severity = _SEVERITY[v.response]

        def build(v: BudgetVerdict = v, rs: RuleState = rs) -> Evidence:
            return v.as_evidence(rs.pending_since, c.now)

        first = v.conditions[0] if v.conditions else None
        badness = 0.0
        if first is not None and first.observed is not None and first.threshold > 0:
            badness = first.observed / first.threshold
        out.append(
            Candidate(
                agent=a.agent,
                rule=v.budget.rule(v.stage or ""),
                kind=kind,
                action=_ACTIONS[kind],
                severity=severity,
                severity_rank=severity_rank(severity),
                episode=rs.episode,
                badness=badness,
                build_evidence=build,
                rule_state=rs,
                reason_code=DecisionReason.BUDGET_STAGE,
                retry=(v.budget.rule(v.stage or ""), kind) in a.retry,
                note=f"; decided by {v.evidence}",
            )
        )


def _sources(c: Cycle, a: AgentWork) -> list[tuple[tuple[int, int, int, int], str]]:
    """Every budget source firing on the agent, with its precedence key (larger first)."""
    out: list[tuple[tuple[int, int, int, int], str]] = []
    if c.spec.budget is not None:
        for index, stage in enumerate((SOFT, HARD)):
            rs = a.rules.get(stage)
            if rs is None or rs.firing_since is None or a.stage_v[index] != BREACH:
                continue
            kinds = [k for k, _ in c.plan.stage_actions[stage]]
            best = max((strength(k) for k in kinds), default=0)
            acted = max((strength(k) for k in rs.done), default=0)
            out.append(((best, int(acted >= best > 0), 1, index), stage))
    ordered = sorted(_firing(a), key=lambda vr: vr[0].budget, reverse=True)
    for i, (v, rs) in enumerate(ordered):
        kind = RESPONSE_KIND.get(v.response) if v.response is not None else None
        acted = kind is not None and kind in rs.done
        assert v.rule is not None
        out.append(((v.strength, int(acted), 0, i), v.rule))
    return out


def strictest_only(c: Cycle, a: AgentWork, budget_candidates: list[Candidate]) -> list[Candidate]:
    """Of the budget candidates, those of the strictest source only (see the module)."""
    sources = _sources(c, a)
    if not sources:
        return []
    _, winner = max(sources)
    kept = [x for x in budget_candidates if x.rule == winner]
    m = a.downgraded
    if m is not None and m.rule.startswith("budget.") and m.rule != winner:
        # Another budget already moved the agent down: one budget downgrade at a time.
        kept = [x for x in kept if x.kind != "switchModel"]
    return kept


def budget_holds(c: Cycle, a: AgentWork, need: int, skip: str) -> bool:
    """Another of finance's budgets fires on the agent with a response at least ``need``
    strong: a change it would make again must not be undone."""
    return any(v.strength >= need and v.rule != skip for v, _ in _firing(a))


def external_over(c: Cycle, a: AgentWork, m: Mark, need: int) -> Evidence | None:
    """Evidence that the budget period behind ``m`` (a change of strength ``need``) is
    over, when its budget restores on a new period and no other budget holds the agent."""
    v = next((v for v in a.workload.budgets if v.budget.owns(m.rule)), None)
    if v is None or v.on_new_period != OnNewPeriod.RESTORE:
        return None
    if v.rolling:
        if v.strength >= need:
            return None
    elif v.period_start <= m.at:
        return None
    if budget_holds(c, a, need, m.rule) or _own_holds(c, a, need):
        return None
    return Evidence("all", (), v.period_start if not v.rolling else m.at, timedelta(0), c.now)


def _own_holds(c: Cycle, a: AgentWork, need: int) -> bool:
    """The policy's own budget fires on the agent with an action at least ``need`` strong."""
    if c.spec.budget is None:
        return False
    for stage in (SOFT, HARD):
        rs = a.rules.get(stage)
        if (
            rs is not None
            and rs.firing_since is not None
            and any(strength(k) >= need for k, _ in c.plan.stage_actions[stage])
        ):
            return True
    return False
