"""Recovery: disabled agents are frozen, manual and auto recovery, people's restores."""

from __future__ import annotations

from datetime import timedelta

from agentmedic.engine import AgentInput, AgentStatus, DecisionReason, DisabledAgent
from tests.unit.test_engine_builders import (
    SICK,
    T0,
    Sim,
    agent,
    fleet,
    kinds,
    policy,
    rule,
)

NO_DATA = {"error_rate": None, "executions": None}
"""A disabled agent runs nothing: its series are gone."""


def _disabled_sim(recovery: dict[str, str] | None = None, **extra: object) -> Sim:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        recovery=recovery,
        no_data={"mode": "notify", "after": "1m", "channels": ["data"]},
        **extra,  # type: ignore[arg-type]
    )
    sim = Sim(spec, fleet(4))
    assert kinds(sim.step(a0=SICK)) == [("scaleToZero", "a0")]
    return sim


def test_manual_recovery_keeps_a_disabled_agent_down_and_its_episode_open() -> None:
    sim = _disabled_sim()
    later = [sim.step(a0=NO_DATA, after=timedelta(minutes=10)) for _ in range(12)]
    assert all(not o.decisions and not o.notifications for o in later)
    assert later[-1].agents[agent("a0")] == AgentStatus.DISABLED
    assert later[-1].counts.no_data == 0, "a disabled agent does not count as missing data"
    assert sim.state is not None
    assert sim.state.agent(agent("a0")).rules["r"].firing


def test_a_persons_restore_ends_nothing_until_the_agent_is_healthy() -> None:
    sim = _disabled_sim()
    sim.step(a0=NO_DATA)  # the record is seen: the change is confirmed
    sim.set_workload("a0", AgentInput(name="a0", replicas=2, model="gpt-4o"))  # restored by hand
    still_bad = sim.steps(3, a0=SICK)
    assert all(not o.decisions for o in still_bad), "the episode already acted: no re-disable"
    assert still_bad[-1].agents[agent("a0")] == AgentStatus.BREACHING
    healthy = sim.step()
    assert [(n.state, n.reason_code) for n in healthy.notifications] == [
        ("resolved", DecisionReason.RESOLVED)
    ]
    assert healthy.agents[agent("a0")] == AgentStatus.HEALTHY


def test_auto_recovery_restores_a_disabled_agent_after_healthy_for() -> None:
    sim = _disabled_sim({"mode": "auto", "healthyFor": "10m"})
    early = sim.step(a0=NO_DATA, after=timedelta(minutes=9))
    assert not early.decisions
    o = sim.step(a0=NO_DATA, after=timedelta(minutes=1))
    (d,) = o.decisions
    assert (d.kind.value, d.reason_code) == ("restore", DecisionReason.AUTO_RECOVERY)
    assert d.restore is not None
    assert d.restore.replicas
    assert d.evidence.holds()
    assert d.evidence.for_ == timedelta(minutes=10)
    assert sim.workload("a0").replicas == 2
    back = sim.step()
    assert [(n.state, n.reason_code) for n in back.notifications] == [
        ("resolved", DecisionReason.RESTORED)
    ]
    assert back.agents[agent("a0")] == AgentStatus.HEALTHY


def test_a_relapse_after_auto_recovery_is_a_new_episode_and_acts_again() -> None:
    sim = _disabled_sim({"mode": "auto", "healthyFor": "10m"})
    sim.step(a0=NO_DATA, after=timedelta(minutes=10))
    assert sim.workload("a0").replicas == 2
    sim.step(a0=NO_DATA)  # restore observed: the episode ends
    relapse = sim.step(a0=SICK)
    assert kinds(relapse) == [("scaleToZero", "a0")]
    assert relapse.decisions[0].episode != sim.history[0].decisions[0].episode


def test_auto_recovery_steps_a_downgraded_model_back_one_tier_per_healthy_spell() -> None:
    spec = policy(rule("r", actions=["switchModel"]), recovery={"mode": "auto", "healthyFor": "5m"})
    sim = Sim(spec, fleet(4))
    sim.step(a0=SICK)
    sim.step()
    sim.step(a0=SICK)
    assert sim.workload("a0").model == "gpt-4.1-nano"
    models = []
    for _ in range(30):
        o = sim.step()
        models.append(sim.workload("a0").model)
        for d in o.decisions:
            assert d.kind.value == "restore"
            assert d.evidence.holds()
    assert models.count("gpt-4.1-nano") == 10  # healthyFor from the first healthy cycle
    assert models.count("gpt-4o-mini") == 11  # the next step waits another healthyFor
    assert models[-1] == "gpt-4o"
    assert sim.workload("a0").downgraded is None
    assert sim.history[-1].agents[agent("a0")] == AgentStatus.HEALTHY


