"""The Notifier against real HTTP receivers on loopback (agentmedic_sandbox.receivers).

Channels are built the way the operator builds them: from the AgentPolicy's
NotificationChannel models and a secret lookup. Time is a fake clock and retry waits
are recorded instead of slept, so nothing here waits except the one timeout test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.api.types import NotificationChannel, Severity
from agentmedic.engine.series import AgentId
from agentmedic.notify import (
    ChannelConfigError,
    Evidence,
    Message,
    MessageState,
    Notifier,
    Outcome,
    Reason,
    ResolvedChannel,
    RetryPolicy,
    Secret,
    resolve_channel,
)
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
HMAC_KEY = "whsec-0f4e2a9c1b7d"
EPISODE = "agents/support-bot/quality-degradation/1736154000"
UNDO = "kubectl annotate deployment/support-bot -n agents agentmedic.io/restore=true"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RecordedSleeps:
    """Stands in for asyncio.sleep: remembers each requested wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def receivers() -> Iterator[NotificationReceivers]:
    with NotificationReceivers(webhook_hmac_key=HMAC_KEY, require_signature=True) as rx:
        yield rx


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def notifier(clock: FakeClock, sleeps: RecordedSleeps) -> Any:
    async with Notifier(clock=clock, sleep=sleeps) as n:
        yield n


def policy_channels(rx: NotificationReceivers, **limits: Any) -> dict[str, ResolvedChannel]:
    """oncall-slack, pagerduty and finance (signed webhook), resolved from Secrets."""
    data = {("notify", k): v for k, v in rx.secret_data().items()}
    specs = [
        {
            "name": "oncall-slack",
            "slack": {"webhookSecretRef": {"name": "notify", "key": "slack-url"}},
        },
        {
            "name": "pagerduty",
            "pagerduty": {
                "routingKeySecretRef": {"name": "notify", "key": "pagerduty-routing-key"},
                "url": rx.url_for(ReceiverKind.PAGERDUTY),
            },
        },
        {
            "name": "finance",
            "webhook": {
                "urlSecretRef": {"name": "notify", "key": "webhook-url"},
                "hmacSecretRef": {"name": "notify", "key": "webhook-hmac-key"},
            },
        },
    ]
    return {
        spec["name"]: resolve_channel(
            NotificationChannel.model_validate({**spec, **limits}),
            lambda name, key: data[(name, key)],
        )
        for spec in specs
    }


def message(**changes: Any) -> Message:
    base = Message(
        episode=EPISODE,
        policy_namespace="agents",
        policy_name="support-bot",
        agent=AgentId("agents", "support-bot"),
        rule="quality-degradation",
        severity=Severity.HIGH,
        state=MessageState.FIRING,
        summary="error rate 31% and p95 latency 12.4 s for 6m",
        time=T0,
        evidence=(
            Evidence("error_rate > 0.15", 0.31, 0.15, timedelta(minutes=5)),
            Evidence("latency_p95_ms > 10000", 12400.0, 10000, timedelta(minutes=5)),
        ),
        action="scaled deployment agents/support-bot to 0 (was 3)",
        undo=UNDO,
    )
    return dataclasses.replace(base, **changes)


def resolved(**changes: Any) -> Message:
    return message(state=MessageState.RESOLVED, summary="healthy again", **changes)


# --------------------------------------------------------------------------- payloads


