"""One evaluation cycle of one policy: ``evaluate(policy, samples, prior, now) -> CycleResult``.

The cycle is a chain of stages (:mod:`agentmedic.engine.stages`) over one context
(:class:`~agentmedic.engine.context.Cycle`), run in this order:

1. reconcile: compare what the engine decided with what the workloads show (the
   operator's records), confirm changes that landed, notice restores, and forget
   changes that never landed so they are decided again with the same episode key;
2. rules: each agent's verdict per rule and its state machine
   (idle → pending → firing → idle), with the no-data stance; disabled agents, agents
   at zero replicas and agents whose metrics are undefined are frozen;
3. budgets: spend, forecast and the soft/hard stages;
   then probation: a change whose ``verify.window`` has passed is judged against its
   baseline (verified, regressed → onRegression, or inconclusive), once;
4. systemic: rules breached by enough of the fleet at once become one fleet episode;
5. remediation: the changes firing episodes still owe, strongest and worst first,
   through the guardrail chain, at most one per agent;
6. recovery: auto recovery and the end of a budget episode;
7. status, notices (an episode's firing message when it starts, resolved when it
   ends) and the new state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import PolicyInput
from agentmedic.engine.outcome import CycleResult
from agentmedic.engine.plan import CyclePlan, compile_plan, sample_keys
from agentmedic.engine.series import Samples, SeriesKey
from agentmedic.engine.stages.budgets import budgets
from agentmedic.engine.stages.memory import remember
from agentmedic.engine.stages.notices import NO_DATA_RULE, notices
from agentmedic.engine.stages.probation import probation
from agentmedic.engine.stages.reconcile import agent_gone, reconcile
from agentmedic.engine.stages.recovery import restore
from agentmedic.engine.stages.remediation import remediate
from agentmedic.engine.stages.reverts import reapply, revert_notices
from agentmedic.engine.stages.rules import judge
from agentmedic.engine.stages.status import status
from agentmedic.engine.stages.systemic import systemic
from agentmedic.engine.state import EMPTY_AGENT, PolicyState

__all__ = ["NO_DATA_RULE", "evaluate", "evaluate_planned"]

_EMPTY: Mapping[SeriesKey, float | None] = MappingProxyType({})


def evaluate(
    policy: PolicyInput, samples: Samples, prior: PolicyState | None, now: datetime
) -> CycleResult:
    """Decide what should happen to the policy's agents now.

    ``samples`` holds the series :func:`~agentmedic.engine.requirements` asked for (a
    missing agent or key is no data); ``prior`` is the state the previous cycle returned
    (None on the first cycle); ``now`` must be timezone-aware. Pure: no I/O, no clock.
    """
    return evaluate_planned(
        compile_plan(policy.spec, sample_keys(samples)), policy, samples, prior, now
    )


def evaluate_planned(
    plan: CyclePlan,
    policy: PolicyInput,
    samples: Samples,
    prior: PolicyState | None,
    now: datetime,
) -> CycleResult:
    """:func:`evaluate` with the spec's plan compiled by the caller (once for many cycles
    of the same spec, as a replay does); ``plan`` must come from ``policy.spec``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    if plan.spec is not policy.spec and plan.spec != policy.spec:
        raise ValueError("the plan was compiled from another spec than the policy's")
    c = Cycle(policy, samples, prior if prior is not None else PolicyState(), now, plan)
    _judge_agents(c)
    budgets(c)
    probation(c)
    systemic(c)
    remediate(c)
    reapply(c)
    restore(c)
    counts = status(c)
    messages = notices(c) + revert_notices(c)
    messages.extend(c.probation_notices)
    decisions = sorted(
        c.decisions,
        key=lambda d: (
            (-d.precedence[0], -d.precedence[1], -d.precedence[2]),
            d.agent,
            d.rule,
        ),
    )
    return CycleResult(
        state=remember(c),
        decisions=decisions,
        notifications=messages,
        agents={a.agent: a.status for a in c.work.values()},
        counts=counts,
        spend=c.spend,
        probation=c.probation,
        silences=c.silences,
        reverts=c.reverts,
    )


def _judge_agents(c: Cycle) -> None:
    """Stages 1 and 2, agent by agent: reconcile, then judge the agents not frozen."""
    samples_get = c.samples.get
    prior_get = c.prior.agents.get
    for agent, workload in c.policy.agents.items():
        a = AgentWork(agent, workload, samples_get(agent) or _EMPTY, prior_get(agent, EMPTY_AGENT))
        c.work[agent] = a
        reconcile(c, a)
        if not a.frozen:
            c.considered += 1
            judge(c, a)
    for agent in c.prior.agents:
        if agent not in c.work:
            agent_gone(c, agent)
