"""The delivery ledger: dedup, renotify, resolve-after-firing, rate limit, persistence, bounds."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmedic.api.types import Severity
from agentmedic.engine.series import AgentId
from agentmedic.notify import (
    ChannelKind,
    DeliveryLedger,
    Message,
    MessageState,
    Overflow,
    Reason,
    ResolvedChannel,
    Secret,
)
from agentmedic.notify.ledger import Admission, Suppression

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
FIRING, RESOLVED = MessageState.FIRING, MessageState.RESOLVED
MIN = timedelta(minutes=1)


def channel(**changes: object) -> ResolvedChannel:
    base = ResolvedChannel(
        "oncall",
        ChannelKind.SLACK,
        Secret("https://hooks.slack.com/services/T/B/x"),
        max_per_hour=30,
        renotify_after=timedelta(hours=4),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def message(episode: str = "ep-1", state: MessageState = FIRING, **changes: object) -> Message:
    base = Message(
        episode=episode,
        policy_namespace="agents",
        policy_name="support-bot",
        agent=AgentId("agents", "support-bot"),
        rule="low-success",
        severity=Severity.HIGH,
        state=state,
        summary="success rate 62%",
        time=T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def admitted(decision: Admission | Suppression) -> Admission:
    assert isinstance(decision, Admission), decision
    return decision


def suppressed(decision: Admission | Suppression, reason: Reason) -> Suppression:
    assert isinstance(decision, Suppression), decision
    assert decision.reason is reason, decision
    return decision


def send(
    ledger: DeliveryLedger, msg: Message, at: datetime, ch: ResolvedChannel | None = None
) -> Admission | Suppression:
    """Admit and, if admitted, settle as delivered."""
    decision = ledger.admit(ch or channel(), msg, at)
    if isinstance(decision, Admission):
        ledger.settle(decision, delivered=True)
    return decision


def test_a_repeat_is_dropped_until_renotify_after_then_sent_as_a_reminder() -> None:
    ledger = DeliveryLedger()
    assert not admitted(send(ledger, message(), T0)).delivery.repeat

    early = send(ledger, message(), T0 + timedelta(hours=3, minutes=59))
    later = send(ledger, message(), T0 + timedelta(hours=4))

    assert "renotifyAfter (4h)" in suppressed(early, Reason.DUPLICATE).detail
    assert admitted(later).delivery.repeat
    suppressed(send(ledger, message(), T0 + timedelta(hours=5)), Reason.DUPLICATE)


def test_a_resolve_needs_a_firing_message_sent_before_and_goes_out_once() -> None:
    ledger = DeliveryLedger()
    suppressed(send(ledger, message(state=RESOLVED), T0), Reason.NOT_SENT_AS_FIRING)

    send(ledger, message(), T0)
    admitted(send(ledger, message(state=RESOLVED), T0 + 10 * MIN))
    suppressed(send(ledger, message(state=RESOLVED), T0 + 11 * MIN), Reason.DUPLICATE)


def test_firing_again_after_a_resolve_is_news_not_a_duplicate() -> None:
    ledger = DeliveryLedger()
    send(ledger, message(), T0)
    send(ledger, message(state=RESOLVED), T0 + MIN)

    again = admitted(send(ledger, message(), T0 + 2 * MIN))

    assert not again.delivery.repeat


def test_messages_below_the_channels_min_severity_are_not_sent_nor_resolved() -> None:
    ledger = DeliveryLedger()
    picky = channel(min_severity=Severity.HIGH)

    suppressed(
        send(ledger, message(severity=Severity.MEDIUM), T0, picky), Reason.BELOW_MIN_SEVERITY
    )
    suppressed(
        send(ledger, message(state=RESOLVED, severity=Severity.MEDIUM), T0, picky),
        Reason.NOT_SENT_AS_FIRING,
    )
    admitted(send(ledger, message(severity=Severity.CRITICAL), T0, picky))


def test_rate_limit_holds_back_the_excess_and_the_next_message_summarises_it() -> None:
    ledger = DeliveryLedger()
    two_an_hour = channel(max_per_hour=2)
    for i in range(5):
        send(ledger, message(f"ep-{i}"), T0 + timedelta(minutes=i), two_an_hour)

    # The first send leaves the window an hour later; one slot opens.
    suppressed(send(ledger, message("ep-5"), T0 + 59 * MIN, two_an_hour), Reason.RATE_LIMITED)
    next_one = admitted(send(ledger, message("ep-6"), T0 + 60 * MIN, two_an_hour))
    after = admitted(send(ledger, message("ep-7"), T0 + 61 * MIN, two_an_hour))

    assert next_one.delivery.overflow == Overflow(4, T0 + 2 * MIN)
    assert "4 more messages were held back" in next_one.delivery.notes[0]
    assert after.delivery.overflow is None


def test_resolves_of_sent_episodes_pass_a_full_rate_limit() -> None:
    ledger = DeliveryLedger()
    one_an_hour = channel(max_per_hour=1)
    send(ledger, message("ep-a"), T0, one_an_hour)
    suppressed(send(ledger, message("ep-b"), T0, one_an_hour), Reason.RATE_LIMITED)

    resolve = admitted(send(ledger, message("ep-a", RESOLVED), T0 + MIN, one_an_hour))

    assert resolve.delivery.overflow == Overflow(1, T0)


def test_an_undelivered_send_leaves_no_trace() -> None:
    ledger = DeliveryLedger()
    one_an_hour = channel(max_per_hour=1)
    send(ledger, message("ep-0"), T0, one_an_hour)
    held = send(ledger, message("ep-y"), T0 + MIN, one_an_hour)
    suppressed(held, Reason.RATE_LIMITED)

    attempt = admitted(ledger.admit(one_an_hour, message("ep-1"), T0 + 60 * MIN))
    ledger.settle(attempt, delivered=False)

    # Not recorded as sent, its rate slot free again, the overflow summary kept for later.
    resolve = ledger.admit(one_an_hour, message("ep-1", RESOLVED), T0 + 61 * MIN)
    suppressed(resolve, Reason.NOT_SENT_AS_FIRING)
    retry = admitted(ledger.admit(one_an_hour, message("ep-1"), T0 + 61 * MIN))
    assert retry.delivery.overflow == Overflow(1, T0 + MIN)


def test_a_send_in_flight_makes_a_concurrent_duplicate_a_duplicate() -> None:
    ledger = DeliveryLedger()
    admitted(ledger.admit(channel(), message(), T0))

    suppressed(ledger.admit(channel(), message(), T0), Reason.DUPLICATE)


def test_the_same_channel_name_in_two_policies_is_two_channels() -> None:
    ledger = DeliveryLedger()
    send(ledger, message(), T0)

    admitted(send(ledger, message(policy_name="other-policy"), T0))


def test_state_round_trips_through_json_and_keeps_every_decision() -> None:
    ledger = DeliveryLedger()
    two_an_hour = channel(max_per_hour=2)
    send(ledger, message("ep-1"), T0, two_an_hour)
    send(ledger, message("ep-2"), T0, two_an_hour)
    send(ledger, message("ep-3"), T0, two_an_hour)  # held back
    send(ledger, message("ep-1", RESOLVED), T0, two_an_hour)

    restored = DeliveryLedger.from_json(json.loads(json.dumps(ledger.to_json())))

    later = T0 + 5 * MIN
    suppressed(restored.admit(two_an_hour, message("ep-2"), later), Reason.DUPLICATE)
    suppressed(restored.admit(two_an_hour, message("ep-1", RESOLVED), later), Reason.DUPLICATE)
    suppressed(restored.admit(two_an_hour, message("ep-4"), later), Reason.RATE_LIMITED)
    resolve = admitted(restored.admit(two_an_hour, message("ep-2", RESOLVED), later))
    # ep-3's overflow went out with ep-1's resolve; ep-4's is new.
    assert resolve.delivery.overflow == Overflow(1, later)


def test_state_is_bounded_and_forgets_resolved_episodes_before_firing_ones() -> None:
    ledger = DeliveryLedger(max_episodes=8, max_channels=3)
    roomy = channel(max_per_hour=10_000)
    send(ledger, message("firing-early"), T0, roomy)
    for i in range(100):
        at = T0 + timedelta(seconds=i + 1)
        send(ledger, message(f"ep-{i}"), at, roomy)
        send(ledger, message(f"ep-{i}", RESOLVED), at, roomy)
    for p in range(5):
        send(ledger, message(policy_name=f"p{p}"), T0, roomy)

    state = ledger.to_json()

    assert len(state["channels"]) == 3
    assert len(ledger) == 3
    assert all(len(c["episodes"]) <= 8 for c in state["channels"].values())
    assert len(json.dumps(state)) < 4000


def test_firing_episode_survives_eviction_while_resolved_ones_remain() -> None:
    ledger = DeliveryLedger(max_episodes=4)
    send(ledger, message("firing-early"), T0)
    for i in range(10):
        at = T0 + timedelta(seconds=i + 1)
        send(ledger, message(f"ep-{i}"), at)
        send(ledger, message(f"ep-{i}", RESOLVED), at)

    admitted(ledger.admit(channel(), message("firing-early", RESOLVED), T0 + MIN))


def test_pruning_forgets_old_resolves_and_stale_episodes() -> None:
    ledger = DeliveryLedger(resolved_retention=timedelta(hours=1), stale_after=timedelta(days=1))
    send(ledger, message("done"), T0)
    send(ledger, message("done", RESOLVED), T0)
    send(ledger, message("forgotten"), T0)

    ledger.prune(T0 + timedelta(days=2))

    assert ledger.to_json()["channels"] == {}


@pytest.mark.parametrize(
    "data",
    [[], {"version": 2, "channels": {}}, {"version": 1}, {"version": 1, "channels": []}],
)
def test_importing_something_else_than_a_ledger_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="ledger"):
        DeliveryLedger.from_json(data)  # type: ignore[arg-type]


def test_importing_skips_malformed_entries_and_keeps_the_rest() -> None:
    data = {
        "version": 1,
        "channels": {
            "agents/support-bot/oncall": {
                "sent": [T0.timestamp(), "yesterday", None],
                "episodes": {"ep-1": {"firing": T0.timestamp()}, "ep-2": "bogus", "ep-3": {}},
                "overflow": {"count": True, "since": "x"},
            },
            "broken": 42,
        },
    }

    ledger = DeliveryLedger.from_json(data)

    assert list(ledger.to_json()["channels"]) == ["agents/support-bot/oncall"]
    suppressed(ledger.admit(channel(), message("ep-1"), T0 + MIN), Reason.DUPLICATE)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=900),  # seconds to advance
            st.integers(min_value=0, max_value=6),  # episode
            st.booleans(),  # resolve?
            st.booleans(),  # delivered?
        ),
        max_size=80,
    ),
    limit=st.integers(min_value=1, max_value=5),
)
def test_no_sliding_hour_ever_holds_more_firing_sends_than_max_per_hour(
    steps: list[tuple[int, int, bool, bool]], limit: int
) -> None:
    ledger = DeliveryLedger()
    ch = channel(max_per_hour=limit, renotify_after=20 * MIN)
    now = T0
    firing_sent: list[datetime] = []
    for advance, episode, resolve, delivered in steps:
        now += timedelta(seconds=advance)
        decision = ledger.admit(ch, message(f"ep-{episode}", RESOLVED if resolve else FIRING), now)
        if isinstance(decision, Admission):
            ledger.settle(decision, delivered=delivered)
            if delivered and not resolve:
                firing_sent.append(now)
        ledger = DeliveryLedger.from_json(ledger.to_json()) if advance % 7 == 0 else ledger

    for start in firing_sent:
        in_hour = [t for t in firing_sent if start <= t < start + timedelta(hours=1)]
        assert len(in_hour) <= limit


# --------------------------------------------------------------------------- handing over


def test_a_policy_slice_moves_to_another_ledger_and_a_resolve_follows_the_firing_there() -> None:
    old = DeliveryLedger()
    admitted(old.admit(channel(), message(), T0))
    admitted(old.admit(channel(), message(policy_name="other"), T0))
    state = json.loads(json.dumps(old.export_policy("agents", "support-bot", T0)))
    assert list(state["channels"]) == ["agents/support-bot/oncall"]

    new = DeliveryLedger()
    new.import_policy("agents", "support-bot", state)
    assert isinstance(new.admit(channel(), message(), T0 + MIN), Suppression)
    resolve = admitted(new.admit(channel(), message(state=RESOLVED), T0 + 2 * MIN))
    assert resolve.state is RESOLVED
    new.import_policy("agents", "support-bot", None)
    assert len(new) == 0


def test_a_reserved_send_settles_in_the_ledger_of_the_operator_that_took_over() -> None:
    old = DeliveryLedger()
    reserved = admitted(old.admit(channel(), message(), T0))
    state = old.export_policy("agents", "support-bot", T0)
    copy = Admission.from_json(json.loads(json.dumps(reserved.to_json())))
    assert copy == reserved

    new = DeliveryLedger()
    new.import_policy("agents", "support-bot", state)
    new.settle(copy, delivered=False)  # the send failed: the episode may be sent again
    assert isinstance(new.admit(channel(), message(), T0 + MIN), Admission)


def test_a_message_survives_its_json_form() -> None:
    from agentmedic.notify import Evidence

    m = message(
        evidence=(Evidence("error_rate > 0.15", 0.31, 0.15, timedelta(minutes=5)),),
        action="scaled to zero",
        undo="agentmedic restore agents/support-bot",
        dry_run=True,
    )
    assert Message.from_json(json.loads(json.dumps(m.to_json()))) == m
    with pytest.raises(ValueError, match="not a message"):
        Message.from_json({"episode": "x"})


# --------------------------------------------------------------------------- shared channels


def test_a_shared_channels_limit_counts_every_policy_naming_it() -> None:
    ledger = DeliveryLedger()
    shared = channel(max_per_hour=2, shared_key="ClusterNotificationChannel//oncall")
    policies = [message(f"ep-{p}", policy_name=p) for p in ("a", "b", "c")]
    admitted(ledger.admit(shared, policies[0], T0))
    admitted(ledger.admit(shared, policies[1], T0 + MIN))
    held = suppressed(ledger.admit(shared, policies[2], T0 + 2 * MIN), Reason.RATE_LIMITED)
    assert "maxPerHour (2)" in held.detail
    # An hour after the first send there is room again, for any of them.
    admitted(ledger.admit(shared, message("ep-c2", policy_name="c"), T0 + 61 * MIN))


def test_inline_channels_of_the_same_name_keep_a_limit_per_policy() -> None:
    ledger = DeliveryLedger()
    inline = channel(max_per_hour=1)
    for p in ("a", "b", "c"):
        admitted(ledger.admit(inline, message(f"ep-{p}", policy_name=p), T0))


def test_a_shared_channels_sends_survive_a_restart_from_each_policys_state() -> None:
    ledger = DeliveryLedger()
    shared = channel(max_per_hour=2, shared_key="NotificationChannel/agents/team")
    admitted(ledger.admit(shared, message("ep-a", policy_name="a"), T0))
    admitted(ledger.admit(shared, message("ep-b", policy_name="b"), T0))
    stored = {p: json.loads(json.dumps(ledger.export_policy("agents", p, T0))) for p in "ab"}
    fresh = DeliveryLedger()
    for p in "ab":
        fresh.import_policy("agents", p, stored[p])
    # The limit is reached from what the two policies stored: a third policy is held back.
    suppressed(fresh.admit(shared, message("ep-c", policy_name="c"), T0 + MIN), Reason.RATE_LIMITED)
    # Each policy's episodes are still its own: a's is a duplicate, not b's business.
    suppressed(fresh.admit(shared, message("ep-a", policy_name="a"), T0 + MIN), Reason.DUPLICATE)