async def test_slack_gets_a_block_kit_message_with_agent_rule_severity_evidence_and_undo(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    """Slack incoming webhooks answer 200 "ok" (api.slack.com changelog 2016-05, "Improving
    error conditions for Incoming Webhooks"); block shapes and limits from
    docs.slack.dev/reference/block-kit/blocks (header plain_text ≤ 150, section text ≤ 3000,
    ≤ 10 fields of ≤ 2000, context ≤ 10 elements). The receiver checks the same limits."""
    channels = policy_channels(receivers)

    report = await notifier.notify(message(), [channels["oncall-slack"]])

    assert report.result("oncall-slack").outcome is Outcome.SENT
    [got] = receivers.wait_for(1, kind=ReceiverKind.SLACK)
    assert (got.status, got.problems) == (200, ())
    payload = got.json()
    assert payload["text"]
    blocks = payload["blocks"]
    assert [b["type"] for b in blocks] == [
        "header",
        "section",
        "section",
        "section",
        "section",
        "context",
    ]
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "Firing: quality-degradation on agents/support-bot",
        "emoji": True,
    }
    fields = dict(f["text"].split("\n", 1) for f in blocks[2]["fields"])
    assert fields["*Agent*"] == "agents/support-bot"
    assert fields["*Rule*"] == "quality-degradation"
    assert fields["*Severity*"] == "high"
    assert fields["*State*"] == "firing"
    assert "error_rate[5m] = 31% &gt; 15%" in blocks[3]["text"]["text"]
    assert "scaled deployment agents/support-bot to 0 (was 3)" in blocks[4]["text"]["text"]
    assert blocks[5]["elements"][0]["text"] == f"Undo: `{UNDO}`"


async def test_pagerduty_trigger_and_resolve_carry_the_documented_fields(
    receivers: NotificationReceivers, notifier: Notifier, clock: FakeClock
) -> None:
    """PagerDuty Events API v2 "Send an Alert Event": routing_key, event_action
    trigger|resolve, dedup_key ≤ 255 correlating them, payload.summary ≤ 1024, source,
    severity in critical|error|warning|info; 202 Accepted on success."""
    pagerduty = policy_channels(receivers)["pagerduty"]

    fired = await notifier.notify(message(), [pagerduty])
    clock.advance(minutes=20)
    ended = await notifier.notify(resolved(), [pagerduty])

    assert fired.sent == ended.sent == ("pagerduty",)
    trigger, resolve = (r.json() for r in receivers.wait_for(2, kind=ReceiverKind.PAGERDUTY))
    assert trigger["routing_key"] == receivers.pagerduty_routing_key
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == EPISODE
    payload = trigger["payload"]
    assert payload["summary"] == (
        "quality-degradation on agents/support-bot: error rate 31% and p95 latency 12.4 s for 6m"
    )
    assert payload["source"] == "agents/support-bot"
    assert payload["severity"] == "error"
    assert (payload["component"], payload["group"], payload["class"]) == (
        "support-bot",
        "agents/support-bot",
        "quality-degradation",
    )
    assert payload["custom_details"]["undo"] == UNDO
    assert resolve == {
        "routing_key": receivers.pagerduty_routing_key,
        "event_action": "resolve",
        "dedup_key": EPISODE,
    }
    assert all(r.status == 202 and not r.problems for r in receivers.received)


