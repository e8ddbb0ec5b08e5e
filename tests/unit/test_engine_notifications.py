"""Notifications: firing when an episode starts, resolved when it ends, to the right channels."""

from __future__ import annotations

from datetime import timedelta

from agentmedic.api.types import NotificationChannel, Severity
from agentmedic.engine import DecisionReason, PolicyState
from tests.unit.test_engine_builders import (
    SICK,
    Sim,
    agent,
    cond,
    fleet,
    policy,
    rule,
)


def test_firing_message_carries_the_evidence_the_action_and_how_to_undo_it() -> None:
    sim = Sim(
        policy(rule("r", cond(minSamples=20), actions=["scaleToZero"], severity="critical")),
        fleet(4),
    )
    (n,) = sim.step(a0=SICK).notifications
    assert (n.state, n.agent, n.rule, n.severity, n.channels) == (
        "firing",
        agent("a0"),
        "r",
        Severity.CRITICAL,
        ("oncall",),
    )
    assert n.episode == sim.history[0].decisions[0].episode
    assert n.action == "scaled to zero"
    assert n.undo == "agentmedic restore deployment/a0 -n agents"
    assert n.evidence is not None
    assert n.evidence.holds()
    assert n.summary == ("agents/a0: r firing — error_rate[5m] = 50% > 15% (n=100); scaled to zero")


def test_one_firing_message_per_episode_and_one_resolved_when_it_ends() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    states = [[n.state for n in sim.step(a0=SICK).notifications] for _ in range(5)]
    assert states == [["firing"], [], [], [], []]
    (resolved,) = sim.step().notifications
    assert (resolved.state, resolved.reason_code, resolved.channels) == (
        "resolved",
        DecisionReason.RESOLVED,
        ("oncall",),
    )
    assert resolved.episode == sim.history[0].notifications[0].episode


def test_channels_come_from_every_notify_action_of_the_rule_without_repeats() -> None:
    r = rule(
        "r",
        actions=[{"notify": {"channels": ["oncall", "data"]}}, {"notify": {"channels": ["data"]}}],
        notify=("finance",),
    )
    (n,) = Sim(policy(r), fleet(4)).step(a0=SICK).notifications
    assert n.channels == ("oncall", "data", "finance")


def test_a_rule_without_notify_actions_sends_nothing() -> None:
    o = Sim(policy(rule("r", actions=["promptOptimization"], notify=())), fleet(4)).step(a0=SICK)
    assert o.decisions
    assert not o.notifications


def test_an_agent_that_leaves_the_policy_resolves_its_episodes() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    sim.step(a0=SICK)
    agents = dict(sim.input.agents)
    del agents[agent("a0")]
    sim.input = type(sim.input)(sim.spec, "agents", "p", "uid-1", agents)
    (n,) = sim.step().notifications
    assert (n.state, n.agent, n.reason_code) == ("resolved", agent("a0"), DecisionReason.AGENT_GONE)
    assert sim.state is not None
    assert agent("a0") not in sim.state.agents


def test_a_lost_ledger_repeats_the_firing_message_with_the_same_episode_key() -> None:
    sim = Sim(policy(rule("r")), fleet(4))
    (first,) = sim.step(a0=SICK).notifications
    assert sim.state is not None
    sim.state = PolicyState(agents=sim.state.agents)  # the policy part was lost
    (again,) = sim.step(a0=SICK).notifications
    assert (again.state, again.episode) == ("firing", first.episode)


def test_messages_in_dry_run_say_so() -> None:
    spec = policy(rule("r", actions=["switchModel"]), guardrails={"dryRun": True})
    (n,) = Sim(spec, fleet(4)).step(a0=SICK).notifications
    assert n.dry_run
    assert n.action == "would have switched model gpt-4o → gpt-4o-mini (dry run)"
    assert n.undo is None


def test_a_still_firing_episode_is_announced_again_after_renotify_after() -> None:
    spec = policy(rule("r"))
    channels = spec.notifications.channels
    spec = spec.model_copy(
        update={
            "notifications": spec.notifications.model_copy(
                update={
                    "channels": [
                        c.model_copy(update={"renotify_after": timedelta(minutes=2)})
                        for c in channels
                    ]
                }
            )
        }
    )
    sim = Sim(spec, fleet(4))
    first = sim.step(a0=SICK).notifications
    quiet = [sim.step(a0=SICK).notifications for _ in range(3)]  # 90 s: not yet due
    (reminder,) = sim.step(a0=SICK).notifications  # 120 s after the first message
    after = sim.step(a0=SICK).notifications
    assert [n.state for n in first] == ["firing"]
    assert quiet == [[], [], []]
    assert (reminder.state, reminder.episode) == ("firing", first[0].episode)
    assert after == []
    (resolved,) = sim.step().notifications
    assert (resolved.state, resolved.episode) == ("resolved", first[0].episode)


def test_an_alertmanager_channel_is_reposted_every_repost_interval_not_renotify_after() -> None:
    spec = policy(rule("r"))
    am = NotificationChannel.model_validate(
        {"name": "oncall", "alertmanager": {"url": "http://am:9093", "repostInterval": "1m"}}
    )
    others = [c for c in spec.notifications.channels if c.name != "oncall"]
    spec = spec.model_copy(
        update={"notifications": spec.notifications.model_copy(update={"channels": [am, *others]})}
    )
    sim = Sim(spec, fleet(4))
    (first,) = sim.step(a0=SICK).notifications
    assert sim.step(a0=SICK).notifications == []  # 30 s: not yet due
    (repost,) = sim.step(a0=SICK).notifications  # 60 s after the first post
    assert (repost.state, repost.episode) == ("firing", first.episode)
    assert sim.step(a0=SICK).notifications == []
    (again,) = sim.step(a0=SICK).notifications
    assert again.episode == first.episode


def test_a_repost_of_the_episode_that_disabled_the_agent_still_says_how_to_undo_it() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]))
    am = NotificationChannel.model_validate(
        {"name": "oncall", "alertmanager": {"url": "http://am:9093", "repostInterval": "1m"}}
    )
    spec = spec.model_copy(
        update={"notifications": spec.notifications.model_copy(update={"channels": [am]})}
    )
    sim = Sim(spec, fleet(4))
    (first,) = sim.step(a0=SICK).notifications
    sim.step(a0=SICK)
    reposts = [n for n in sim.step(a0=SICK).notifications if n.episode == first.episode]
    assert first.undo is not None
    assert [(n.state, n.action, n.undo) for n in reposts] == [
        ("firing", "scaled to zero earlier in this episode", first.undo)
    ]