def test_manual_recovery_leaves_a_downgraded_model_alone() -> None:
    sim = Sim(policy(rule("r", actions=["switchModel"])), fleet(4))
    sim.step(a0=SICK)
    later = [sim.step(after=timedelta(hours=1)) for _ in range(5)]
    assert all(not o.decisions for o in later)
    assert sim.workload("a0").model == "gpt-4o-mini"


def test_no_step_up_while_the_budget_stage_that_applies_is_still_firing() -> None:
    spec = policy(
        rule("r", actions=["switchModel"]),
        budget={"limitUSD": 50, "soft": {"atPercent": 80, "actions": []}},
        recovery={"mode": "auto", "healthyFor": "1m"},
    )
    sim = Sim(spec, fleet(4))
    sim.step(a0=SICK)
    quiet = [sim.step(a0={"spend": 45.0}) for _ in range(6)]
    assert all(not o.decisions for o in quiet)
    assert sim.workload("a0").model == "gpt-4o-mini"


def test_restore_waits_for_quiet_hours_and_says_so_once() -> None:
    sim = _disabled_sim(
        {"mode": "auto", "healthyFor": "10m"},
        guardrails={"quietHours": [{"start": "12:05", "end": "13:00"}]},
    )
    o = sim.step(a0=NO_DATA, after=timedelta(minutes=10))
    assert [(d.kind.value, d.suppressed_by) for d in o.decisions] == [
        ("restore", DecisionReason.QUIET_HOURS)
    ]
    assert all(not x.decisions for x in sim.steps(10, a0=NO_DATA))
    end = sim.step(a0=NO_DATA, after=timedelta(minutes=45))
    assert [(d.kind.value, d.applies) for d in end.decisions] == [("restore", True)]


def test_a_restore_that_never_lands_is_decided_again() -> None:
    sim = _disabled_sim({"mode": "auto", "healthyFor": "10m"})
    sim.apply = False
    first = sim.step(a0=NO_DATA, after=timedelta(minutes=10)).decisions
    assert not sim.step(a0=NO_DATA).decisions
    again = sim.step(a0=NO_DATA).decisions
    assert [(d.kind, d.episode) for d in again] == [(d.kind, d.episode) for d in first]


def test_agents_disabled_by_another_policy_are_held_but_not_restored_by_this_one() -> None:
    agents = fleet(4)
    agents[agent("a0")] = AgentInput(
        name="a0",
        replicas=0,
        disabled=DisabledAgent("other-uid:agents/a0:x:1", "x", T0 - timedelta(days=1), 2),
    )
    spec = policy(rule("r", actions=["scaleToZero"]), recovery={"mode": "auto", "healthyFor": "1m"})
    sim = Sim(spec, agents)
    outcomes = sim.steps(5, a0=NO_DATA)
    assert all(not o.decisions for o in outcomes)
    assert outcomes[-1].agents[agent("a0")] == AgentStatus.DISABLED


def test_a_workload_scaled_to_zero_by_someone_else_is_held_quietly() -> None:
    agents = fleet(4)
    agents[agent("a0")] = AgentInput(name="a0", replicas=0, model="gpt-4o")
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        no_data={"mode": "breach", "after": "1m", "channels": ["data"]},
    )
    outcomes = Sim(spec, agents).steps(10, a0=NO_DATA)
    assert all(not o.decisions and not o.notifications for o in outcomes)
    assert outcomes[-1].agents[agent("a0")] == AgentStatus.NO_DATA


def test_auto_restore_waits_at_least_the_longest_window_so_stale_data_never_judges() -> None:
    sim = _disabled_sim({"mode": "auto", "healthyFor": "1m"})  # the rule's window is 5m
    assert not sim.step(a0=NO_DATA, after=timedelta(minutes=4)).decisions
    (d,) = sim.step(a0=NO_DATA, after=timedelta(minutes=1)).decisions
    assert d.evidence.for_ == timedelta(minutes=5)
    assert "longest window 5m" in d.reason
