"""Stage 4: a rule breached by enough of the fleet at once is one fleet episode.

When at least systemicPercent of at least systemicMinAgents judged agents breach the same
rule, the breaches are flagged systemic: they act on nobody and page once for the fleet.
When the outage ends, the breaches it covered start over and need a fresh ``for``.
"""

from __future__ import annotations

from dataclasses import replace

from agentmedic.engine.conditions import BREACH
from agentmedic.engine.context import Cycle
from agentmedic.engine.inputs import episode_key
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.rules import advance
from agentmedic.engine.state import SystemicEpisode

__all__ = ["systemic"]


def systemic(c: Cycle) -> None:
    """Flag fleet-wide breaches; restart the breaches of an outage that ended."""
    g = c.spec.guardrails
    n = c.considered
    for i, r in enumerate(c.rules):
        hits = c.breaching[i]
        active = n >= g.systemic_min_agents and len(hits) * 100 >= g.systemic_percent * n
        prior = c.prior.systemic.get(r.name)
        if active:
            c.systemic[r.name] = prior or SystemicEpisode(
                c.now, episode_key(c.uid, None, r.name, c.now)
            )
            for a in hits:
                rs = a.rules.get(r.name)
                if rs is None or rs.systemic:
                    continue
                if rs.firing_since is None or rs.firing_since == c.now:
                    a.set_rule(r.name, replace(rs, systemic=True))
        elif prior is not None:
            c.ended[prior.episode] = DecisionReason.OUTAGE_OVER
    _restart_after_outage(c)


def _restart_after_outage(c: Cycle) -> None:
    """When an outage ends, the breaches it covered start over: an agent still breaching
    begins a new breach now and needs a fresh ``for`` before anything is done to it."""
    ended = {name for name in c.prior.systemic if name not in c.systemic}
    if not ended:
        return
    for i, r in enumerate(c.rules):
        if r.name not in ended:
            continue
        breaching = {a.agent for a in c.breaching[i]}
        for a in c.work.values():
            rs = a.rules.get(r.name)
            if rs is None or not rs.systemic:
                continue
            fresh = rs.idle()
            if a.agent in breaching:
                fresh = advance(c, a, r, fresh, BREACH)
            a.set_rule(r.name, fresh)
