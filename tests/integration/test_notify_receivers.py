"""The loopback receivers themselves: addresses, vendor-like answers, waits and injected faults.

The notification tests, the demo and the operator's end-to-end test trust these
receivers to answer like Slack and PagerDuty; these tests hold them to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind


@pytest.fixture
def rx() -> Iterator[NotificationReceivers]:
    with NotificationReceivers(webhook_hmac_key="k", require_signature=True) as receivers:
        yield receivers


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def trigger(rx: NotificationReceivers, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "routing_key": rx.pagerduty_routing_key,
        "event_action": "trigger",
        "dedup_key": "ep-1",
        "payload": {"summary": "bad", "source": "agents/bot", "severity": "error"},
    }
    event.update(changes)
    return event


def test_receivers_listen_on_loopback_only_at_a_free_port(rx: NotificationReceivers) -> None:
    assert rx.port > 0
    for kind in ReceiverKind:
        assert rx.url_for(kind).startswith(f"http://127.0.0.1:{rx.port}/")
    assert rx.url_for("slack").endswith("/" + rx.slack_token)
    with NotificationReceivers() as other:
        assert other.port != rx.port
        assert other.slack_token != rx.slack_token


def test_slack_answers_ok_and_refuses_what_slack_refuses(
    rx: NotificationReceivers, http: httpx.Client
) -> None:
    """Slack's documented answers: 200 ok; 400 invalid_payload / no_text; 404 no_service
    (api.slack.com changelog 2016-05-17); invalid_blocks for Block Kit limit breaches."""
    url = rx.url_for(ReceiverKind.SLACK)
    long_header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}

    answers = [
        http.post(url, json={"text": "hello"}),
        http.post(url, content=b"not json"),
        http.post(url, json={"blocks": []}),
        http.post(url, json={"text": "x", "blocks": [long_header]}),
        http.post(url.rsplit("/", 1)[0] + "/wrongtoken", json={"text": "hello"}),
    ]

    assert [(a.status_code, a.text) for a in answers] == [
        (200, "ok"),
        (400, "invalid_payload"),
        (400, "no_text"),
        (400, "invalid_blocks"),
        (404, "no_service"),
    ]
    assert rx.received[3].problems == ("blocks[0]: header text must have 1-150 characters",)
    assert [r.json() for r in rx.accepted(ReceiverKind.SLACK)] == [{"text": "hello"}]


def test_pagerduty_accepts_a_valid_event_with_202_and_explains_invalid_ones(
    rx: NotificationReceivers, http: httpx.Client
) -> None:
    """PagerDuty Events API v2: 202 with status "success" and the dedup_key; 400 "invalid
    event" otherwise (developer.pagerduty.com, events-API-v2 overview)."""
    url = rx.url_for(ReceiverKind.PAGERDUTY)

    ok = http.post(url, json=trigger(rx))
    bad = http.post(
        url,
        json=trigger(rx, routing_key="x" * 32, payload={"summary": "s" * 1025, "source": "a"}),
    )
    resolve_without_key = http.post(
        url, json={"routing_key": rx.pagerduty_routing_key, "event_action": "resolve"}
    )

    assert ok.status_code == 202
    assert ok.json() == {"status": "success", "message": "Event processed", "dedup_key": "ep-1"}
    assert bad.status_code == 400
    assert bad.json()["errors"] == [
        "routing_key is missing or not this integration's key",
        "payload.summary must have 1-1024 characters",
        "payload.severity must be one of ['critical', 'error', 'info', 'warning']",
    ]
    assert resolve_without_key.json()["errors"] == ["dedup_key is required to resolve"]


def test_webhook_verifies_the_signature_over_the_raw_body(
    rx: NotificationReceivers, http: httpx.Client
) -> None:
    url = rx.url_for(ReceiverKind.WEBHOOK)
    body = b'{"a":1}'
    good = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()

    signed = http.post(url, content=body, headers={"X-Agentmedic-Signature": good})
    unsigned = http.post(url, content=body)

    assert (signed.status_code, unsigned.status_code) == (200, 401)
    assert [r.signature_valid for r in rx.received] == [True, False]


def test_injected_failures_answer_n_times_then_the_real_answer(
    rx: NotificationReceivers, http: httpx.Client
) -> None:
    url = rx.url_for(ReceiverKind.SLACK)
    rx.fail_next(ReceiverKind.SLACK, 500, times=2)
    rx.fail_next(ReceiverKind.SLACK, 429, retry_after=3)

    answers = [http.post(url, json={"text": "x"}) for _ in range(4)]

    assert [a.status_code for a in answers] == [500, 500, 429, 200]
    assert answers[2].headers["Retry-After"] == "3"
    assert [r.injected for r in rx.received] == [True, True, True, False]
    with pytest.raises(ValueError, match="at least 1"):
        rx.fail_next(ReceiverKind.SLACK, times=0)


def test_wait_for_returns_as_soon_as_enough_arrived_and_raises_after_its_deadline(
    rx: NotificationReceivers, http: httpx.Client
) -> None:
    poster = threading.Thread(
        target=lambda: http.post(rx.url_for(ReceiverKind.SLACK), json={"text": "x"})
    )
    poster.start()
    [got] = rx.wait_for(1, kind="slack", within=5)
    poster.join()

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="expected 1 accepted pagerduty request"):
        rx.wait_for(1, kind=ReceiverKind.PAGERDUTY, within=0.2)
    waited = time.monotonic() - started

    assert got.json() == {"text": "x"}
    assert 0.2 <= waited < 2


async def test_a_held_kind_answers_only_after_release(rx: NotificationReceivers) -> None:
    rx.hold(ReceiverKind.WEBHOOK)
    async with httpx.AsyncClient(timeout=5) as client:
        pending = asyncio.create_task(client.post(rx.url_for(ReceiverKind.WEBHOOK), content=b"{}"))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done
        assert rx.received == []
        rx.release(ReceiverKind.WEBHOOK)
        answer = await pending

    assert answer.status_code == 401  # unsigned, and the receiver requires signatures
    assert len(await rx.wait_for_async(1, accepted_only=False, within=2)) == 1
