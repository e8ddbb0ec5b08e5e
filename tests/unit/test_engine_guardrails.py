"""Guardrails: blast radius, systemic outages, quiet hours, dry run, and the check chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentmedic.api.types import QuietHours
from agentmedic.engine import AgentInput, AgentStatus, DecisionReason, DisabledAgent
from agentmedic.engine.guardrails import GUARDRAILS
from agentmedic.engine.periods import in_quiet_hours
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    Sim,
    agent,
    cond,
    fleet,
    kinds,
    policy,
    rule,
)

# ---------------------------------------------------------------------------- blast radius


def test_max_disabled_percent_disables_the_worst_first_and_notifies_the_rest() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxDisabledPercent": 20})
    sim = Sim(spec, fleet(10))
    o = sim.step(a1={"error_rate": 0.3}, a2={"error_rate": 0.9}, a3={"error_rate": 0.6})
    assert kinds(o) == [("scaleToZero", "a2"), ("scaleToZero", "a3")]
    (held,) = [d for d in o.decisions if not d.applies]
    assert (held.agent.name, held.suppressed_by) == ("a1", DecisionReason.MAX_DISABLED)
    note = next(n for n in o.notifications if n.agent == agent("a1"))
    assert "MaxDisabled" in (note.action or "")
    assert o.counts.disabled == 2


def test_disabled_agents_of_other_policies_count_toward_the_cap() -> None:
    agents = fleet(10)
    agents[agent("a9")] = AgentInput(
        name="a9",
        replicas=0,
        model="gpt-4o",
        disabled=DisabledAgent("other-uid:agents/a9:x:1", "x", T0, previous_replicas=2),
    )
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxDisabledPercent": 20})
    o = Sim(spec, agents).step(a1=SICK, a2=SICK)
    assert len(o.workload_changes) == 1
    assert o.counts.disabled == 2


def test_held_back_agent_is_disabled_once_a_slot_frees() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"maxDisabledPercent": 10})
    sim = Sim(spec, fleet(10))
    sim.step(a1={"error_rate": 0.9}, a2={"error_rate": 0.5})
    assert sim.workload("a1").replicas == 0
    assert not sim.step(a2={"error_rate": 0.5}).workload_changes
    # A person restores a1 (the record goes, replicas come back) after fixing it.
    sim.set_workload("a1", AgentInput(name="a1", replicas=2, model="gpt-4o"))
    o = sim.step(a2={"error_rate": 0.5})
    assert kinds(o) == [("scaleToZero", "a2")]


def test_zero_percent_never_disables_but_other_actions_go_ahead() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero", "promptOptimization"]),
        guardrails={"maxDisabledPercent": 0},
    )
    o = Sim(spec, fleet(10)).step(a0=SICK)
    assert [(d.kind.value, d.suppressed_by) for d in o.decisions] == [
        ("scaleToZero", DecisionReason.MAX_DISABLED),
        ("promptOptimization", None),
    ]


def test_the_cap_rounds_down_so_a_single_agent_needs_100_percent() -> None:
    """As the field's documentation says: at 50 a policy over one agent disables none."""
    for percent, disabled in ((50, []), (99, []), (100, [("scaleToZero", "a0")])):
        spec = policy(
            rule("r", actions=["scaleToZero"]), guardrails={"maxDisabledPercent": percent}
        )
        o = Sim(spec, fleet(1)).step(a0=SICK)
        assert kinds(o) == disabled, percent
        if not disabled:
            assert [d.suppressed_by for d in o.decisions] == [DecisionReason.MAX_DISABLED]


# ---------------------------------------------------------------------------- systemic


def _outage(n_sick: int, n: int = 10, **guardrails: object) -> Sim:
    spec = policy(
        rule("r", actions=["scaleToZero"], for_="1m", notify=("oncall",)),
        guardrails={"systemicPercent": 60, **guardrails},
    )
    return Sim(spec, fleet(n))


