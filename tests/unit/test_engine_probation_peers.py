"""Probation's control group (engine/stages/peers.py): a regression the agent's peers
share over the same window (a provider outage) is no evidence against the change.

The simulator applies decisions as the actions layer does, so the whole loop runs in the
engine: switch (with the agent's and its peers' baseline), outage, hold, recovery, verdict.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmedic.actions.probation import ProbationChange, parse_probation, probation_value
from agentmedic.actions.record import PROBATION, ActionRecord, PolicyRef, canonical_json
from agentmedic.engine import DecisionKind
from agentmedic.engine.stages.peers import FLEET_AGENTS
from tests.unit.test_engine_builders import SICK, Sim, fleet
from tests.unit.test_engine_probation import GOOD, _rule_spec, _run_until_verdict

OUTAGE = {**GOOD, "success_rate": 0.4}
"""Every agent fails more than half its executions: the provider is down."""
WINDOW = timedelta(minutes=5)


def _switched(n: int) -> tuple[Sim, Any]:
    sim = Sim(_rule_spec(), fleet(n))
    (switch,) = [d for d in sim.step(GOOD, a0=SICK).decisions if d.applies]
    assert switch.kind is DecisionKind.SWITCH_MODEL
    return sim, switch


def test_the_change_records_its_peers_median_beside_the_agents_own_baseline() -> None:
    _, switch = _switched(5)
    assert switch.baseline is not None
    assert switch.baseline["quality_score"] == 0.9  # the agent's own
    assert switch.baseline[FLEET_AGENTS] == 4.0  # a1..a4
    assert switch.baseline["fleet.success_rate"] == GOOD["success_rate"]
    assert switch.baseline["fleet.quality_score"] == 0.9


def test_a_regression_its_peers_share_is_held_then_judged_on_a_window_after_they_recover() -> None:
    sim, _ = _switched(5)
    assert sim.workload("a0").model == "gpt-4o-mini"
    held = []
    for _ in range(30):  # an outage of 15 minutes, three verify windows
        o = sim.step(OUTAGE, a0=SICK)
        held += o.probation
        assert not [d for d in o.decisions if d.applies], "nothing reverted during the outage"
    (said,) = held  # said once, however long the outage lasts
    assert said.verdict == "Inconclusive"
    assert said.action.startswith("held: its peers fell as far over the same window")
    assert "success_rate 99% → 40%" in said.summary
    assert not [n for n in o.notifications if n.state == "firing" and "probation" in n.summary]
    assert sim.workload("a0").model == "gpt-4o-mini"
    recovered = sim.now + sim.spec.interval
    verdicts = []
    for _ in range(20):
        o = sim.step(GOOD, a0=SICK)
        verdicts += o.probation
        if verdicts:
            break
    (verdict,) = verdicts
    assert verdict.verdict == "Verified"
    assert verdict.at - recovered >= WINDOW, "judged on a window that holds no outage"
    assert sim.workload("a0").model == "gpt-4o-mini"


def test_a_held_change_that_really_regressed_is_reverted_once_its_peers_recover() -> None:
    sim, _ = _switched(5)
    sim.steps(12, OUTAGE, a0=SICK)
    o = _run_until_verdict(sim, GOOD, a0={**SICK, "quality_score": 0.6})
    (verdict,) = o.probation
    assert verdict.verdict == "Regressed"
    assert "quality_score 90% → 60%" in verdict.summary
    (revert,) = [d for d in o.decisions if d.applies]
    assert revert.kind is DecisionKind.RESTORE
    assert sim.workload("a0").model == "gpt-4o"


def test_a_regression_on_a_signal_its_peers_kept_is_judged_during_the_outage() -> None:
    sim, _ = _switched(5)
    o = _run_until_verdict(sim, OUTAGE, a0={**SICK, "success_rate": 0.99, "quality_score": 0.6})
    (verdict,) = o.probation
    assert verdict.verdict == "Regressed"
    assert "quality_score 90% → 60%" in verdict.summary
    assert sim.workload("a0").model == "gpt-4o"


def test_too_few_peers_make_no_control_group_and_the_change_is_judged_alone() -> None:
    # systemicMinAgents 3 (the default): two peers are not a fleet.
    sim, switch = _switched(3)
    assert FLEET_AGENTS not in switch.baseline
    (verdict,) = _run_until_verdict(sim, OUTAGE, a0=SICK).probation
    assert verdict.verdict == "Regressed"
    assert sim.workload("a0").model == "gpt-4o"


def test_the_peers_figures_go_through_the_workloads_record_and_are_left_out_when_absent() -> None:
    at = datetime(2026, 12, 3, 12, tzinfo=UTC)
    with_peers = {"success_rate": 0.99, "executions": 120.0, "fleet.success_rate": 0.98}
    with_peers[FLEET_AGENTS] = 7.0

    def record(baseline: dict[str, Any]) -> dict[str, str]:
        action = ActionRecord(
            policy=PolicyRef("agents", "p"),
            rule="r",
            episode="uid/agents/a0/r/1",
            reason="why",
            at=at,
            baseline=baseline,
        )
        change = ProbationChange("switchModel", action, "gpt-4o", "gpt-4o-mini")
        return {PROBATION: canonical_json(probation_value(change))}

    parsed = parse_probation(record(with_peers))
    assert parsed is not None
    assert parsed.baseline["fleet.success_rate"] == 0.98
    assert parsed.baseline[FLEET_AGENTS] == 7.0
    alone = probation_value(
        ProbationChange(
            "switchModel",
            ActionRecord(
                policy=PolicyRef("agents", "p"),
                rule="r",
                episode="uid/agents/a0/r/1",
                reason="why",
                at=at,
                baseline={"success_rate": 0.99},
            ),
            "gpt-4o",
            "gpt-4o-mini",
        )
    )
    assert not [k for k in alone["baseline"] if k.startswith("fleet.")]
    assert alone["baseline"]["success_rate"] == 0.99


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    peers=st.integers(3, 7),
    success=st.floats(0.0, 0.9),
    latency=st.floats(1.0, 3.0),
    minutes=st.integers(5, 40),
)
def test_nothing_is_undone_while_the_whole_fleet_falls_as_one(
    peers: int, success: float, latency: float, minutes: int
) -> None:
    """Whatever the outage does to every agent alike (success down, p95 up), and however
    long it lasts, the change on probation is neither reverted nor paged as regressed."""
    sim, _ = _switched(peers + 1)
    outage = {**GOOD, "success_rate": success, "latency_p95_ms": 1000.0 * latency}
    for _ in range(minutes * 2):
        o = sim.step(outage, a0=SICK)
        assert not [d for d in o.decisions if d.applies and d.kind is DecisionKind.RESTORE]
        assert all(p.verdict != "Regressed" for p in o.probation)
    assert sim.workload("a0").model == "gpt-4o-mini"
