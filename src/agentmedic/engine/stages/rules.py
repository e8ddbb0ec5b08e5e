"""Stage 2, per agent: each rule's verdict and its state machine, with the noData stance.

A rule is idle → pending (breaching, not yet for ``for``) → firing (an episode) → idle.
UNKNOWN (no data) holds a rule where it is: it never fires and never resolves one.
With noData.mode breach, data missing for noData.after counts as breaching.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from agentmedic.api.types import NoDataMode
from agentmedic.engine.conditions import BREACH, CLEAR, UNKNOWN, CompiledRule
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import episode_key
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.state import RuleState

__all__ = ["advance", "judge"]


def judge(c: Cycle, a: AgentWork) -> None:
    """Every rule's verdict for one (not frozen) agent, and each rule's next state."""
    lacks = _verdicts(c, a)
    now = c.now
    if lacks:
        a.lacks_data = True
        if a.no_data_since is None:
            a.no_data_since = now
        nd = c.spec.no_data
        a.assume = nd.mode == NoDataMode.BREACH and now - a.no_data_since >= nd.after
    elif a.no_data_since is not None:
        a.no_data_since = None
    rules_state, verdicts = a.rules, a.verdicts
    if not rules_state and BREACH not in verdicts and not a.assume:
        return  # the common case: nothing pending, nothing breaching
    for i, r in enumerate(c.rules):
        v = verdicts[i]
        if v == UNKNOWN and a.assume:
            v = verdicts[i] = BREACH
        rs = rules_state.get(r.name)
        if rs is None and v != BREACH:
            continue
        new = advance(c, a, r, rs, v)
        if new is not rs:
            a.set_rule(r.name, new)
        if v == BREACH:
            c.breaching[i].append(a)


def _verdicts(c: Cycle, a: AgentWork) -> bool:
    """Fill ``a.verdicts``; True when some rule lacks data."""
    values, rules_state, verdicts = a.values, a.rules, a.verdicts
    lacks = False
    if rules_state:
        for r in c.rules:
            rs = rules_state.get(r.name)
            v = r.verdict(values, rs is not None and rs.firing_since is not None)
            lacks = lacks or v == UNKNOWN
            verdicts.append(v)
    else:
        for r in c.rules:
            v = r.verdict(values, False)
            lacks = lacks or v == UNKNOWN
            verdicts.append(v)
    return lacks


def advance(
    c: Cycle, a: AgentWork, r: CompiledRule, rs: RuleState | None, v: int
) -> RuleState | None:
    """One rule's next state given this cycle's verdict ``v``."""
    now = c.now
    if rs is None or rs.pending_since is None:  # idle
        if v != BREACH:
            return rs
        if r.for_ <= timedelta(0):
            return _fire(c, a, r, rs, now)
        return RuleState(
            pending_since=now,
            last_action_at=None if rs is None else rs.last_action_at,
            last_action_episode=None if rs is None else rs.last_action_episode,
        )
    if rs.firing_since is None:  # pending
        if v == BREACH:
            if now - rs.pending_since >= r.for_:
                return _fire(c, a, r, rs, rs.pending_since)
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
            c.ended.setdefault(rs.episode, DecisionReason.RESOLVED)
            return rs.idle()
        return rs if rs.clear_since is not None else replace(rs, clear_since=now)
    return rs  # no data: hold; a missing metric is not a recovery


def _fire(
    c: Cycle, a: AgentWork, r: CompiledRule, rs: RuleState | None, start: datetime
) -> RuleState:
    return RuleState(
        pending_since=start,
        firing_since=c.now,
        episode=episode_key(c.uid, a.agent, r.name, start),
        systemic=rs is not None and rs.systemic,
        last_action_at=None if rs is None else rs.last_action_at,
        last_action_episode=None if rs is None else rs.last_action_episode,
    )