def test_systemic_breach_pages_the_fleet_once_and_disables_nobody() -> None:
    sim = _outage(7)
    sick = {f"a{i}": SICK for i in range(7)}
    outcomes = [sim.step(**sick) for _ in range(10)]
    assert all(not o.decisions for o in outcomes)
    notes = [n for o in outcomes for n in o.notifications]
    assert [(n.agent, n.rule, n.state, n.channels) for n in notes] == [
        (None, "r", "firing", ("oncall",))
    ]
    assert notes[0].reason_code == DecisionReason.SYSTEMIC_OUTAGE
    assert "7 of 10 agents" in notes[0].summary
    assert outcomes[-1].counts.breaching == 7
    assert outcomes[-1].counts.disabled == 0


def test_outage_over_resolves_the_page_and_stragglers_need_a_fresh_for() -> None:
    sim = _outage(7)
    sick = {f"a{i}": SICK for i in range(7)}
    sim.steps(5, **sick)
    over = sim.step(a0=SICK)  # only a0 still fails
    assert [(n.agent, n.state, n.reason_code) for n in over.notifications] == [
        (None, "resolved", DecisionReason.OUTAGE_OVER)
    ]
    assert over.agents[agent("a0")] == AgentStatus.PENDING
    assert not over.decisions
    assert not sim.step(a0=SICK).decisions
    assert kinds(sim.step(a0=SICK)) == [("scaleToZero", "a0")]


def test_below_systemic_percent_agents_are_handled_one_by_one() -> None:
    sim = _outage(5)
    sick = {f"a{i}": SICK for i in range(5)}
    o = sim.steps(3, **sick)[-1]
    assert len(o.workload_changes) == 5
    assert all(n.agent is not None for n in o.notifications)


def test_fleets_smaller_than_systemic_min_agents_are_never_systemic() -> None:
    sim = _outage(2, n=2)
    o = sim.steps(3, a0=SICK, a1=SICK)[-1]
    assert len(o.workload_changes) == 2


def test_disabled_agents_do_not_dilute_or_join_the_systemic_count() -> None:
    agents = fleet(10)
    for i in (8, 9):
        agents[agent(f"a{i}")] = AgentInput(
            name=f"a{i}",
            replicas=0,
            disabled=DisabledAgent(f"x:agents/a{i}:r:1", "r", T0, 1),
        )
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), agents)
    o = sim.step(**{f"a{i}": SICK for i in range(5)})  # 5 of 8 running agents: 62.5%
    assert not o.workload_changes
    assert [n.agent for n in o.notifications] == [None]


# ---------------------------------------------------------------------------- quiet hours


def _qh(start: str, end: str, tz: str = "UTC", days: list[str] | None = None) -> QuietHours:
    return QuietHours.model_validate(
        {"start": start, "end": end, "timeZone": tz, "days": days or []}
    )


MON = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday (CET, UTC+1)
JUL = datetime(2025, 7, 7, tzinfo=UTC)  # a Monday (CEST, UTC+2)


