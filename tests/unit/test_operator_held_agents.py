"""An agent whose value is NaN is held: not judged, no noData stance, no change. An agent
whose series is absent from a good answer is no data, and the noData stance applies.

The operator tells the engine a held agent's metrics are unknown (``_held``); these tests
drive the real engine through that view, as the operator's cycle does.
"""

from __future__ import annotations

from datetime import timedelta

from agentmedic.engine import AgentStatus, evaluate
from agentmedic.operator.cycle import held as _held
from tests.unit.test_engine_builders import SICK, Sim, agent, fleet, kinds, policy, rule, samples

GONE = {"error_rate": None}


class HeldSim(Sim):
    """Sim whose step holds the named agents as the operator does for NaN values."""

    def held_step(self, held: set[str], **per_agent: dict[str, float | None]) -> object:
        self.now += self.spec.interval
        ids = {agent(n) for n in held}
        data = samples(self.spec, self.now, self.agents, per_agent=per_agent)
        outcome = evaluate(_held(self.input, ids), data, self.state, self.now)
        self.state = outcome.state
        self.history.append(outcome)
        return outcome


def test_a_held_agent_gets_no_nodata_breach_while_an_absent_one_does() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        no_data={"mode": "breach", "after": "30s"},
        guardrails={"maxDisabledPercent": 100, "systemicPercent": 100},
    )
    sim = HeldSim(spec, fleet(10))
    sim.step()
    for _ in range(4):
        sim.held_step({"a0"}, a0=GONE, a1=GONE)
    decided = {name for o in sim.history for _, name in kinds(o)}
    assert decided == {"a1"}, "only the genuinely absent agent meets noData: breach"
    assert sim.history[-1].agents[agent("a0")] == AgentStatus.NO_DATA


def test_a_held_agent_keeps_its_pending_rule_and_resumes_it_when_numbers_return() -> None:
    spec = policy(rule("r", for_="2m", actions=["scaleToZero"]))
    sim = HeldSim(spec, fleet(10))
    sim.step(a0=SICK)  # pending from T0
    assert sim.state is not None
    pending = sim.state.agents[agent("a0")].rules["r"]
    for _ in range(2):
        sim.held_step({"a0"}, a0=GONE)
        assert sim.state.agents[agent("a0")].rules["r"] == pending, "held, not advanced"
    out = sim.step(a0=SICK)  # 1m30s after the breach began: not yet 2m
    assert not out.decisions
    out = sim.step(a0=SICK, after=timedelta(seconds=30))
    assert kinds(out) == [("scaleToZero", "a0")], "the breach kept its start across the hold"
