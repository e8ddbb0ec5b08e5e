"""Notifier edge cases through httpx.MockTransport (the real-server cases are integration tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agentmedic.api.types import Severity
from agentmedic.notify import (
    ChannelKind,
    Message,
    MessageState,
    Notifier,
    Outcome,
    Reason,
    ResolvedChannel,
    RetryPolicy,
    Secret,
)

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
SLACK = ResolvedChannel(
    "slack", ChannelKind.SLACK, Secret("https://slack.test/services/T/B/tokSECRET99")
)
HOOK = ResolvedChannel("hook", ChannelKind.WEBHOOK, Secret("https://hook.test/in/hookSECRET77"))
MESSAGE = Message(
    episode="agents/bot/rule/1",
    policy_namespace="agents",
    policy_name="fleet",
    agent=None,
    rule="systemic",
    severity=Severity.CRITICAL,
    state=MessageState.FIRING,
    summary="62% of agents failing together",
    time=T0,
)


def test_retry_policy_doubles_the_wait_up_to_its_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3)

    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_an_unexpected_error_is_reported_redacted_and_other_channels_still_send() -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slack.test":
            raise RuntimeError(f"bug while posting to {request.url}")
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
        report = await Notifier(client=client, clock=lambda: T0).notify(MESSAGE, [SLACK, HOOK])

    result = report.result("slack")
    assert (result.outcome, result.reason) == (Outcome.FAILED, Reason.INTERNAL_ERROR)
    assert result.detail.startswith("RuntimeError: bug while posting to ")
    assert "tokSECRET99" not in result.detail
    assert report.sent == ("hook",)


async def test_an_http_date_retry_after_is_measured_against_the_injected_clock() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "Mon, 06 Jan 2025 09:00:20 GMT"}),
            httpx.Response(200),
        ]
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = httpx.MockTransport(lambda request: next(answers))
    async with httpx.AsyncClient(transport=transport) as client:
        notifier = Notifier(client=client, clock=lambda: T0, sleep=sleep)
        report = await notifier.notify(MESSAGE, [HOOK])

    assert report.sent == ("hook",)
    assert waits == [20.0]


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_client_errors_other_than_429_are_not_retried(status: int) -> None:
    calls: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, text="channel_not_found")

    async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
        report = await Notifier(client=client, clock=lambda: T0).notify(MESSAGE, [SLACK])

    result = report.result("slack")
    assert (result.reason, result.status, result.attempts) == (Reason.REJECTED, status, 1)
    assert result.detail == f"HTTP {status}: channel_not_found"
    assert len(calls) == 1


async def test_exported_state_is_plain_json_and_imports_into_a_fresh_notifier() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        first = Notifier(client=client, clock=lambda: T0)
        await first.notify(MESSAGE, [SLACK])
        second = Notifier(client=client, clock=lambda: T0 + timedelta(minutes=1))
        second.import_state(json.loads(json.dumps(first.export_state())))
        again = await second.notify(MESSAGE, [SLACK])

    assert again.result("slack").reason is Reason.DUPLICATE
    with pytest.raises(ValueError, match="ledger"):
        second.import_state({"version": 99})
