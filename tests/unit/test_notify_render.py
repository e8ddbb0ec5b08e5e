"""Rendering a Message for Slack, PagerDuty and webhooks: shapes and vendor limits, no I/O."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.api.types import Severity
from agentmedic.engine.series import AgentId
from agentmedic.notify import (
    PAGERDUTY_SEVERITY,
    ChannelKind,
    Delivery,
    Evidence,
    Message,
    MessageState,
    Overflow,
    ResolvedChannel,
    Secret,
    build_request,
    pagerduty_event,
    sign_body,
    slack_payload,
    webhook_body,
)
from agentmedic.notify.pagerduty import dedup_key
from agentmedic_sandbox.receivers import pagerduty_event_problems, slack_block_problems

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
ROUTING_KEY = "r" * 32


def message(**changes: object) -> Message:
    base = Message(
        episode="agents/support-bot/quality-degradation/1736154000",
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
        undo="agentmedic restore agents/support-bot",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def delivery(**changes: object) -> Delivery:
    return Delivery(T0 + timedelta(seconds=5), **changes)  # type: ignore[arg-type]


def huge() -> Message:
    """Everything a person or a metric could make too long for a vendor."""
    return message(
        rule="r" * 200,
        agent=AgentId("n" * 63, "a" * 253),
        summary="s" * 10_000,
        evidence=tuple(Evidence(f"c{i} " + "x" * 500, float(i), 1.0) for i in range(40)),
        action="a" * 5000,
        undo="u" * 5000,
        episode="e" * 600,
    )


# --------------------------------------------------------------------------- Slack


def test_slack_message_reads_header_summary_fields_evidence_action_and_undo() -> None:
    """Block Kit message shape: docs.slack.dev/reference/block-kit/blocks (header,
    section with text or fields, context); `text` is the notification fallback
    (api.slack.com/methods/chat.postMessage: "used as fallback text for notifications")."""
    payload = slack_payload(message(), delivery())

    assert [b["type"] for b in payload["blocks"]] == [
        "header",
        "section",
        "section",
        "section",
        "section",
        "context",
    ]
    header = payload["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert header["text"] == "Firing: quality-degradation on agents/support-bot"
    fields = dict(f["text"].split("\n", 1) for f in payload["blocks"][2]["fields"])
    assert fields["*Agent*"] == "agents/support-bot"
    assert fields["*Rule*"] == "quality-degradation"
    assert fields["*Severity*"] == "high"
    assert fields["*State*"] == "firing"
    assert payload["blocks"][3]["text"]["text"] == (
        "*Evidence*\n• error_rate[5m] = 31% &gt; 15%\n• latency_p95_ms[5m] = 12.4s &gt; 10s"
    )
    action = payload["blocks"][4]["text"]["text"]
    assert action == "*Action taken*\nscaled deployment agents/support-bot to 0 (was 3)"
    context = [e["text"] for e in payload["blocks"][5]["elements"]]
    assert context[0] == "Undo: `agentmedic restore agents/support-bot`"
    assert payload["text"].startswith("Firing: quality-degradation on agents/support-bot (high)")
    assert "agentmedic restore agents/support-bot" in payload["text"]


def test_slack_message_stays_within_block_kit_limits_whatever_the_input() -> None:
    """Limits from Slack's Block Kit reference: header plain_text ≤ 150 characters, section
    text ≤ 3000, ≤ 10 fields of ≤ 2000 each, context ≤ 10 elements, ≤ 50 blocks."""
    overflowing = delivery(repeat=True, overflow=Overflow(12, T0))
    payload = slack_payload(huge(), overflowing)

    blocks = payload["blocks"]
    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    assert "…and 30 more" in blocks[3]["text"]["text"]
    # The stand-in receiver enforces the same limits independently.
    assert slack_block_problems(blocks) == []


def test_slack_escapes_mrkdwn_control_characters_from_names_and_summaries() -> None:
    """Slack's formatting reference: &, < and > must be escaped as &amp; &lt; &gt;."""
    payload = slack_payload(message(summary="<!channel> p95 > 10s & rising"), delivery())

    summary = payload["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; p95 &gt; 10s &amp; rising" in summary
    assert "<!channel>" not in json.dumps(payload)


def test_slack_marks_dry_run_in_header_action_and_fallback() -> None:
    payload = slack_payload(message(dry_run=True), delivery())

    assert payload["blocks"][0]["text"]["text"].startswith("[DRY RUN] ")
    assert payload["blocks"][4]["text"]["text"].startswith(
        "*Action (dry run: nothing was changed)*"
    )
    assert payload["text"].startswith("[DRY RUN] ")


def test_slack_names_a_fleet_wide_message_by_policy_and_says_still_firing_on_a_reminder() -> None:
    payload = slack_payload(message(agent=None, rule="systemic"), delivery(repeat=True))

    assert (
        payload["blocks"][0]["text"]["text"]
        == "Still firing: systemic on policy agents/support-bot"
    )
    fields = [f["text"] for f in payload["blocks"][2]["fields"]]
    assert "*Agent*\nwhole fleet" in fields
    notes = [e["text"] for e in payload["blocks"][-1]["elements"]]
    assert "Reminder: this episode is still firing." in notes


# --------------------------------------------------------------------------- PagerDuty


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Severity.CRITICAL, "critical"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "warning"),
        (Severity.INFO, "info"),
    ],
)
def test_pagerduty_severity_maps_onto_the_four_it_accepts(ours: Severity, theirs: str) -> None:
    """PagerDuty Events API v2: payload.severity is one of critical, error, warning, info."""
    event = pagerduty_event(message(severity=ours), delivery(), ROUTING_KEY)

    assert PAGERDUTY_SEVERITY[ours] == theirs
    assert event["payload"]["severity"] == theirs