async def test_webhook_body_is_signed_and_the_receiver_verifies_the_signature(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    """X-Agentmedic-Signature: sha256=<hex HMAC-SHA256 of the raw body> (as documented on
    WebhookChannel.hmacSecretRef); the receiver recomputes it with the stdlib."""
    report = await notifier.notify(message(), [policy_channels(receivers)["finance"]])

    assert report.sent == ("finance",)
    [got] = receivers.wait_for(1, kind=ReceiverKind.WEBHOOK)
    assert got.signature_valid is True
    expected = hmac.new(HMAC_KEY.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-agentmedic-signature"] == f"sha256={expected}"
    assert int(got.headers["x-agentmedic-timestamp"]) == int(T0.timestamp())
    body = got.json()
    assert (body["episode"], body["state"], body["undo"]) == (EPISODE, "firing", UNDO)


async def test_a_webhook_signed_with_the_wrong_key_is_rejected_once_and_not_retried(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    finance = policy_channels(receivers)["finance"]
    wrong = dataclasses.replace(finance, hmac_key=Secret("not-the-shared-key"))

    report = await notifier.notify(message(), [wrong])

    result = report.result("finance")
    assert (result.outcome, result.reason, result.status, result.attempts) == (
        Outcome.FAILED,
        Reason.REJECTED,
        401,
        1,
    )
    assert [r.signature_valid for r in receivers.received] == [False]


async def test_dry_run_is_marked_on_every_channel(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    report = await notifier.notify(message(dry_run=True), list(policy_channels(receivers).values()))

    assert len(report.sent) == 3
    got = {r.kind: r.json() for r in receivers.wait_for(3)}
    assert got[ReceiverKind.SLACK]["blocks"][0]["text"]["text"].startswith("[DRY RUN] ")
    assert got[ReceiverKind.PAGERDUTY]["payload"]["summary"].startswith("[DRY RUN] ")
    assert got[ReceiverKind.PAGERDUTY]["payload"]["custom_details"]["dry_run"] is True
    assert got[ReceiverKind.WEBHOOK]["dryRun"] is True


# --------------------------------------------------------------------------- dedup and resolve


async def test_a_repeat_is_dropped_until_renotify_after_then_sent_as_a_reminder(
    receivers: NotificationReceivers, notifier: Notifier, clock: FakeClock
) -> None:
    slack = policy_channels(receivers, renotifyAfter="1h")["oncall-slack"]

    await notifier.notify(message(), [slack])
    clock.advance(minutes=59)
    repeat = await notifier.notify(message(), [slack])
    clock.advance(minutes=1)
    reminder = await notifier.notify(message(), [slack])

    assert repeat.result("oncall-slack").reason is Reason.DUPLICATE
    assert reminder.result("oncall-slack").outcome is Outcome.SENT
    _, second = receivers.wait_for(2, kind=ReceiverKind.SLACK)
    assert second.json()["blocks"][0]["text"]["text"].startswith("Still firing: ")
    assert len(receivers.received) == 2


async def test_a_resolve_goes_only_where_the_firing_message_went(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    channels = policy_channels(receivers)
    picky_slack = dataclasses.replace(channels["oncall-slack"], min_severity=Severity.CRITICAL)
    both = [picky_slack, channels["finance"]]

    fired = await notifier.notify(message(severity=Severity.MEDIUM), both)
    ended = await notifier.notify(resolved(severity=Severity.MEDIUM), both)
    never_fired = await notifier.notify(resolved(episode="agents/other/rule/1"), both)

    assert fired.result("oncall-slack").reason is Reason.BELOW_MIN_SEVERITY
    assert ended.sent == ("finance",)
    assert ended.result("oncall-slack").reason is Reason.NOT_SENT_AS_FIRING
    assert set(never_fired.suppressed) == {"oncall-slack", "finance"}
    states = [r.json()["state"] for r in receivers.received]
    assert states == ["firing", "resolved"]
    assert all(r.kind is ReceiverKind.WEBHOOK for r in receivers.received)


async def test_concurrent_notifications_of_one_episode_reach_each_channel_once(
    receivers: NotificationReceivers, notifier: Notifier
) -> None:
    channels = list(policy_channels(receivers).values())

    reports = await asyncio.gather(*(notifier.notify(message(), channels) for _ in range(4)))

    assert sum(len(r.sent) for r in reports) == 3
    assert sorted(r.kind for r in receivers.received) == sorted(ReceiverKind)


async def test_state_survives_a_restart_so_nothing_is_paged_twice(
    receivers: NotificationReceivers, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    pagerduty = policy_channels(receivers)["pagerduty"]
    async with Notifier(clock=clock, sleep=sleeps) as before:
        await before.notify(message(), [pagerduty])
        persisted = json.dumps(before.export_state())

    async with Notifier(clock=clock, sleep=sleeps) as after:
        after.import_state(json.loads(persisted))
        clock.advance(minutes=5)
        again = await after.notify(message(), [pagerduty])
        ended = await after.notify(resolved(), [pagerduty])

    assert again.result("pagerduty").reason is Reason.DUPLICATE
    assert ended.sent == ("pagerduty",)
    actions = [r.json()["event_action"] for r in receivers.received]
    assert actions == ["trigger", "resolve"]
    assert len(persisted) < 1000


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_holds_back_the_excess_and_the_next_message_says_how_many(
    receivers: NotificationReceivers, notifier: Notifier, clock: FakeClock
) -> None:
    channels = policy_channels(receivers, maxPerHour=2)
    slack, finance = channels["oncall-slack"], channels["finance"]

    reports = []
    for i in range(5):
        reports.append(
            await notifier.notify(message(episode=f"agents/bot-{i}/r/1"), [slack, finance])
        )
        clock.advance(minutes=1)
    clock.advance(hours=1)
    after_an_hour = await notifier.notify(message(episode="agents/bot-9/r/1"), [slack, finance])

    assert [len(r.sent) for r in reports] == [2, 2, 0, 0, 0]
    assert all(r.result("finance").reason is Reason.RATE_LIMITED for r in reports[2:])
    assert after_an_hour.sent == ("oncall-slack", "finance")
    slack_msgs = [r.json() for r in receivers.accepted(ReceiverKind.SLACK)]
    hook_msgs = [r.json() for r in receivers.accepted(ReceiverKind.WEBHOOK)]
    assert len(slack_msgs) == len(hook_msgs) == 3
    notes = [e["text"] for e in slack_msgs[-1]["blocks"][-1]["elements"]]
    assert (
        "3 more messages were held back by this channel's rate limit since 2025-01-06T09:02:00Z."
        in notes
    )
    assert hook_msgs[-1]["rateLimited"] == {"count": 3, "since": "2025-01-06T09:02:00Z"}
    assert hook_msgs[1]["rateLimited"] is None


# --------------------------------------------------------------------------- retries and failures


async def test_a_500_is_retried_with_backoff_until_it_succeeds(
    receivers: NotificationReceivers, notifier: Notifier, sleeps: RecordedSleeps
) -> None:
    receivers.fail_next(ReceiverKind.SLACK, 500, times=2)

    report = await notifier.notify(message(), [policy_channels(receivers)["oncall-slack"]])

    result = report.result("oncall-slack")
    assert (result.outcome, result.attempts, result.status) == (Outcome.SENT, 3, 200)
    assert sleeps.delays == [1.0, 2.0]
    assert [r.status for r in receivers.received] == [500, 500, 200]


async def test_a_429_waits_as_long_as_retry_after_says(
    receivers: NotificationReceivers, notifier: Notifier, sleeps: RecordedSleeps
) -> None:
    """PagerDuty: "429 Too many API calls at a time — retry after some time"."""
    receivers.fail_next(ReceiverKind.PAGERDUTY, 429, retry_after=7)

    report = await notifier.notify(message(), [policy_channels(receivers)["pagerduty"]])

    assert report.result("pagerduty").attempts == 2
    assert report.sent == ("pagerduty",)
    assert sleeps.delays == [7.0]


async def test_retries_are_bounded_and_the_failure_is_reported_not_raised(
    receivers: NotificationReceivers, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    receivers.fail_next(ReceiverKind.SLACK, 503, times=3)
    slack = policy_channels(receivers)["oncall-slack"]

    async with Notifier(clock=clock, sleep=sleeps, retry=RetryPolicy(attempts=3)) as n:
        report = await n.notify(message(), [slack])
        retried_later = await n.notify(message(), [slack])

    result = report.result("oncall-slack")
    assert (result.outcome, result.reason, result.attempts, result.status) == (
        Outcome.FAILED,
        Reason.RETRIES_EXHAUSTED,
        3,
        503,
    )
    assert result.detail == "HTTP 503: Service Unavailable (gave up after 3 attempts)"
    # A failed delivery is not remembered as sent: the next call delivers it.
    assert retried_later.sent == ("oncall-slack",)
    assert [r.status for r in receivers.received] == [503, 503, 503, 200]


async def test_a_retry_after_beyond_the_timeout_gives_up_at_once(
    receivers: NotificationReceivers, notifier: Notifier, sleeps: RecordedSleeps
) -> None:
    receivers.fail_next(ReceiverKind.SLACK, 429, retry_after=60)

    report = await notifier.notify(message(), [policy_channels(receivers)["oncall-slack"]])

    result = report.result("oncall-slack")
    assert (result.reason, result.attempts, sleeps.delays) == (Reason.RETRIES_EXHAUSTED, 1, [])
    assert "60s later" in result.detail


async def test_failing_refused_and_hanging_channels_do_not_stop_the_others(
    receivers: NotificationReceivers, clock: FakeClock, sleeps: RecordedSleeps
) -> None:
    channels = policy_channels(receivers)
    receivers.fail_next(ReceiverKind.SLACK, 500, times=100)
    receivers.hold(ReceiverKind.PAGERDUTY)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = dataclasses.replace(
        channels["finance"], name="refused", url=Secret(f"http://127.0.0.1:{closed_port}/hook")
    )

    async with Notifier(clock=clock, sleep=sleeps, timeout=0.5) as n:
        started = time.monotonic()
        report = await n.notify(message(), [*channels.values(), refused])
        elapsed = time.monotonic() - started

    assert report.sent == ("finance",)
    assert report.result("oncall-slack").reason is Reason.RETRIES_EXHAUSTED
    assert report.result("pagerduty").reason is Reason.TIMED_OUT
    refused_result = report.result("refused")
    assert refused_result.reason is Reason.RETRIES_EXHAUSTED
    assert "network error (ConnectError)" in refused_result.detail
    assert elapsed < 3.0
    assert len(receivers.accepted(ReceiverKind.WEBHOOK)) == 1


# --------------------------------------------------------------------------- secrets


async def test_no_secret_reaches_logs_reports_or_exceptions(
    receivers: NotificationReceivers,
    clock: FakeClock,
    sleeps: RecordedSleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    channels = policy_channels(receivers)
    secrets = [
        receivers.slack_token,
        receivers.webhook_token,
        receivers.pagerduty_routing_key,
        HMAC_KEY,
    ]
    # A receiver that echoes the token back in its error, a retried 500, a timeout.
    receivers.fail_next(
        ReceiverKind.SLACK, 400, body=f"no_service for token {receivers.slack_token}"
    )
    receivers.fail_next(ReceiverKind.WEBHOOK, 500, times=100)
    receivers.hold(ReceiverKind.PAGERDUTY)

    texts: list[str] = []
    async with Notifier(clock=clock, sleep=sleeps, timeout=0.3) as n:
        report = await n.notify(message(), list(channels.values()))
        receivers.release(ReceiverKind.PAGERDUTY)
        ok = await n.notify(message(episode="agents/support-bot/other/1"), list(channels.values()))
        texts += [json.dumps(report.to_dict()), json.dumps(ok.to_dict()), repr(report), repr(ok)]
        texts.append(json.dumps(n.export_state()))
    with pytest.raises(ChannelConfigError) as caught:
        resolve_channel(
            NotificationChannel.model_validate(
                {"name": "bad", "slack": {"webhookSecretRef": {"name": "s", "key": "k"}}}
            ),
            lambda name, key: f"hooks.slack.com/services/{receivers.slack_token}",
        )
    texts += [str(caught.value), repr(caught.value), repr(list(channels.values()))]
    texts.append(caplog.text)

    assert report.failed == ("oncall-slack", "pagerduty", "finance")
    assert ok.result("pagerduty").outcome is Outcome.SENT
    # The httpx request log is there, so the check below is not vacuous.
    assert "HTTP Request: POST" in caplog.text
    assert "failed after" in caplog.text
    for text in texts:
        for secret in secrets:
            assert secret not in text
