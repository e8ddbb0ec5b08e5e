"""The alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager).

Each test starts its own Alertmanager on loopback (tests/integration/alertmanager.py) with
a 2 s ``resolve_timeout`` and one route grouping by namespace and rule into a webhook
receiver the test runs. Channels are built as the operator builds them: from the
NotificationChannel model and a secret lookup; the last test runs the operator itself on
the API emulator. Time is real here: Alertmanager's own
clock decides what is active and resolved.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentmedic.api.durations import TIME_COMPRESSION_ENV
from agentmedic.api.types import NotificationChannel, Severity
from agentmedic.engine.series import AgentId
from agentmedic.notify import (
    Evidence,
    Message,
    MessageState,
    Notifier,
    Outcome,
    Reason,
    ResolvedChannel,
    RetryPolicy,
    resolve_channel,
)
from agentmedic.operator.main import OperatorThread
from agentmedic.operator.settings import load_settings
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.alertmanager import (
    AlertmanagerNotInstalledError,
    AlertmanagerServer,
    HookReceiver,
    find_binary,
    free_port,
)

PASSWORD = "am-pass-7c1d0e93b2"
TOKEN = "am-token-5e8f21a4c6"
SECRETS = {("am-auth", "password"): PASSWORD, ("am-auth", "token"): TOKEN}


def _require_binary() -> None:
    try:
        find_binary()
    except AlertmanagerNotInstalledError as exc:
        if os.environ.get("AGENTMEDIC_REQUIRE_K8S") or os.environ.get("CI"):
            pytest.fail(f"{exc} (the Alertmanager tests must not skip under make test or CI)")
        pytest.skip(f"{exc}; or run `make system-deps`")


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


@pytest.fixture
def am(hook: HookReceiver) -> Iterator[AlertmanagerServer]:
    _require_binary()
    config: dict[str, Any] = {
        "global": {"resolve_timeout": "2s"},
        "route": {
            "receiver": "hook",
            "group_by": ["namespace", "rule"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "hook", "webhook_configs": [{"url": hook.url, "send_resolved": True}]}
        ],
    }
    with AlertmanagerServer(config) as server:
        yield server


def lookup(name: str, key: str) -> str:
    return SECRETS[(name, key)]


def channel(url: str, *, auth: str = "basic", **alertmanager: Any) -> ResolvedChannel:
    spec: dict[str, Any] = {"url": url, **alertmanager}
    if auth == "basic":
        spec["basicAuth"] = {
            "username": "agentmedic",
            "passwordSecretRef": {"name": "am-auth", "key": "password"},
        }
    else:
        spec["bearerTokenSecretRef"] = {"name": "am-auth", "key": "token"}
    model = NotificationChannel.model_validate({"name": "am", "alertmanager": spec})
    return resolve_channel(model, lookup)


def message(
    agent: str,
    rule: str = "quality",
    *,
    state: MessageState = MessageState.FIRING,
    start: datetime | None = None,
    at: datetime | None = None,
) -> Message:
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return Message(
        episode=f"uid-1:agents/{agent}:{rule}:{int(start.timestamp())}",
        policy_namespace="agents",
        policy_name="support-bot",
        agent=AgentId("agents", agent),
        rule=rule,
        severity=Severity.HIGH,
        state=state,
        summary=f"agents/{agent}: {rule} firing — error rate 31%",
        time=at or datetime.now(UTC),
        evidence=(Evidence("error_rate > 0.15", 0.31, 0.15, timedelta(minutes=5)),),
        action="scaled to zero",
        undo=f"agentmedic restore agents/{agent}",
    )


def wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


async def test_a_firing_notification_is_an_active_alert_with_labels_and_annotations(
    am: AlertmanagerServer,
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    ch = channel(am.url, labels={"team": "agents"}, generatorUrl="https://grafana.example/d/1")
    async with Notifier() as notifier:
        report = await notifier.notify(message("bot-a", start=start), [ch])
    assert report.results[0].outcome is Outcome.SENT, report.results[0]

    [alert] = am.alerts(agent="bot-a")
    assert alert["labels"] == {
        "alertname": "AgentmedicRule",
        "agent": "bot-a",
        "namespace": "agents",
        "rule": "quality",
        "severity": "high",
        "policy": "support-bot",
        "team": "agents",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == "agents/bot-a: quality firing — error rate 31%"
    assert annotations["evidence"] == "error_rate[5m] = 31% > 15%"
    assert annotations["undo"] == "agentmedic restore agents/bot-a"
    assert annotations["action"] == "scaled to zero"
    assert annotations["episode"].startswith("uid-1:agents/bot-a:quality:")
    assert alert["status"]["state"] == "active"
    assert alert["generatorURL"] == "https://grafana.example/d/1"
    assert datetime.fromisoformat(alert["startsAt"]) == start
    # Valid for four repost intervals (1m by default), not for the 2s resolve_timeout.
    ends = datetime.fromisoformat(alert["endsAt"])
    assert timedelta(minutes=3) < ends - datetime.now(UTC) <= timedelta(minutes=4)


async def test_two_alerts_of_one_group_arrive_in_one_webhook_delivery(
    am: AlertmanagerServer, hook: HookReceiver
) -> None:
    ch = channel(am.url)
    async with Notifier() as notifier:
        for agent in ("bot-a", "bot-b"):
            report = await notifier.notify(message(agent, "grouped"), [ch])
            assert report.results[0].outcome is Outcome.SENT

    # startsAt is the breach start, older than group_wait, so Alertmanager flushes the new
    # group at once (as for Prometheus alerts with a `for`); the next flush, a
    # group_interval later, carries every alert of the group.
    def both(d: dict[str, Any]) -> bool:
        agents = {a["labels"].get("agent") for a in d["alerts"]}
        return d["groupLabels"].get("rule") == "grouped" and agents == {"bot-a", "bot-b"}

    delivery = hook.wait_for(both)
    assert delivery["status"] == "firing"
    assert delivery["groupLabels"] == {"namespace": "agents", "rule": "grouped"}
    assert sorted(a["labels"]["agent"] for a in delivery["alerts"]) == ["bot-a", "bot-b"]
    assert {a["annotations"]["undo"] for a in delivery["alerts"]} == {
        "agentmedic restore agents/bot-a",
        "agentmedic restore agents/bot-b",
    }


async def test_a_resolve_sets_ends_at_and_the_alert_becomes_resolved(
    am: AlertmanagerServer, hook: HookReceiver
) -> None:
    ch = channel(am.url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    async with Notifier() as notifier:
        await notifier.notify(message("bot-r", "resolving", start=start), [ch])
        assert am.alerts(agent="bot-r")[0]["status"]["state"] == "active"
        ended = datetime.now(UTC).replace(microsecond=0)
        resolve = message("bot-r", "resolving", state=MessageState.RESOLVED, start=start, at=ended)
        report = await notifier.notify(resolve, [ch])
    assert report.results[0].outcome is Outcome.SENT, report.results[0]

    delivery = hook.wait_for(
        lambda d: d["status"] == "resolved" and d["groupLabels"].get("rule") == "resolving"
    )
    [alert] = delivery["alerts"]
    assert alert["status"] == "resolved"
    assert alert["labels"]["agent"] == "bot-r"
    assert datetime.fromisoformat(alert["endsAt"]) == ended
    assert datetime.fromisoformat(alert["startsAt"]) == start
    # No longer among the active alerts.
    assert all(a["status"]["state"] != "active" for a in am.alerts(agent="bot-r"))


async def test_a_silence_on_the_agent_silences_the_alert_and_nothing_is_delivered(
    am: AlertmanagerServer, hook: HookReceiver
) -> None:
    silence = am.silence({"agent": "bot-s"})
    ch = channel(am.url)
    async with Notifier() as notifier:
        report = await notifier.notify(message("bot-s", "silenced"), [ch])
    assert report.results[0].outcome is Outcome.SENT

    alert = wait_until(
        lambda: next(
            (a for a in am.alerts(agent="bot-s") if a["status"]["state"] == "suppressed"), None
        )
    )
    assert alert["status"]["silencedBy"] == [silence]
    # group_wait (1s) and a group_interval pass: still nothing for the silenced alert.
    await asyncio.sleep(3)
    assert not [
        d for d in hook.received() for a in d["alerts"] if a["labels"].get("agent") == "bot-s"
    ]


async def test_reposting_keeps_an_alert_active_past_the_resolve_timeout(
    am: AlertmanagerServer, hook: HookReceiver
) -> None:
    """resolve_timeout is 2s. An alert posted without endsAt (as a plain client would)
    resolves after it; the channel's alert, valid for four repost intervals and posted
    again every interval, stays active until the re-posts stop, then expires by itself."""
    interval = timedelta(seconds=1)
    ch = dataclasses.replace(channel(am.url), repost_interval=interval, renotify_after=interval)
    plain = {"labels": {"alertname": "Plain", "rule": "plain", "namespace": "agents"}}
    async with httpx.AsyncClient(timeout=5) as client:
        (await client.post(f"{am.url}/api/v2/alerts", json=[plain])).raise_for_status()

    firing = message("bot-k", "kept")
    posts = 0
    async with Notifier() as notifier:
        until = time.monotonic() + 6
        while time.monotonic() < until:
            report = await notifier.notify(firing, [ch])
            posts += report.results[0].outcome is Outcome.SENT
            await asyncio.sleep(0.25)
        [alert] = am.alerts(agent="bot-k")
        assert alert["status"]["state"] == "active"
    assert posts >= 5  # about one post a second; the ledger drops the ones in between
    resolved = [d for d in hook.received() if d["status"] == "resolved"]
    assert not [d for d in resolved if d["groupLabels"].get("rule") == "kept"]
    # The plain alert timed out long ago.
    hook.wait_for(lambda d: d["status"] == "resolved" and d["groupLabels"].get("rule") == "plain")
    # Re-posts stopped: the alert resolves at its endsAt, at most four intervals later.
    hook.wait_for(
        lambda d: d["status"] == "resolved" and d["groupLabels"].get("rule") == "kept",
        timeout=10,
    )


async def test_an_unreachable_alertmanager_is_a_reported_failure_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    ch = channel(f"http://127.0.0.1:{port}/prefix", auth="bearer")
    assert ch.url.reveal() == f"http://127.0.0.1:{port}/prefix/api/v2/alerts"
    caplog.set_level(logging.DEBUG)
    retry = RetryPolicy(attempts=2, initial_backoff=0.01)
    async with Notifier(retry=retry, timeout=5) as notifier:
        report = await notifier.notify(message("bot-u", "unreachable"), [ch])

    [result] = report.results
    assert result.outcome is Outcome.FAILED
    assert result.reason is Reason.RETRIES_EXHAUSTED
    assert result.detail == "network error (ConnectError) (gave up after 2 attempts)"
    assert result.attempts == 2
    text = caplog.text + repr(report)
    assert TOKEN not in text
    assert "Traceback" not in text
    assert all(r.exc_info is None for r in caplog.records)


# ----------------------------------------------------------------------------- the operator


def _agents_namespace(api: ApiEmulator, am: AlertmanagerServer, **channel: Any) -> str:
    """Namespace ``agents`` with the channel's Secret, one agent and a policy whose rule and
    noData stance notify the alertmanager channel (``channel``: more of its fields)."""
    ns = "agents"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "am-auth", "namespace": ns},
            "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
        }
    )
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "bot-1", "namespace": ns, "labels": {"team": "a"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "bot-1"}},
                "template": {
                    "metadata": {"labels": {"app": "bot-1"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    rule = {
        "name": "low-success",
        "all": [{"metric": "success_rate", "window": "30s", "op": "<", "value": 0.8}],
        "actions": [{"notify": {"channels": ["am"]}}],
    }
    channel_spec = {
        "url": am.url,
        "basicAuth": {
            "username": "agentmedic",
            "passwordSecretRef": {"name": "am-auth", "key": "password"},
        },
        "labels": {"team": "agents"},
        **channel,
    }
    api.create(
        {
            "apiVersion": "agentmedic.io/v1alpha1",
            "kind": "AgentPolicy",
            "metadata": {"name": "p", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"team": "a"}},
                "interval": "1s",
                "rules": [rule],
                "noData": {"mode": "notify", "after": "3s", "channels": ["am"]},
                "notifications": {"channels": [{"name": "am", "alertmanager": channel_spec}]},
            },
        }
    )
    return ns


def _operator(api: ApiEmulator, ns: str, prometheus_url: str) -> OperatorThread:
    settings = load_settings(
        flags={
            "prometheus_url": prometheus_url,
            "namespaces": [ns],
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
        },
        environ={},
    )
    op = OperatorThread(settings, api.client_configuration())
    op.start()
    return op


def test_the_operator_reads_the_channels_secret_and_posts_to_alertmanager(
    am: AlertmanagerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real operator (kopf) on the API emulator, its metrics backend a closed port: the
    metrics-unavailable notice reaches Alertmanager through a channel whose password the
    operator reads from a Secret."""
    # The policy's 1s interval is below the 10s minimum: run it time-compressed.
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")
    with ApiEmulator() as api:
        ns = _agents_namespace(api, am)
        op = _operator(api, ns, f"http://127.0.0.1:{free_port()}")
        try:
            [alert] = wait_until(lambda: am.alerts(policy="p"), timeout=40)
        finally:
            op.stop()
    assert alert["labels"]["alertname"] == "AgentmedicMetricsUnavailable"
    assert alert["labels"]["team"] == "agents"
    assert alert["labels"]["namespace"] == ns
    assert "agent" not in alert["labels"]
    assert alert["status"]["state"] == "active"


