"""Silences in the engine: matching, expiry, per rule, policy-wide, and what is recorded."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from agentmedic.engine import AgentId, DecisionReason, PolicyState, Silence
from tests.unit.test_engine_builders import NS, SICK, T0, Sim, agent, fleet, kinds, policy, rule

END = T0 + timedelta(minutes=5)


def silence(
    agent_name: str | None = "a1",
    *,
    policy_name: str | None = None,
    rule_name: str | None = None,
    ends_at: datetime = END,
    starts_at: datetime | None = None,
    name: str = "s1",
    namespace: str = NS,
) -> Silence:
    return Silence(
        name=name,
        namespace=namespace,
        ends_at=ends_at,
        reason="INC-42: provider incident, handled by hand",
        created_by="alice@example.com",
        starts_at=starts_at,
        agent=agent_name,
        policy=policy_name,
        rule=rule_name,
    )


def silenced_sim(*silences: Silence, rules: tuple[dict[str, object], ...] = ()) -> Sim:
    spec = policy(*(rules or (rule("r", actions=["scaleToZero"]),)))
    sim = Sim(spec, fleet(4))
    sim.input = replace(sim.input, silences=silences)
    return sim


def test_matching_by_agent_policy_rule_and_namespace() -> None:
    a1 = agent("a1")
    assert silence().covers("p", a1, "r")
    assert not silence().covers("p", agent("a2"), "r")
    assert not silence().covers("p", None, "r"), "an agent's silence never covers the fleet"
    assert not silence(namespace="other").covers("p", a1, "r")
    assert silence(rule_name="r").covers("p", a1, "r")
    assert not silence(rule_name="r").covers("p", a1, "other")
    assert silence(policy_name="p").covers("p", a1, "r")
    assert not silence(policy_name="q").covers("p", a1, "r")
    everyone = silence(None, policy_name="p")
    assert everyone.covers("p", a1, "r")
    assert everyone.covers("p", None, "r")
    assert not everyone.covers("q", AgentId(NS, "a1"), "r")


def test_a_silence_holds_from_its_start_until_just_before_its_end() -> None:
    s = silence(starts_at=T0, ends_at=END)
    assert not s.active(T0 - timedelta(seconds=1))
    assert s.active(T0)
    assert s.active(END - timedelta(seconds=1))
    assert not s.active(END)


def test_silenced_agent_is_not_changed_and_not_paged_and_the_suppression_is_recorded() -> None:
    sim = silenced_sim(silence("a1"))
    o = sim.step(a1=SICK, a2=SICK)
    assert kinds(o) == [("scaleToZero", "a2")], "the unsilenced agent is acted on"
    (held,) = [d for d in o.decisions if d.agent == agent("a1")]
    assert not held.applies
    assert held.suppressed_by == DecisionReason.SILENCED
    assert "silenced by alice@example.com until 2025-03-03 12:05Z" in held.reason
    assert "INC-42: provider incident" in held.reason
    assert "agentsilence/s1" in held.reason
    paged = {n.agent for n in o.notifications if n.state == "firing"}
    assert paged == {agent("a2")}
    assert sim.workload("a1").replicas == 2
    assert o.silences == (silence("a1"),)


def test_the_suppression_is_reported_once_and_rule_state_keeps_tracking() -> None:
    sim = silenced_sim(silence("a1"))
    sim.step(a1=SICK)
    again = sim.step(a1=SICK)
    assert not again.decisions, "reported once per episode and reason"
    assert not again.notifications
    assert sim.state is not None
    assert sim.state.agents[agent("a1")].rules["r"].firing_since == T0


def test_when_the_silence_ends_a_still_firing_rule_acts_and_pages_at_once() -> None:
    sim = silenced_sim(silence("a1", ends_at=T0 + timedelta(seconds=60)))
    sim.step(a1=SICK)
    sim.step(a1=SICK)  # T0+30s, still silenced
    o = sim.step(a1=SICK)  # T0+60s: the silence ended
    assert kinds(o) == [("scaleToZero", "a1")]
    assert [(n.agent, n.state) for n in o.notifications] == [(agent("a1"), "firing")]
    assert sim.workload("a1").replicas == 0


def test_an_expired_or_future_silence_is_ignored() -> None:
    for s in (
        silence("a1", ends_at=T0),
        silence("a1", starts_at=T0 + timedelta(hours=1), ends_at=T0 + timedelta(hours=2)),
    ):
        o = silenced_sim(s).step(a1=SICK)
        assert kinds(o) == [("scaleToZero", "a1")]
        assert o.silences == ()


def test_a_rule_silence_holds_only_that_rule() -> None:
    rules = (
        rule("errors", actions=["scaleToZero"]),
        rule("slow", {"metric": "latency_p95_ms", "op": ">", "value": 5000, "window": "5m"}),
    )
    sim = silenced_sim(silence("a1", rule_name="errors"), rules=rules)
    o = sim.step(a1={"error_rate": 0.5, "latency_p95_ms": 9000.0})
    assert not o.workload_changes
    assert [d.suppressed_by for d in o.decisions] == [DecisionReason.SILENCED]
    firing = [(n.rule, n.state) for n in o.notifications]
    assert firing == [("slow", "firing")], "the other rule still pages"


def test_a_policy_wide_silence_holds_every_agent_and_the_fleet_page() -> None:
    sim = silenced_sim(silence(None, policy_name="p"))
    o = sim.step(a0=SICK, a1=SICK, a2=SICK, a3=SICK)  # a systemic outage
    assert not o.workload_changes
    assert not o.notifications, "not even the fleet's systemic page"
    other = silenced_sim(silence(None, policy_name="another-policy"))
    assert other.step(a1=SICK).workload_changes


def test_a_page_sent_before_the_silence_stays_open_and_resolves_as_usual() -> None:
    spec = policy(rule("r"))  # notify only
    sim = Sim(spec, fleet(4))
    first = sim.step(a1=SICK)
    assert [n.state for n in first.notifications] == ["firing"]
    sim.input = replace(sim.input, silences=(silence("a1", ends_at=T0 + timedelta(hours=1)),))
    assert not sim.step(a1=SICK).notifications, "no reminder while silenced"
    healthy = sim.step()
    assert [(n.agent, n.state) for n in healthy.notifications] == [(agent("a1"), "resolved")]


def test_a_silence_holds_an_auto_recovery_restore_until_it_ends() -> None:
    spec = policy(
        rule("r", actions=["scaleToZero"]),
        recovery={"mode": "auto", "healthyFor": "1m"},
    )
    sim = Sim(spec, fleet(4))
    sim.step(a1=SICK)
    sim.step()  # the scale to zero is confirmed
    sim.input = replace(sim.input, silences=(silence("a1", ends_at=T0 + timedelta(minutes=10)),))
    held = [d for o in sim.steps(15) for d in o.decisions if d.kind.value == "restore"]
    assert sim.now == T0 + timedelta(minutes=8)
    assert [d.suppressed_by for d in held] == [DecisionReason.SILENCED]
    assert sim.workload("a1").replicas == 0
    restored = [d for o in sim.steps(4) for d in o.decisions if d.applies]
    assert [(d.kind.value, d.agent.name) for d in restored] == [("restore", "a1")]


def test_a_silenced_notify_only_rule_records_the_held_page_once_per_episode() -> None:
    sim = silenced_sim(silence("a1", ends_at=T0 + timedelta(minutes=2)), rules=(rule("r"),))
    first = sim.step(a1=SICK)
    assert not first.notifications
    (held,) = first.decisions
    assert (held.kind.value, held.agent, held.rule) == ("notify", agent("a1"), "r")
    assert not held.applies
    assert held.suppressed_by == DecisionReason.SILENCED
    assert sim.state is not None
    assert held.episode == sim.state.agents[agent("a1")].rules["r"].episode
    assert "page to oncall not sent" in held.reason
    assert "silenced by alice@example.com until 2025-03-03 12:02Z (agentsilence/s1)" in held.reason
    assert "INC-42: provider incident" in held.reason
    assert not sim.step(a1=SICK).decisions, "recorded once per episode, not per cycle"
    sim.state = PolicyState.from_dict(sim.state.to_dict())  # a restart reads it back
    assert not sim.step(a1=SICK).decisions, "nor again after a restart"
    sim.step(a1=SICK)
    ended = sim.step(a1=SICK)  # T0+2m: the silence ended
    assert not ended.decisions
    assert [(n.agent, n.state) for n in ended.notifications] == [(agent("a1"), "firing")]


def test_a_new_episode_under_the_same_silence_records_its_held_page_again() -> None:
    sim = silenced_sim(silence("a1"), rules=(rule("r"),))
    assert len(sim.step(a1=SICK).decisions) == 1
    assert not sim.step().decisions, "the episode ended: nothing to resolve, nothing held"
    again = sim.step(a1=SICK)
    assert [(d.kind.value, d.suppressed_by) for d in again.decisions] == [
        ("notify", DecisionReason.SILENCED)
    ]


def test_a_held_workload_change_is_the_only_record_of_its_episode() -> None:
    sim = silenced_sim(silence("a1"))
    o = sim.step(a1=SICK)
    assert [(d.kind.value, d.suppressed_by) for d in o.decisions] == [
        ("scaleToZero", DecisionReason.SILENCED)
    ], "the held change names the silence; no second line for its page"


def test_a_page_sent_before_the_silence_is_not_recorded_as_held() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    sim.step(a1=SICK)
    sim.input = replace(sim.input, silences=(silence("a1", ends_at=T0 + timedelta(hours=1)),))
    assert not sim.step(a1=SICK).decisions
