"""Probation's control group: the agent's peers, the policy's other agents.

A regression seen on an agent on probation is evidence against its change only when the
agent's peers did not fall as far over the same window: a provider outage, a shared tool
going slow, makes every agent worse at once, and whatever was changed last would be
blamed for it. So the record of a change also stores its peers' median of each signal over
the baseline window (keys ``fleet.<signal>``, and ``fleet.agents`` the number of peers that
counted), and probation compares the peers' median over the verify window with it, with
the same tolerances (:func:`agentmedic.engine.verify.judge`). A signal on which the agent
and its peers both regressed is no evidence: the verdict waits until the peers are back
within tolerance, then for one whole ``verify.window`` after that, so that the window it
judges holds nothing of the fleet's trouble.

Peers are the policy's agents judged this cycle (not disabled, not at zero, their metrics
defined) with at least ``verify.minExecutions`` in the window, leaving out every agent on
probation (a change not judged for good yet, or recent enough to move its numbers): the
agent itself is never its own peer. The medians a verdict compares with are taken once
per cycle, however many changes are judged in it. Fewer
than ``guardrails.systemicMinAgents`` (at least 2) of them make no control group: the
change is then judged on its own numbers, as is a record written without peers' figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from statistics import median

from agentmedic.api.verify import SIGNALS
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import ProbationRecord
from agentmedic.engine.series import SeriesKey
from agentmedic.engine.verify import EXECUTIONS, Comparison, VerdictKind, judge

__all__ = ["FLEET", "FLEET_AGENTS", "FLEET_KEYS", "fleet_baseline", "fleet_regressions"]

_FINAL = frozenset({*(k.value for k in VerdictKind), "Superseded"})
"""Memos of a change judged for good (not Extended, Held or Resumed)."""

FLEET = "fleet."
"""The prefix of the peers' medians in a probation record's baseline."""
FLEET_AGENTS = "fleet.agents"
"""How many peers the medians were taken over."""
_NAMES = (*(s.value for s in SIGNALS), EXECUTIONS)
FLEET_KEYS = (*(FLEET + n for n in _NAMES), FLEET_AGENTS)
"""Every key of the peers' figures a record may carry."""


def fleet_baseline(c: Cycle, a: AgentWork) -> dict[str, float | None]:
    """The peers' medians over ``verify.baselineWindow`` now, to store with a change of
    ``a`` (empty without spec.verify or without enough peers)."""
    v = c.spec.verify
    if v is None:
        return {}
    # Not cached: the agent being changed is no peer of its own (a few changes per cycle,
    # spec.guardrails.maxActionsPerHour).
    return _medians(c, [p for p in _peers(c) if p is not a], v.baseline_window)


def fleet_regressions(c: Cycle, a: AgentWork, rec: ProbationRecord) -> tuple[Comparison, ...]:
    """The signals on which ``a``'s peers, too, fell beyond tolerance since the change's
    baseline, over the verify window now (empty: no control group, or the peers are fine)."""
    v = c.spec.verify
    if v is None:
        return ()
    before = _unprefixed(rec.baseline)
    if not before:
        return ()
    after = _unprefixed(_figures(c, v.window))
    if not after:
        return ()
    return judge(v, before, after).regressed


def _figures(c: Cycle, window: timedelta) -> dict[str, float | None]:
    """The medians over ``window``, once per cycle: the peers are the same for every agent
    judged in it (an agent on probation is nobody's peer, its own neither)."""
    got = c.peer_figures.get(window)
    if got is None:
        got = c.peer_figures[window] = _medians(c, _peers(c), window)
    return got


def _peers(c: Cycle) -> list[AgentWork]:
    v = c.spec.verify
    assert v is not None
    recent = v.window + v.baseline_window
    out = []
    for p in c.work.values():
        if p.frozen or p.unknown:
            continue
        rec = p.workload.probation
        if rec is not None and rec.reverted_at is None:
            memo = p.probation
            judged = memo is not None and memo.episode == rec.episode and memo.verdict in _FINAL
            if c.now - rec.at < recent or not judged:
                continue  # its own change moves its numbers
        out.append(p)
    return out


def _medians(c: Cycle, peers: Iterable[AgentWork], window: timedelta) -> dict[str, float | None]:
    v = c.spec.verify
    assert v is not None
    label = c.spec.agent_label
    rows = []
    for p in peers:
        row = {n: p.values.get(SeriesKey(n, None, window, label)) for n in _NAMES}
        executions = row.get(EXECUTIONS)
        if executions is not None and executions >= v.min_executions:
            rows.append(row)
    least = max(2, c.spec.guardrails.systemic_min_agents)
    if len(rows) < least:
        return {}
    out: dict[str, float | None] = {FLEET_AGENTS: float(len(rows))}
    for n in _NAMES:
        values = [x for r in rows if (x := r.get(n)) is not None]
        out[FLEET + n] = float(median(values)) if len(values) >= least else None
    return out


def _unprefixed(figures: Mapping[str, float | None]) -> dict[str, float | None]:
    return {
        k[len(FLEET) :]: x
        for k, x in figures.items()
        if k.startswith(FLEET) and k != FLEET_AGENTS and x is not None
    }
