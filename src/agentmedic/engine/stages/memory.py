"""Stage 9: the state to remember, reusing every unchanged part of the prior state.

An agent nothing happened to keeps its very prior :class:`~agentmedic.engine.state.AgentState`
object, and the policy's parts are the prior objects when equal, so the operator can
tell cheaply what to write (nothing in a steady state).
"""

from __future__ import annotations

from datetime import timedelta

from agentmedic.engine.context import Cycle
from agentmedic.engine.series import AgentId
from agentmedic.engine.state import AgentState, PolicyState, prune_actions

__all__ = ["remember"]

_HOUR = timedelta(hours=1)


def remember(c: Cycle) -> PolicyState:
    """The new state (pass it as ``prior`` next cycle)."""
    prior = c.prior
    agents: dict[AgentId, AgentState] = {}
    for a in c.work.values():
        st = a.result()
        if not st.empty:
            agents[a.agent] = st
    actions = prune_actions(prior.actions, c.now - _HOUR) + tuple(c.stamps)
    if actions == prior.actions:
        actions = prior.actions
    period = c.period
    return PolicyState(
        agents=agents,
        actions=actions,
        systemic=c.systemic if c.systemic != prior.systemic else prior.systemic,
        budget_period_start=period.start if period is not None and not period.rolling else None,
        budget=c.budget_states if c.budget_states != prior.budget else prior.budget,
        notices=c.notices if c.notices != prior.notices else prior.notices,
        told=c.told if c.told != prior.told else prior.told,
    )