@pytest.mark.parametrize(
    ("case", "window", "now", "inside"),
    [
        ("inside a daytime window", _qh("09:00", "17:00"), MON.replace(hour=12), True),
        ("the end is exclusive", _qh("09:00", "17:00"), MON.replace(hour=17), False),
        ("the start is inclusive", _qh("09:00", "17:00"), MON.replace(hour=9), True),
        ("overnight window before midnight", _qh("22:00", "07:00"), MON.replace(hour=23), True),
        ("overnight window after midnight", _qh("22:00", "07:00"), MON.replace(hour=6), True),
        ("overnight window outside", _qh("22:00", "07:00"), MON.replace(hour=12), False),
        (
            "time zone: 22:00 Berlin is 21:00 UTC in winter",
            _qh("22:00", "07:00", "Europe/Berlin"),
            MON.replace(hour=21, minute=30),
            True,
        ),
        (
            "time zone: 20:30 UTC is before 22:00 Berlin in winter",
            _qh("22:00", "07:00", "Europe/Berlin"),
            MON.replace(hour=20, minute=30),
            False,
        ),
        (
            "time zone: 20:30 UTC is 22:30 Berlin in summer",
            _qh("22:00", "07:00", "Europe/Berlin"),
            JUL.replace(hour=20, minute=30),
            True,
        ),
        (
            "days name the day the window starts: Sunday night runs into Monday",
            _qh("22:00", "07:00", days=["sun"]),
            MON.replace(hour=3),
            True,
        ),
        (
            "days: a Monday-night window is not open on Monday early morning",
            _qh("22:00", "07:00", days=["mon"]),
            MON.replace(hour=3),
            False,
        ),
        (
            "days: a weekend window is closed on Monday",
            _qh("00:00", "23:59", days=["sat", "sun"]),
            MON.replace(hour=12),
            False,
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and " " in x else "",
)
def test_quiet_hours(case: str, window: QuietHours, now: datetime, inside: bool) -> None:
    assert in_quiet_hours([window], now) is inside, case


def test_quiet_hours_hold_workload_changes_but_not_notifications() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        guardrails={"quietHours": [{"start": "11:00", "end": "12:05"}]},
    )
    sim = Sim(spec, fleet(4))
    o = sim.step(a0=SICK)
    assert [(d.kind.value, d.suppressed_by) for d in o.decisions] == [
        ("scaleToZero", DecisionReason.QUIET_HOURS)
    ]
    assert [n.state for n in o.notifications] == ["firing"]
    assert "QuietHours" in (o.notifications[0].action or "")
    assert sim.workload("a0").replicas == 2
    waiting = sim.steps(9, a0=SICK)
    assert all(not o.decisions for o in waiting)
    after = sim.step(a0=SICK)  # 12:05
    assert kinds(after) == [("scaleToZero", "a0")]


# ---------------------------------------------------------------------------- dry run


def test_dry_run_marks_decisions_and_changes_nothing() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"dryRun": True})
    sim = Sim(spec, fleet(10))
    before = dict(sim.input.agents)
    o = sim.step(a0=SICK)
    (d,) = o.decisions
    assert (d.dry_run, d.applies, d.suppressed_by) == (True, False, None)
    assert "dry run" in d.reason
    assert o.notifications[0].dry_run
    assert (o.notifications[0].action or "").startswith("would have scaled to zero")
    assert sim.input.agents == before
    assert o.agents[agent("a0")] == AgentStatus.BREACHING
    assert all(not x.decisions for x in sim.steps(5, a0=SICK)), "decided once per episode"


def test_dry_run_applies_the_blast_radius_cap_as_if_it_had_acted() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        guardrails={"dryRun": True, "maxDisabledPercent": 10},
    )
    o = Sim(spec, fleet(10)).step(a0={"error_rate": 0.9}, a1={"error_rate": 0.5})
    assert [(d.agent.name, d.dry_run, d.suppressed_by) for d in o.decisions] == [
        ("a0", True, None),
        ("a1", True, DecisionReason.MAX_DISABLED),
    ]


def test_dry_run_decides_again_in_a_new_episode() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"dryRun": True})
    sim = Sim(spec, fleet(10))
    sim.step(a0=SICK)
    sim.step()
    assert [d.dry_run for d in sim.step(a0=SICK).decisions] == [True]


# ---------------------------------------------------------------------------- the chain


def test_the_chain_reports_the_most_telling_reason_first() -> None:
    assert [c.__name__ for c in GUARDRAILS] == [
        "silenced",
        "systemic_outage",
        "quiet_hours",
        "cooldown",
        "max_disabled",
        "rate_limit",
    ]


def test_quiet_hours_are_reported_before_the_rate_limit() -> None:
    spec = policy(
        rule("r", cond(), actions=["scaleToZero"]),
        guardrails={"quietHours": [{"start": "00:00", "end": "23:59"}], "maxActionsPerHour": 0},
    )
    o = Sim(spec, fleet(4)).step(a0=SICK)
    assert [d.suppressed_by for d in o.decisions] == [DecisionReason.QUIET_HOURS]


def test_systemic_outage_of_a_rule_without_notify_channels_is_silent_but_still_acts_on_nobody() -> (
    None
):
    spec = policy(rule("r", actions=["scaleToZero"], notify=()))
    o = Sim(spec, fleet(10)).step(**{f"a{i}": SICK for i in range(8)})
    assert not o.notifications
    assert not o.decisions
    assert o.counts.breaching == 8
