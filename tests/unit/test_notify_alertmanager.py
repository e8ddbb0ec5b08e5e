"""The alertmanager channel without a server: the alert rendered, the channel resolved,
re-posts in the ledger, answers through httpx.MockTransport, and the policy's checks.
(tests/integration/test_notify_alertmanager.py runs it against a real Alertmanager.)"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentmedic.api.types import AgentPolicySpec, NotificationChannel, Severity
from agentmedic.api.validation import check_spec
from agentmedic.engine.series import AgentId
from agentmedic.notify import (
    ChannelConfigError,
    ChannelKind,
    Delivery,
    DeliveryLedger,
    Evidence,
    Message,
    MessageState,
    Notifier,
    Outcome,
    Overflow,
    Reason,
    RetryPolicy,
    build_request,
    resolve_channel,
)
from agentmedic.notify.alertmanager import alert_name, alertmanager_alerts, episode_start
from agentmedic.notify.ledger import Admission

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
START = T0 - timedelta(minutes=6)
PASSWORD = "pw-3b9e77c1"
TOKEN = "tok-a41f0d2e"


def message(**changes: Any) -> Message:
    fields: dict[str, Any] = {
        "episode": f"uid-1:agents/bot:quality:{int(START.timestamp())}",
        "policy_namespace": "agents",
        "policy_name": "support-bot",
        "agent": AgentId("agents", "bot"),
        "rule": "quality",
        "severity": Severity.HIGH,
        "state": MessageState.FIRING,
        "summary": "agents/bot: quality firing — error rate 31%",
        "time": T0,
        "evidence": (
            Evidence("error_rate > 0.15", 0.31, 0.15, timedelta(minutes=5)),
            Evidence("latency_p95_ms > 10000", 12400, 10000, timedelta(minutes=5)),
        ),
        "action": "scaled to zero",
        "undo": "agentmedic restore agents/bot",
    }
    fields.update(changes)
    return Message(**fields)


def channel(**alertmanager: Any) -> Any:
    spec = {"url": "http://am.test:9093/alertmanager/", **alertmanager}
    model = NotificationChannel.model_validate({"name": "am", "alertmanager": spec})
    secrets = {("auth", "password"): PASSWORD + "\n", ("auth", "token"): TOKEN}
    return resolve_channel(model, lambda name, key: secrets[(name, key)])


BASIC = {
    "basicAuth": {
        "username": "agentmedic",
        "passwordSecretRef": {"name": "auth", "key": "password"},
    }
}
BEARER = {"bearerTokenSecretRef": {"name": "auth", "key": "token"}}


# ----------------------------------------------------------------------------- the alert


def test_a_firing_alert_has_the_identity_labels_and_what_a_person_reads() -> None:
    [alert] = alertmanager_alerts(
        message(),
        Delivery(T0),
        static_labels={"team": "agents"},
        generator_url="https://grafana.test/d/1",
        repost_interval=timedelta(minutes=1),
    )
    assert alert == {
        "labels": {
            "team": "agents",
            "alertname": "AgentmedicRule",
            "agent": "bot",
            "namespace": "agents",
            "rule": "quality",
            "severity": "high",
            "policy": "support-bot",
        },
        "annotations": {
            "summary": "agents/bot: quality firing — error rate 31%",
            "episode": message().episode,
            "evidence": "error_rate[5m] = 31% > 15%\nlatency_p95_ms[5m] = 12.4s > 10s",
            "action": "scaled to zero",
            "undo": "agentmedic restore agents/bot",
        },
        "startsAt": "2025-01-06T08:54:00Z",
        "endsAt": "2025-01-06T09:04:00Z",
        "generatorURL": "https://grafana.test/d/1",
    }


def test_a_resolve_ends_at_the_time_the_episode_ended_with_the_same_labels() -> None:
    ended = T0 + timedelta(minutes=3)
    firing = alertmanager_alerts(message(), Delivery(T0))[0]
    [resolve] = alertmanager_alerts(
        message(state=MessageState.RESOLVED, time=ended, evidence=(), action=None, undo=None),
        Delivery(ended + timedelta(seconds=20)),
    )
    assert resolve["labels"] == firing["labels"]
    assert (resolve["startsAt"], resolve["endsAt"]) == (
        "2025-01-06T08:54:00Z",
        "2025-01-06T09:03:00Z",
    )
    assert "generatorURL" not in resolve


@pytest.mark.parametrize(
    ("rule", "agent", "name"),
    [
        ("quality", AgentId("agents", "bot"), "AgentmedicRule"),
        ("budget.soft", AgentId("agents", "bot"), "AgentmedicBudget"),
        ("budget.hard", None, "AgentmedicBudget"),
        ("noData", None, "AgentmedicNoData"),
        ("noData", AgentId("agents", "bot"), "AgentmedicNoData"),
        ("metricsUnavailable", None, "AgentmedicMetricsUnavailable"),
        ("quality", None, "AgentmedicOutage"),
    ],
)
def test_alertname_says_what_kind_of_episode_it_is(
    rule: str, agent: AgentId | None, name: str
) -> None:
    assert alert_name(message(rule=rule, agent=agent)) == name


def test_a_fleet_wide_alert_has_no_agent_label_and_the_policy_namespace() -> None:
    [alert] = alertmanager_alerts(message(agent=None), Delivery(T0))
    assert "agent" not in alert["labels"]
    assert alert["labels"]["namespace"] == "agents"


def test_dry_run_and_held_back_messages_say_so() -> None:
    [alert] = alertmanager_alerts(
        message(dry_run=True), Delivery(T0, overflow=Overflow(3, T0 - timedelta(minutes=9)))
    )
    assert alert["annotations"]["summary"].startswith("[DRY RUN] agents/bot")
    assert alert["annotations"]["rate_limited"].startswith("3 more messages were held back")


def test_starts_at_falls_back_to_the_message_time_without_a_readable_episode_start() -> None:
    assert episode_start("uid:*:noData:1736150000") == datetime(2025, 1, 6, 7, 53, 20, tzinfo=UTC)
    assert episode_start("agents/bot/rule") is None
    [alert] = alertmanager_alerts(message(episode="custom-key"), Delivery(T0))
    assert alert["startsAt"] == "2025-01-06T09:00:00Z"


# ----------------------------------------------------------------------------- the channel


def test_the_channel_posts_to_the_v2_alerts_path_under_the_prefix_with_basic_auth() -> None:
    ch = channel(**BASIC, tenant="team-a", labels={"team": "agents"})
    request = build_request(ch, message(), Delivery(T0))
    assert request.url == "http://am.test:9093/alertmanager/api/v2/alerts"
    expected = base64.b64encode(f"agentmedic:{PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["X-Scope-OrgID"] == "team-a"
    [alert] = json.loads(request.content)
    assert alert["labels"]["team"] == "agents"
    assert PASSWORD not in repr(request)
    assert ch.kind is ChannelKind.ALERTMANAGER
    assert ch.renotify_after == ch.repost_interval == timedelta(minutes=1)


def test_a_bearer_token_is_sent_and_counts_as_a_secret_as_does_the_header() -> None:
    ch = channel(**BEARER)
    assert build_request(ch, message(), Delivery(T0)).headers["Authorization"] == f"Bearer {TOKEN}"
    fragments = {f if isinstance(f, str) else f.reveal() for f in ch.secret_fragments()}
    assert {TOKEN, f"Bearer {TOKEN}"} <= fragments
    # The URL is configuration, not a credential: it stays readable in reports.
    assert "http://am.test:9093/alertmanager/api/v2/alerts" not in fragments


def test_credentials_in_the_url_are_refused_without_showing_them() -> None:
    with pytest.raises(ChannelConfigError) as caught:
        channel(url="http://admin:hunter2@am.test:9093")
    assert "hunter2" not in str(caught.value)


# ----------------------------------------------------------------------------- delivery


async def test_a_4xx_is_rejected_at_once_and_a_5xx_retried() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200)])
    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "bad.test":
            return httpx.Response(400, text='{"code":400,"message":"bad alert"}')
        return next(answers)

    async def sleep(seconds: float) -> None:
        pass

    ok = channel(**BEARER)
    bad = channel(url="http://bad.test:9093", **BEARER)
    bad = dataclasses.replace(bad, name="bad")
    async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
        notifier = Notifier(client=client, clock=lambda: T0, sleep=sleep, retry=RetryPolicy())
        report = await notifier.notify(message(), [ok, bad])
    assert report.result("am").outcome is Outcome.SENT
    assert report.result("am").attempts == 2
    rejected = report.result("bad")
    assert (rejected.outcome, rejected.reason, rejected.attempts) == (
        Outcome.FAILED,
        Reason.REJECTED,
        1,
    )
    assert rejected.detail == 'HTTP 400: {"code":400,"message":"bad alert"}'
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seen)


# ----------------------------------------------------------------------------- the ledger


def test_reposts_pass_the_rate_limit_and_do_not_count_toward_it() -> None:
    ch = dataclasses.replace(channel(), max_per_hour=1)
    ledger = DeliveryLedger()
    first = ledger.admit(ch, message(), T0)
    assert isinstance(first, Admission)
    # Half an interval: a duplicate; a minute later: a re-post, past maxPerHour 1.
    assert not isinstance(ledger.admit(ch, message(), T0 + timedelta(seconds=20)), Admission)
    for minutes in range(1, 6):
        repost = ledger.admit(ch, message(), T0 + timedelta(minutes=minutes))
        assert isinstance(repost, Admission), repost
        assert repost.delivery.repeat
    # A new episode is still held to maxPerHour: the first post counted, the re-posts not.
    other = message(episode="uid-1:agents/bot2:quality:1", agent=AgentId("agents", "bot2"))
    held = ledger.admit(ch, other, T0 + timedelta(minutes=6))
    assert not isinstance(held, Admission)
    assert held.reason is Reason.RATE_LIMITED


# ----------------------------------------------------------------------------- the policy


def spec_with(channel_doc: dict[str, Any], interval: str = "30s") -> AgentPolicySpec:
    return AgentPolicySpec.model_validate(
        {
            "selector": {"matchLabels": {"app": "agents"}},
            "interval": interval,
            "rules": [
                {
                    "name": "r",
                    "all": [{"metric": "error_rate", "window": "5m", "op": ">", "value": 0.2}],
                    "actions": [{"notify": {"channels": ["am"]}}],
                }
            ],
            "notifications": {"channels": [{"name": "am", **channel_doc}]},
        }
    )


def test_a_plain_alertmanager_channel_is_valid() -> None:
    assert check_spec(spec_with({"alertmanager": {"url": "http://am:9093", **BASIC}})) == []


@pytest.mark.parametrize(
    ("doc", "interval", "path", "words"),
    [
        ({"url": "http://u:p@am:9093"}, "30s", ".alertmanager.url", "must not carry credentials"),
        ({"url": "am:9093"}, "30s", ".alertmanager.url", "not an http(s) URL"),
        ({"url": "http://am", **BASIC, **BEARER}, "30s", ".alertmanager", "at most one of"),
        (
            {"url": "http://am", "labels": {"agent": "x"}},
            "30s",
            ".alertmanager.labels.agent",
            "set by agentmedic",
        ),
        (
            {"url": "http://am", "labels": {"1bad": "x"}},
            "30s",
            ".alertmanager.labels",
            "not a label name",
        ),
        ({"url": "http://am"}, "5m", ".alertmanager.repostInterval", "shorter than spec.interval"),
    ],
)
def test_mistakes_in_an_alertmanager_channel_are_named(
    doc: dict[str, Any], interval: str, path: str, words: str
) -> None:
    problems = check_spec(spec_with({"alertmanager": doc}, interval))
    assert [p.path for p in problems] == [f"spec.notifications.channels[0]{path}"], problems
    assert words in problems[0].message


def test_renotify_after_is_refused_on_an_alertmanager_channel() -> None:
    spec = spec_with({"alertmanager": {"url": "http://am"}, "renotifyAfter": "1h"})
    [problem] = check_spec(spec)
    assert problem.path == "spec.notifications.channels[0].renotifyAfter"
    assert "repostInterval" in problem.message