def test_the_operator_reposts_a_firing_episode_every_repost_interval(
    am: AlertmanagerServer,
    prometheus_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent without data (a Prometheus that answers, with no series for it) is a noData
    episode; the engine re-emits it every repostInterval (3s, time-compressed) and the
    operator posts it again, so its endsAt keeps moving while it lasts."""
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")
    prometheus = prometheus_factory()
    with ApiEmulator() as api:
        ns = _agents_namespace(api, am, repostInterval="3s")
        op = _operator(api, ns, prometheus.url)
        try:
            [first] = wait_until(lambda: am.alerts(agent="bot-1"), timeout=40)
            assert first["labels"]["alertname"] == "AgentmedicNoData"
            ends = [first["endsAt"]]
            deadline = time.monotonic() + 20
            while len(set(ends)) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                [alert] = am.alerts(agent="bot-1")
                ends.append(alert["endsAt"])
        finally:
            op.stop()
    moves = sorted(set(ends))
    assert len(moves) >= 3, f"endsAt did not move twice in 20s: {moves}"
    # Each post is valid for four repost intervals (12s) from when it was sent.
    assert datetime.fromisoformat(moves[-1]) - datetime.fromisoformat(moves[0]) >= timedelta(
        seconds=3
    )


def test_a_metrics_outage_is_reposted_so_alertmanager_keeps_it_active(
    am: AlertmanagerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metrics backend is a closed port: the fleet-wide outage notice goes to
    Alertmanager after noData.after and is posted again every repostInterval (3s,
    time-compressed) while the outage lasts, so its endsAt keeps moving and Alertmanager
    never resolves an outage that is still going on."""
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")
    with ApiEmulator() as api:
        ns = _agents_namespace(api, am, repostInterval="3s")
        op = _operator(api, ns, f"http://127.0.0.1:{free_port()}")
        try:
            [first] = wait_until(lambda: am.alerts(policy="p"), timeout=40)
            assert first["labels"]["alertname"] == "AgentmedicMetricsUnavailable"
            ends = [first["endsAt"]]
            deadline = time.monotonic() + 20
            while len(set(ends)) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                [alert] = am.alerts(policy="p")
                ends.append(alert["endsAt"])
        finally:
            op.stop()
    moves = sorted(set(ends))
    assert len(moves) >= 3, f"endsAt did not move twice in 20s: {moves}"
    assert alert["status"]["state"] == "active"
