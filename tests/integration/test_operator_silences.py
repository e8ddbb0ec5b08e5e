"""A silenced agent is neither changed nor paged, and is once the silence ends.

The operator runs in the test's loop (cycles run by the test, a clock it moves, an
in-process metrics backend) against both API servers (ids ``emulated`` and ``real``: the
emulator, and the session's real control plane with the operator's declared RBAC), with
a Slack receiver on loopback. Two agents breach the same rule; an AgentSilence covers one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentmedic.cli.main import main
from agentmedic.metrics import QueryResult, Sample
from agentmedic.operator.app import Operator
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
from tests.integration.operator_support import InstantBackend, in_loop_operator

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


class SickBackend(InstantBackend):
    """Every agent's success rate is 0.4: below the rule's 0.8."""

    def __init__(self, ns: str, agents: tuple[str, ...]) -> None:
        self.ns, self.agents = ns, agents

    async def query(self, promql: str, at: datetime) -> QueryResult:
        value = 0.4 if "success" in promql else 100.0
        samples = tuple(Sample({"agent": a, "namespace": self.ns}, value) for a in self.agents)
        return QueryResult("vector", samples=samples)


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


def policy(ns: str, actions: tuple[str, ...] = ("scaleToZero",)) -> dict[str, Any]:
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
                    "actions": [
                        *({kind: {}} for kind in actions),
                        {"notify": {"channels": ["slack"]}},
                    ],
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


def operator(api: KubeServer, ns: str, clock: Clock) -> Operator:
    op = in_loop_operator(
        operator_configuration(api),
        namespaces=[ns],
        clock=clock,
        backend=SickBackend(ns, ("quiet-bot", "loud-bot")),
    )
    return op


@contextlib.asynccontextmanager
async def silenced_operator(
    api: KubeServer,
    ns: str,
    clock: Clock,
    hook: str,
    silenced_for: timedelta,
    actions: tuple[str, ...] = ("scaleToZero",),
) -> AsyncIterator[Operator]:
    """quiet-bot and loud-bot, both breaching; quiet-bot silenced from a minute ago until
    ``silenced_for`` after the clock's start; the operator started, the policy registered."""
    api.create(hook_secret(ns, hook))
    for name in ("quiet-bot", "loud-bot"):
        api.create(deployment(ns, name))
    api.create(silence(ns, clock.now - timedelta(minutes=1), clock.now + silenced_for))
    body = api.create(policy(ns, actions))
    op = operator(api, ns, clock)
    await op.start()
    try:
        await op.register(body)
        async with asyncio.timeout(30):
            await op.cache.wait_synced()
        yield op
    finally:
        await op.stop()


async def cycle(op: Operator) -> None:
    await op.run_cycle(INTERVAL)
    await op.parts.deliveries.drain(20)


def hook_secret(ns: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook", "namespace": ns},
        "data": {"url": base64.b64encode(url.encode()).decode()},
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
        async with silenced_operator(api, ns, clock, url, timedelta(seconds=45)) as op:
            await cycle(op)
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
            await cycle(op)
            assert replicas(api, ns, "quiet-bot") == 2
            assert len(receivers.accepted(ReceiverKind.SLACK)) == 1

            clock.now += INTERVAL  # start + 60s: the silence ended at start + 45s
            await cycle(op)
            assert replicas(api, ns, "quiet-bot") == 0, "acted on once the silence ended"
            pages = [m.json()["text"] for m in receivers.accepted(ReceiverKind.SLACK)]
            assert len(pages) == 2
            assert "quiet-bot" in pages[1]
            status = (api.get(API, "AgentPolicy", ns, "heal") or {})["status"]
            cond = next(c for c in status["conditions"] if c["type"] == "Silenced")
            assert cond["status"] == "False"
    drop_namespace(api, ns)


async def test_a_page_a_silence_holds_is_recorded_once_and_shown_by_status(
    server: KubeServer, tmp_path: Path
) -> None:
    """A notify-only rule has no change to hold: its held page is what status records."""
    api = server
    ns = create_namespace(api, f"silence-{next(_namespaces)}-{_RUN}")
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    with NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        async with silenced_operator(api, ns, clock, url, timedelta(seconds=75), ()) as op:
            await cycle(op)
            pages = [m.json()["text"] for m in receivers.accepted(ReceiverKind.SLACK)]
            assert len(pages) == 1
            assert "loud-bot" in pages[0]
            held = held_pages(api, ns)
            assert len(held) == 1
            assert held[0]["outcome"] == "Suppressed"
            assert held[0]["agent"].endswith("quiet-bot")
            assert held[0]["rule"] == "low-success"
            reason = held[0]["reason"]
            end = (start + timedelta(seconds=75)).strftime("%Y-%m-%d %H:%MZ")
            for part in (
                "agentsilence/quiet-bot-inc42",
                "oncall@example.com",
                "INC-42: fixing it by hand",
                f"until {end}",
            ):
                assert part in reason

            for _ in range(2):  # still silenced: nothing new is recorded or written
                clock.now += INTERVAL
                before = (api.get(API, "AgentPolicy", ns, "heal") or {})["metadata"]
                await cycle(op)
                after = (api.get(API, "AgentPolicy", ns, "heal") or {})["metadata"]
                assert len(held_pages(api, ns)) == 1
                assert len(receivers.accepted(ReceiverKind.SLACK)) == 1
            assert after["resourceVersion"] == before["resourceVersion"], "no status storm"

            kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
            code, out = agentmedic("status", "-n", ns, "--kubeconfig", kubeconfig)
            assert code == 0
            assert "notify Suppressed" in out
            assert "agentsilence/quiet-bot-inc42" in out

            clock.now += INTERVAL  # start + 90s: the silence ended at start + 75s
            await cycle(op)
            pages = [m.json()["text"] for m in receivers.accepted(ReceiverKind.SLACK)]
            assert len(pages) == 2
            assert "quiet-bot" in pages[1], "paged once the silence ended"
            assert len(held_pages(api, ns)) == 1
    drop_namespace(api, ns)


def held_pages(api: KubeServer, ns: str) -> list[dict[str, Any]]:
    status = (api.get(API, "AgentPolicy", ns, "heal") or {}).get("status") or {}
    return [a for a in status.get("recentActions", []) if a["action"] == "notify"]


def agentmedic(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()