def test_pagerduty_trigger_has_every_documented_field_and_keeps_the_limits() -> None:
    """PagerDuty "Send an Alert Event": routing_key, event_action, dedup_key ≤ 255,
    payload.summary ≤ 1024, source, severity, timestamp, component, group, class,
    custom_details (developer.pagerduty.com, events-API-v2)."""
    event = pagerduty_event(huge(), delivery(overflow=Overflow(3, T0)), ROUTING_KEY)

    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert len(event["dedup_key"]) <= 255
    payload = event["payload"]
    assert len(payload["summary"]) == 1024
    assert payload["summary"].endswith("…")
    assert payload["source"] == f"{'n' * 63}/{'a' * 253}"
    assert payload["class"] == "r" * 200
    assert payload["custom_details"]["rate_limited"]["count"] == 3
    assert pagerduty_event_problems(event, ROUTING_KEY) == []


def test_pagerduty_dedup_key_is_the_episode_or_a_stable_distinct_digest_of_a_long_one() -> None:
    assert dedup_key("agents/bot/rule/1") == "agents/bot/rule/1"
    long_a, long_b = "e" * 300 + "a", "e" * 300 + "b"
    assert len(dedup_key(long_a)) == 255
    assert dedup_key(long_a) == dedup_key(long_a)
    assert dedup_key(long_a) != dedup_key(long_b)


def test_pagerduty_resolve_carries_only_routing_key_action_and_dedup_key() -> None:
    """The documented resolve example: {routing_key, dedup_key, event_action: resolve}."""
    event = pagerduty_event(message(state=MessageState.RESOLVED), delivery(), ROUTING_KEY)

    assert event == {
        "routing_key": ROUTING_KEY,
        "dedup_key": "agents/support-bot/quality-degradation/1736154000",
        "event_action": "resolve",
    }


def test_pagerduty_fleet_wide_event_names_the_policy_as_its_source() -> None:
    event = pagerduty_event(message(agent=None), delivery(), ROUTING_KEY)

    assert event["payload"]["source"] == "agents/support-bot"
    assert event["payload"]["component"] == "fleet"
    assert event["payload"]["group"] == "agents/support-bot"


# --------------------------------------------------------------------------- webhook


def test_webhook_signature_matches_the_rfc_4231_hmac_sha256_test_vector() -> None:
    """RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"."""
    assert sign_body(b"what do ya want for nothing?", "Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_webhook_body_is_camel_case_and_turns_non_finite_values_into_null() -> None:
    msg = message(evidence=(Evidence("error_rate > 0.15", math.nan, 0.15, timedelta(minutes=5)),))
    body = webhook_body(msg, delivery())

    assert body["policy"] == {"namespace": "agents", "name": "support-bot"}
    assert body["agent"] == {"namespace": "agents", "name": "support-bot"}
    assert body["dryRun"] is False
    assert body["evidence"][0]["value"] is None
    assert body["evidence"][0]["windowSeconds"] == 300.0
    assert body["sentAt"] == "2025-01-06T09:00:05Z"


def test_signed_webhook_request_signs_the_exact_bytes_it_sends() -> None:
    channel = ResolvedChannel(
        "hook", ChannelKind.WEBHOOK, Secret("https://hooks.example/x"), hmac_key=Secret("k3y")
    )
    request = build_request(channel, message(), delivery())

    expected = hmac.new(b"k3y", request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Agentmedic-Signature"] == f"sha256={expected}"
    assert request.headers["X-Agentmedic-Timestamp"] == str(
        int((T0 + timedelta(seconds=5)).timestamp())
    )
    assert json.loads(request.content)["episode"] == message().episode


def test_unsigned_channels_send_no_signature_and_requests_hide_their_url() -> None:
    channel = ResolvedChannel(
        "s", ChannelKind.SLACK, Secret("https://hooks.slack.com/services/T/B/tok3n")
    )
    request = build_request(channel, message(), delivery())

    assert "X-Agentmedic-Signature" not in request.headers
    assert "tok3n" not in repr(request)


def test_evidence_reads_no_data_when_the_value_is_missing() -> None:
    assert str(Evidence("error_rate > 0.15", None, 0.15, timedelta(minutes=5))) == (
        "error_rate[5m]: no data (> 15%)"
    )
