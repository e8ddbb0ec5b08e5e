"""A silenced agent is neither changed nor paged, and is once the silence ends.

The operator runs in the test's loop (cycles run by the test, a clock it moves, an
in-process metrics backend) against both API servers (ids ``emulated`` and ``real``: the
emulator, and the session's real control plane with the operator's declared RBAC), with
a Slack receiver on loopback. Two agents breach the same rule; an AgentSilence covers one.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.metrics import QueryResult, RangeResult, Sample
from agentmedic.operator.app import Operator
from agentmedic.operator.settings import load_settings
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    create_namespace,
    drop_namespace,
    operator_configuration,
)
from tests.integration.operator_support import ManualScheduler

API = "agentmedic.io/v1alpha1"
INTERVAL = timedelta(seconds=30)
_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator() as emu:
        yield emu


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SickBackend:
    """Every agent's success rate is 0.4: below the rule's 0.8."""

    def __init__(self, ns: str, agents: tuple[str, ...]) -> None:
        self.ns, self.agents = ns, agents

    async def query(self, promql: str, at: datetime) -> QueryResult:
        value = 0.4 if "success" in promql else 100.0
        samples = tuple(Sample({"agent": a, "namespace": self.ns}, value) for a in self.agents)
        return QueryResult("vector", samples=samples)

    async def query_range(self, *args: Any) -> RangeResult:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


def deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": "a"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


def policy(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": "heal", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"team": "a"}},
            "interval": "30s",
            "rules": [
                {
                    "name": "low-success",
                    "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.8}],
                    "actions": [{"scaleToZero": {}}, {"notify": {"channels": ["slack"]}}],
                }
            ],
            "guardrails": {"maxDisabledPercent": 100},
            "notifications": {
                "channels": [
                    {
                        "name": "slack",
                        "slack": {"webhookSecretRef": {"name": "hook", "key": "url"}},
                    }
                ]
            },
        },
    }


def silence(ns: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentSilence",
        "metadata": {"name": "quiet-bot-inc42", "namespace": ns},
        "spec": {
            "agent": "quiet-bot",
            "startsAt": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endsAt": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reason": "INC-42: fixing it by hand",
            "createdBy": "oncall@example.com",
        },
    }


def replicas(api: KubeServer, ns: str, name: str) -> int:
    return int((api.get("apps/v1", "Deployment", ns, name) or {})["spec"]["replicas"])


async def test_a_silenced_agent_is_left_alone_until_the_silence_ends(server: KubeServer) -> None:
    api = server
    ns = create_namespace(api, f"silence-{next(_namespaces)}-{_RUN}")
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    with NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": ns},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        for name in ("quiet-bot", "loud-bot"):
            api.create(deployment(ns, name))
        api.create(silence(ns, start - timedelta(minutes=1), start + timedelta(seconds=45)))
        body = api.create(policy(ns))
        settings = load_settings(
            flags={
                "prometheus_url": "http://127.0.0.1:9",
                "namespaces": [ns],
                "peering": "",
                "metrics_port": 0,
                "health_port": 0,
            },
            environ={},
        )
        op = Operator.build(
            settings,
            operator_configuration(api),
            clock=clock,
            backend=SickBackend(ns, ("quiet-bot", "loud-bot")),
        )
        op.scheduler = ManualScheduler()  # type: ignore[assignment]
        await op.start()
        try:
            await op.register(body)
            async with asyncio.timeout(30):
                await op.cache.wait_synced()

            await op.run_cycle(INTERVAL)
            await op.parts.deliveries.drain(20)
            assert replicas(api, ns, "loud-bot") == 0
            assert replicas(api, ns, "quiet-bot") == 2, "the silenced agent is not changed"
            pages = [m.json()["text"] for m in receivers.accepted(ReceiverKind.SLACK)]
            assert len(pages) == 1
            assert "loud-bot" in pages[0]
            assert "quiet-bot" not in pages[0]
            status = (api.get(API, "AgentPolicy", ns, "heal") or {})["status"]
            held = [a for a in status["recentActions"] if a["agent"].endswith("quiet-bot")]
            assert [a["outcome"] for a in held] == ["Suppressed"]
            assert "silenced by oncall@example.com until" in held[0]["reason"]
            assert "INC-42: fixing it by hand" in held[0]["reason"]
            cond = next(c for c in status["conditions"] if c["type"] == "Silenced")
            assert cond["status"] == "True"
            assert "agentsilence/quiet-bot-inc42" in cond["message"]

            clock.now += INTERVAL  # still silenced: nothing new
            await op.run_cycle(INTERVAL)
            await op.parts.deliveries.drain(20)
            assert replicas(api, ns, "quiet-bot") == 2
            assert len(receivers.accepted(ReceiverKind.SLACK)) == 1

            clock.now += INTERVAL  # start + 60s: the silence ended at start + 45s
            await op.run_cycle(INTERVAL)
            await op.parts.deliveries.drain(20)
            assert replicas(api, ns, "quiet-bot") == 0, "acted on once the silence ended"
            pages = [m.json()["text"] for m in receivers.accepted(ReceiverKind.SLACK)]
            assert len(pages) == 2
            assert "quiet-bot" in pages[1]
            status = (api.get(API, "AgentPolicy", ns, "heal") or {})["status"]
            cond = next(c for c in status["conditions"] if c["type"] == "Silenced")
            assert cond["status"] == "False"
        finally:
            await op.stop()
    drop_namespace(api, ns)
