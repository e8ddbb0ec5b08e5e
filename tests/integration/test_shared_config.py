"""Shared channels and per-team metrics backends, with the real operator, a real Prometheus
behind two tenant proxies (each answering only its own ``X-Scope-OrgID`` and token, as
Mimir would), a loopback Slack receiver, and both API servers (the emulator and the local
control plane, where the operator runs with exactly its declared RBAC).

- two teams' policies, in two namespaces, are fetched from their own backend with their
  own tenant and token: one query per (metric, window) per backend, the needs of two
  policies on one backend merged, nothing sent to the operator's own backend;
- a ClusterNotificationChannel named by policies of both teams delivers to one receiver,
  and its maxPerHour holds across the policies;
- a reference to nothing holds the policy: Ready=False naming the reference, no query, no
  action; creating what it names lets the policy run at the next cycle;
- no Secret value reaches status or Events.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.operator.app import Operator
from agentmedic.operator.settings import load_settings
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.prometheus import Series, counter, openmetrics_text
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    RealServer,
    create_namespace,
    drop_namespace,
    operator_configuration,
)
from tests.integration.operator_support import ManualScheduler
from tests.integration.tenant_proxy import TenantProxy

pytestmark = pytest.mark.prometheus

API = "agentmedic.io/v1alpha1"
T0 = 1_700_000_000
INTERVAL = timedelta(seconds=30)
_RUN = uuid.uuid4().hex[:6]
_seq = itertools.count(1)
TOKEN_A = "tok-a-" + uuid.uuid4().hex
TOKEN_B = "tok-b-" + uuid.uuid4().hex
TOKEN_DEFAULT = "tok-default-" + uuid.uuid4().hex
AGENTS = {"a": {"sick-a": 0.5, "ok-a": 0.0}, "b": {"sick-b": 0.5}}
"""Team → agent → error ratio in the history."""


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        real: RealServer = request.getfixturevalue("real_server")
        yield real
        return
    with ApiEmulator(history_limit=5_000) as emu:
        yield emu


@dataclass
class World:
    api: KubeServer
    ns: dict[str, str]
    """Team (a, b) and op (the operator's namespace) → namespace."""
    receivers: NotificationReceivers


def _secret(ns: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _deployment(ns: str, agent: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": agent, "namespace": ns, "labels": {"agent": agent}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": agent}},
            "template": {
                "metadata": {"labels": {"app": agent}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


@pytest.fixture
def world(server: KubeServer) -> Iterator[World]:
    n = next(_seq)
    ns = {k: create_namespace(server, f"{k}-{n}-{_RUN}") for k in ("a", "b", "op")}
    with NotificationReceivers() as receivers:
        server.create(_secret(ns["op"], "oncall", {"url": receivers.url_for(ReceiverKind.SLACK)}))
        server.create(_secret(ns["a"], "mimir", {"token": TOKEN_A}))
        server.create(_secret(ns["op"], "mimir-b", {"token": TOKEN_B}))
        for team in ("a", "b"):
            for agent in AGENTS[team]:
                server.create(_deployment(ns[team], agent))
        yield World(server, ns, receivers)
    for name in ns.values():
        drop_namespace(server, name)


def history(ns: dict[str, str]) -> list[Series]:
    series = []
    steps = range(T0 - 3600, T0 + 900, 15)
    for team, agents in AGENTS.items():
        for agent, ratio in agents.items():
            labels = {"agent": agent, "namespace": ns[team]}
            ok = [(t, (t - steps[0]) * (1 - ratio)) for t in steps]
            bad = [(t, (t - steps[0]) * ratio) for t in steps]
            series.append(counter("agent_executions_total", {**labels, "status": "success"}, ok))
            series.append(counter("agent_executions_total", {**labels, "status": "error"}, bad))
            cost = [(t, (t - steps[0]) / 360) for t in steps]  # $10 an hour
            series.append(counter("agent_cost_usd_total", {**labels, "model": "gpt-4o"}, cost))
    return series


def policy(ns: str, name: str, agents: list[str], backend: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchExpressions": [{"key": "agent", "operator": "In", "values": agents}]},
        "interval": "30s",
        "rules": [
            {
                "name": "errors",
                "all": [{"metric": "error_rate", "window": "5m", "op": ">", "value": 0.2}],
                "actions": [{"notify": {"channels": ["oncall"]}}],
            },
            {
                "name": "severe",
                "all": [{"metric": "error_rate", "window": "10m", "op": ">", "value": 0.3}],
                "actions": [{"scaleToZero": {}}],
            },
        ],
        "guardrails": {"maxDisabledPercent": 100, "systemicPercent": 100, "systemicMinAgents": 100},
        "notifications": {
            "channels": [
                {
                    "name": "oncall",
                    "channelRef": {"kind": "ClusterNotificationChannel", "name": f"oncall-{ns}"},
                }
            ]
        },
    }
    if backend is not None:
        spec["metricsBackendRef"] = backend
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def backend(kind: str, ns: str | None, name: str, url: str, tenant: str, secret: str) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": meta,
        "spec": {
            "url": url,
            "tenant": tenant,
            "bearerTokenSecretRef": {"name": secret, "key": "token"},
            "timeout": "5s",
        },
    }


def oncall(name: str, max_per_hour: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ClusterNotificationChannel",
        "metadata": {"name": name},
        "spec": {
            "slack": {"webhookSecretRef": {"name": "oncall", "key": "url"}},
            "maxPerHour": max_per_hour,
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = datetime.fromtimestamp(T0, UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Running:
    op: Operator
    clock: Clock
    a: TenantProxy
    b: TenantProxy
    default: TenantProxy

    async def cycle(self) -> None:
        """One cycle, then what a real interval gives time for: its deliveries, and the
        sweep of the shared objects each cycle starts (it writes their usedBy)."""
        sweeps = self.op.shared.sweeps
        await self.op.run_cycle(INTERVAL)
        while self.op.parts.deliveries.tasks:
            await asyncio.wait(set(self.op.parts.deliveries.tasks))
        for _ in range(500):
            if self.op.shared.sweeps > sweeps:
                break
            await asyncio.sleep(0.01)
        self.clock.now += INTERVAL


@pytest.fixture
async def running(world: World, prometheus_factory: Any) -> AsyncIterator[Running]:
    prom = prometheus_factory(backfill=openmetrics_text(history(world.ns)))
    async with (
        TenantProxy(prom.url, tenant="team-a", token=TOKEN_A) as a,
        TenantProxy(prom.url, tenant="team-b", token=TOKEN_B) as b,
        TenantProxy(prom.url, tenant="platform", token=TOKEN_DEFAULT) as default,
    ):
        settings = load_settings(
            flags={
                "prometheus_url": default.url,
                "tenant": "platform",
                "peering": "",
                "lease_namespace": world.ns["op"],
                "metrics_port": 0,
                "health_port": 0,
            },
            environ={},
        )
        clock = Clock()
        op = Operator.build(settings, operator_configuration(world.api), clock=clock)
        op.scheduler = ManualScheduler()  # type: ignore[assignment]
        await op.start()
        try:
            yield Running(op, clock, a, b, default)
        finally:
            await op.stop()


async def register(run: Running, api: KubeServer, doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    body = await asyncio.to_thread(api.create, doc)
    await run.op.register(body)
    entry = run.op.entries[(meta["namespace"], meta["name"])]
    for _ in range(1000):
        if run.op.cache.workloads(entry.namespace, entry.selector) is not None:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the workloads were never listed")


async def resolved(run: Running, kind: str, ns: str, name: str) -> None:
    """Wait until the operator's watch has seen a shared object."""
    cache = run.op.parts.refs.cache
    for _ in range(1000):
        if cache.get(kind, ns, name) is not None:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{kind} {name} was never seen")


async def listed(run: Running, kind: str, ns: str) -> None:
    cache = run.op.parts.refs.cache
    for _ in range(1000):
        if cache.synced(kind, ns):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{kind} was never listed")


def conditions(api: KubeServer, ns: str, name: str) -> dict[str, dict[str, Any]]:
    obj = api.get(API, "AgentPolicy", ns, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}


def ready_of(api: KubeServer, kind: str, ns: str | None, name: str) -> tuple[str, str] | None:
    obj = api.get(API, kind, ns, name) or {}
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == "Ready":
            return (c["status"], c["reason"])
    return None


def replicas(api: KubeServer, ns: str, name: str) -> int:
    obj = api.get("apps/v1", "Deployment", ns, name) or {}
    return int(obj["spec"]["replicas"])


async def test_each_team_is_fetched_from_its_own_backend_and_shares_one_rate_limited_channel(
    world: World, running: Running
) -> None:
    api, ns, run = world.api, world.ns, running
    channel = f"oncall-{ns['a']}"
    api.create(oncall(channel, max_per_hour=1))
    api.create(backend("MetricsBackend", ns["a"], "team-a", run.a.url, "team-a", "mimir"))
    api.create(
        backend("ClusterMetricsBackend", None, f"team-b-{ns['b']}", run.b.url, "team-b", "mimir-b")
    )
    ref_a = {"kind": "MetricsBackend", "name": "team-a"}
    ref_b = {"kind": "ClusterMetricsBackend", "name": f"team-b-{ns['b']}"}
    # Two policies of team a on one backend (their needs merge), one of team b on another.
    a1 = policy(ns["a"], "a1", ["sick-a"], ref_a)
    a2 = policy(ns["a"], "a2", ["ok-a"], ref_a)
    b1 = policy(ns["b"], "b1", ["sick-b"], ref_b)
    for doc in (a1, a2):
        doc["spec"]["notifications"]["channels"][0]["channelRef"]["name"] = channel
    b1["spec"]["notifications"]["channels"][0]["channelRef"]["name"] = channel
    for doc in (a1, a2, b1):
        await register(run, api, doc)
    await resolved(run, "MetricsBackend", ns["a"], "team-a")
    await resolved(run, "ClusterMetricsBackend", ns["b"], f"team-b-{ns['b']}")
    await resolved(run, "ClusterNotificationChannel", ns["a"], channel)

    await run.cycle()

    for name, team in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        got = conditions(api, ns[team], name)
        assert got["Ready"]["status"] == "True", got
        assert got["MetricsAvailable"]["status"] == "True", got
    # Each backend got its own policies' queries, with its own tenant and token (the
    # proxies refuse anything else, and refused nothing), nothing went to the default.
    assert run.a.refused == []
    assert run.b.refused == []
    assert run.default.queries == []
    assert run.a.queries
    assert run.b.queries
    # One query per (metric, window) per backend: the same needs on each backend, and a1's
    # and a2's merged into the same queries.
    assert len(run.a.queries) == len(set(run.a.queries)) == len(run.b.queries)
    assert all("sick-a" in q and "ok-a" in q and "sick-b" not in q for q in run.a.queries)
    assert all("sick-b" in q and "sick-a" not in q for q in run.b.queries)
    # Evidence from the right backend: the sick agents were acted on, the healthy one not.
    assert replicas(api, ns["a"], "sick-a") == 0
    assert replicas(api, ns["b"], "sick-b") == 0
    assert replicas(api, ns["a"], "ok-a") == 2
    # Both sick agents fired "errors" on the shared channel; its maxPerHour of 1 holds
    # across the two policies: one message reached the one receiver.
    slack = world.receivers.accepted(ReceiverKind.SLACK)
    assert len(slack) == 1, [world.receivers.describe(r) for r in slack]
    # The other was held back by the shared limit, not dropped as a duplicate: a channel
    # limited per policy would have sent both (the ledger's unit tests show that case).
    sample = run.op.telemetry.registry.get_sample_value(
        "agentmedic_notifications_total", {"channel": "oncall", "result": "Suppressed"}
    )
    assert sample == 1
    [api.get(API, "AgentPolicy", ns[t], n) or {} for t, n in (("a", "a1"), ("b", "b1"))]
    # What the operator found is on the shared objects too (kubectl get's READY column),
    # written once: later cycles that find the same write nothing.
    assert ready_of(api, "MetricsBackend", ns["a"], "team-a") == ("True", "Resolved")
    assert ready_of(api, "ClusterMetricsBackend", None, f"team-b-{ns['b']}") == ("True", "Resolved")
    assert ready_of(api, "ClusterNotificationChannel", None, channel) == ("True", "Valid")
    writes = run.op.parts.refs.status_writes()
    await run.cycle()
    await run.cycle()
    assert run.op.parts.refs.status_writes() == writes

    texts = json.dumps(
        [
            api.get(API, kind, ns.get(t), n)
            for kind, t, n in (
                ("AgentPolicy", "a", "a1"),
                ("AgentPolicy", "b", "b1"),
                ("MetricsBackend", "a", "team-a"),
                ("ClusterMetricsBackend", "", f"team-b-{ns['b']}"),
            )
        ]
    )
    events = json.dumps([e for t in ("a", "b") for e in api.list("v1", "Event", namespace=ns[t])])
    for secret in (TOKEN_A, TOKEN_B, world.receivers.slack_token):
        assert secret not in texts
        assert secret not in events


async def test_a_reference_to_nothing_holds_the_policy_until_it_exists(
    world: World, running: Running
) -> None:
    api, ns, run = world.api, world.ns, running
    channel = f"oncall-{ns['a']}"
    api.create(oncall(channel, max_per_hour=10))
    doc = policy(ns["a"], "held", ["sick-a", "ok-a"], {"kind": "MetricsBackend", "name": "team-a"})
    doc["spec"]["notifications"]["channels"][0]["channelRef"]["name"] = channel
    await register(run, api, doc)
    await resolved(run, "ClusterNotificationChannel", ns["a"], channel)
    await listed(run, "MetricsBackend", ns["a"])

    await run.cycle()
    await run.cycle()

    ready = conditions(api, ns["a"], "held")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "MetricsBackendRefNotFound")
    assert ready["message"].startswith(
        f"MetricsBackend team-a: no such object in namespace {ns['a']}"
    )
    assert run.a.queries == []
    assert run.default.queries == []
    assert replicas(api, ns["a"], "sick-a") == 2
    assert world.receivers.accepted(ReceiverKind.SLACK) == []
    warnings = [
        e
        for e in api.list("v1", "Event", namespace=ns["a"])
        if e.get("reason") == "MetricsBackendRefNotFound"
    ]
    assert len(warnings) == 1  # once, not once per cycle

    # The backend appears: the policy runs at the next cycle, on it.
    api.create(backend("MetricsBackend", ns["a"], "team-a", run.a.url, "team-a", "mimir"))
    await resolved(run, "MetricsBackend", ns["a"], "team-a")
    await run.cycle()
    ready = conditions(api, ns["a"], "held")["Ready"]
    assert ready["status"] == "True", ready
    assert run.a.queries
    assert replicas(api, ns["a"], "sick-a") == 0


async def test_a_missing_shared_channel_holds_the_policy(world: World, running: Running) -> None:
    api, ns, run = world.api, world.ns, running
    doc = policy(ns["b"], "no-channel", ["sick-b"], None)
    await register(run, api, doc)
    await listed(run, "ClusterNotificationChannel", ns["b"])
    await run.cycle()
    ready = conditions(api, ns["b"], "no-channel")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ChannelRefNotFound")
    assert f"ClusterNotificationChannel oncall-{ns['b']}: no such object" in ready["message"]
    assert run.default.queries == []
    assert replicas(api, ns["b"], "sick-b") == 2


async def test_a_backend_whose_secret_is_missing_holds_its_policies_and_says_why(
    world: World, running: Running
) -> None:
    api, ns, run = world.api, world.ns, running
    channel = f"oncall-{ns['b']}"
    api.create(oncall(channel, max_per_hour=10))
    api.create(backend("MetricsBackend", ns["b"], "team-b", run.b.url, "team-b", "missing"))
    await register(run, api, policy(ns["b"], "b1", ["sick-b"], {"name": "team-b"}))
    await resolved(run, "MetricsBackend", ns["b"], "team-b")
    await resolved(run, "ClusterNotificationChannel", ns["b"], channel)

    await run.cycle()

    ready = conditions(api, ns["b"], "b1")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "MetricsBackendRefInvalid")
    why = f"cannot read the bearer token from key 'token' of Secret {ns['b']}/missing"
    assert why in ready["message"]
    assert ready_of(api, "MetricsBackend", ns["b"], "team-b") == ("False", "Unresolved")
    assert run.b.queries == []
    assert replicas(api, ns["b"], "sick-b") == 2

    api.create(_secret(ns["b"], "missing", {"token": TOKEN_B}))
    await run.cycle()
    assert conditions(api, ns["b"], "b1")["Ready"]["status"] == "True"
    assert ready_of(api, "MetricsBackend", ns["b"], "team-b") == ("True", "Resolved")
    assert run.b.queries
    assert replicas(api, ns["b"], "sick-b") == 0


async def test_a_budget_reads_spend_from_the_backend_it_names(
    world: World, running: Running
) -> None:
    """An AgentBudget with spec.metricsBackendRef reads its agents' spend from that tenant,
    one query per (metric, window), and nothing of it from the operator's backend."""
    api, ns, run = world.api, world.ns, running
    api.create(backend("MetricsBackend", ns["a"], "team-a", run.a.url, "team-a", "mimir"))
    ref_a = {"kind": "MetricsBackend", "name": "team-a"}
    await register(run, api, policy(ns["a"], "a1", ["sick-a", "ok-a"], ref_a))
    await resolved(run, "MetricsBackend", ns["a"], "team-a")
    budget = {
        "apiVersion": API,
        "kind": "AgentBudget",
        "metadata": {"name": "team-a-daily", "namespace": ns["a"]},
        "spec": {
            "period": "24h",
            "limitUSD": 5,
            "forecastWindow": "10m",
            "stages": [{"name": "warn", "atPercent": 80}],
            "metricsBackendRef": ref_a,
        },
    }
    api.create(budget)
    budgets = run.op.parts.budgets
    status: dict[str, Any] = {}
    for _ in range(200):
        await budgets.run(run.op._owned(), run.op.cache)
        got = api.get(API, "AgentBudget", ns["a"], "team-a-daily") or {}
        status = got.get("status") or {}
        if status.get("stage"):
            break
        await asyncio.sleep(0.02)
    assert status.get("stage") == "warn", status
    assert status["agents"] == 2
    assert status["spendUSD"] >= 4
    # One evaluation: one query per window (the period so far, the forecast window). The
    # budgets' own loop may run too (woken by the status write): the window is counted
    # between two ends of a run, so it holds whole runs only.
    await budgets.run(run.op._owned(), run.op.cache)
    before, runs = len(run.a.queries), budgets.evaluations
    await budgets.run(run.op._owned(), run.op.cache)
    runs = budgets.evaluations - runs
    cost_queries = [q for q in run.a.queries[before:] if "agent_cost_usd_total" in q]
    assert len(set(cost_queries)) == 2, cost_queries
    assert len(cost_queries) == 2 * runs, (runs, cost_queries)
    assert not [q for q in run.default.queries if "agent_cost_usd_total" in q]
    assert run.a.refused == []
    await run.op.shared.run()  # the backend's status names its users, the budget among them
    users = [f"AgentBudget {ns['a']}/team-a-daily", f"AgentPolicy {ns['a']}/a1"]
    assert shared_status(api, "MetricsBackend", ns["a"], "team-a").get("usedBy") == users


def shared_status(api: KubeServer, kind: str, ns: str | None, name: str) -> dict[str, Any]:
    return (api.get(API, kind, ns, name) or {}).get("status") or {}


async def settled(what: str, check: Any, *args: Any) -> None:
    """Wait (generously: the sweep runs in the operator's loop) until ``check(*args)``."""
    for _ in range(1500):
        if await asyncio.to_thread(check, *args):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(what)


def ready_is(api: KubeServer, kind: str, ns: str, name: str, ready: tuple[str, str]) -> bool:
    return ready_of(api, kind, ns, name) == ready


def used_by_is(api: KubeServer, kind: str, ns: str, name: str, users: list[str] | None) -> bool:
    return shared_status(api, kind, ns, name).get("usedBy") == users


def chat(ns: str, name: str, secret: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "NotificationChannel",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"slack": {"webhookSecretRef": {"name": secret, "key": key}}},
    }


async def test_every_shared_object_gets_its_status_on_sight_and_names_its_users(
    world: World, running: Running
) -> None:
    """Nothing refers to these objects yet: each is checked and shows READY all the same;
    once a policy names one, its status lists it. Written only when something changed."""
    api, ns, run = world.api, world.ns, running
    api.create(backend("MetricsBackend", ns["a"], "team-a", run.a.url, "team-a", "mimir"))
    api.create(backend("MetricsBackend", ns["b"], "lost", run.b.url, "team-b", "missing"))
    api.create(chat(ns["a"], "team-chat", "mimir", "token"))
    api.create(chat(ns["b"], "no-secret", "chat-hook", "url"))
    wanted = {
        ("MetricsBackend", ns["a"], "team-a"): ("True", "Resolved"),
        ("MetricsBackend", ns["b"], "lost"): ("False", "Unresolved"),
        ("NotificationChannel", ns["a"], "team-chat"): ("True", "Valid"),
        ("NotificationChannel", ns["b"], "no-secret"): ("False", "Unresolved"),
    }
    for (kind, where, name), ready in wanted.items():
        await settled(f"{kind} {name} {ready}", ready_is, api, kind, where, name, ready)
        status = json.dumps(shared_status(api, kind, where, name))
        assert "usedBy" not in status, "nothing refers to it yet"
        assert TOKEN_A not in status
        assert TOKEN_B not in status
    lost = shared_status(api, "MetricsBackend", ns["b"], "lost")["conditions"][0]["message"]
    assert f"Secret {ns['b']}/missing" in lost
    no_secret = shared_status(api, "NotificationChannel", ns["b"], "no-secret")
    assert f"Secret {ns['b']}/chat-hook" in no_secret["conditions"][0]["message"]

    a1 = policy(ns["a"], "a1", ["sick-a"], {"kind": "MetricsBackend", "name": "team-a"})
    a1["spec"]["notifications"]["channels"][0]["channelRef"] = {"name": "team-chat"}
    await register(run, api, a1)
    users = [f"AgentPolicy {ns['a']}/a1"]
    for kind, name in (("MetricsBackend", "team-a"), ("NotificationChannel", "team-chat")):
        await settled(f"{kind} {name} used", used_by_is, api, kind, ns["a"], name, users)
        assert ready_of(api, kind, ns["a"], name) == wanted[(kind, ns["a"], name)]

    await run.cycle()
    await run.op.shared.run()
    writes = run.op.parts.refs.status_writes()
    for _ in range(2):  # nothing changed: nothing is written
        await run.cycle()
        await run.op.shared.run()
    assert run.op.parts.refs.status_writes() == writes
    assert ready_of(api, "MetricsBackend", ns["a"], "team-a") == ("True", "Resolved")

    await run.op.unregister(a1)
    await asyncio.to_thread(api.delete, API, "AgentPolicy", ns["a"], "a1")
    await settled("usedBy cleared", used_by_is, api, "MetricsBackend", ns["a"], "team-a", None)
