"""Probation end to end: a budget downgrade that hurts quality is reverted, one that holds
is verified — on both API servers, with a real Prometheus.

Two agents report through the SDK (``ex.score`` included), recorded step by step and
backfilled into Prometheus: both run gpt-4o with a quality score near 0.9 until the
switch time S; from S on they run gpt-4o-mini, ``drop-bot`` scoring near 0.6 and
``keep-bot`` near 0.9. The operator runs in the test's loop with a clock the test moves
(first cycle at S, where the agent-scope budget's soft stage switches both agents), a
manual scheduler, and loopback receivers for the budget's channels (Slack, PagerDuty,
webhook): the regression's page resolves with its trigger's dedup_key once the revert
shows on the workload, or, with ``onRegression: notify``, once a person puts the previous
model back.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentmedic.actions.probation import parse_probation
from agentmedic.actions.record import PROBATION, state_key
from agentmedic.instrument import AgentMonitor, LLMCall, ModelPrice, PriceTable
from agentmedic.operator.app import Operator
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.fleet_sim import registry_series
from agentmedic_sandbox.prometheus import Series, openmetrics_text
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    create_namespace,
    drop_namespace,
)
from tests.integration.operator_support import in_loop_operator, receivers_secret

pytestmark = pytest.mark.prometheus

API = "agentmedic.io/v1alpha1"
S = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
"""The first cycle, where the budget switches both agents."""
STEP = 15
INTERVAL = timedelta(seconds=30)
PRICES = PriceTable(
    {
        "gpt-4o": ModelPrice(input=2.5, cached_input=1.25, output=10.0),
        "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.6),
    }
)
QUALITY_AFTER = {"drop-bot": (0.55, 0.65), "keep-bot": (0.88, 0.92)}
_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]


def script(ns: str) -> str:
    """Both agents from S - 30m to S + 12m, 4 executions per 15 s, as OpenMetrics text."""
    rng = random.Random(20)
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    registries = {name: CollectorRegistry() for name in QUALITY_AFTER}
    monitors = {
        name: AgentMonitor(name, registries[name], model="gpt-4o", prices=PRICES)
        for name in QUALITY_AFTER
    }
    start, end = int(S.timestamp()) - 30 * 60, int(S.timestamp()) + 12 * 60
    for t in range(start, end + 1, STEP):
        after = t >= S.timestamp()
        for name, monitor in monitors.items():
            model = "gpt-4o-mini" if after else "gpt-4o"
            low, high = QUALITY_AFTER[name] if after else (0.88, 0.92)
            for _ in range(4):
                monitor.record_execution(
                    latency_s=rng.uniform(1.5, 2.5),
                    model=model,
                    llm_calls=[LLMCall(request_model=model, input_tokens=1000, output_tokens=200)],
                    timestamp=t - 2.0,
                    scores=[("groundedness", rng.uniform(low, high))],
                )
        for registry in registries.values():
            for s in registry_series(registry, t, {"namespace": ns}):
                series.setdefault((s.name, tuple(sorted(s.labels.items()))), []).extend(s.points)
    return openmetrics_text(Series(n, dict(lab), pts) for (n, lab), pts in series.items())


def policy(ns: str, pagerduty_url: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": "spend", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"team": "support"}},
            "interval": "30s",
            "model": {
                "env": {"container": "agent", "name": "MODEL"},
                "tiers": ["gpt-4o", "gpt-4o-mini"],
            },
            "budget": {
                "period": "day",
                "scope": "agent",
                "limitUSD": 4,
                "soft": {
                    "atPercent": 50,
                    "actions": [
                        {"switchModel": {}},
                        {"notify": {"channels": ["finance", "pager", "hook"]}},
                    ],
                },
            },
            "verify": {"window": "5m", "baselineWindow": "10m", "minExecutions": 20},
            "notifications": {
                "channels": [
                    {
                        "name": "finance",
                        "slack": {"webhookSecretRef": {"name": "finance-hook", "key": "url"}},
                    },
                    {
                        "name": "pager",
                        "pagerduty": {
                            "routingKeySecretRef": {
                                "name": "notify",
                                "key": "pagerduty-routing-key",
                            },
                            "url": pagerduty_url,
                        },
                    },
                    {
                        "name": "hook",
                        "webhook": {"urlSecretRef": {"name": "notify", "key": "webhook-url"}},
                    },
                ]
            },
        },
    }


def deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": "support"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": "agent:1",
                            "env": [{"name": "MODEL", "value": "gpt-4o"}],
                        }
                    ]
                },
            },
        },
    }


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator(history_limit=5000) as emu:
        yield emu


class Clock:
    def __init__(self) -> None:
        self.now = S

    def __call__(self) -> datetime:
        return self.now


def _model(api: KubeServer, ns: str, name: str) -> str:
    obj = api.get("apps/v1", "Deployment", ns, name) or {}
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "MODEL"))


def _annotations(api: KubeServer, ns: str, name: str) -> dict[str, str]:
    obj = api.get("apps/v1", "Deployment", ns, name) or {}
    return dict(obj["metadata"].get("annotations") or {})


async def _settled(op: Operator, ns: str, test: Any) -> None:
    """Until the operator's workload cache shows what the last cycle wrote."""
    for _ in range(400):
        cached = op.cache.workloads(ns, op.entries[(ns, "spend")].selector) or []
        if cached and test({w.name: w for w in cached}):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the workload cache never showed the change")


async def test_a_downgrade_that_hurts_quality_is_reverted_and_one_that_holds_is_verified(
    server: KubeServer, prometheus_factory: Any
) -> None:
    ns = create_namespace(server, f"probation-{next(_namespaces)}-{_RUN}")
    try:
        with NotificationReceivers() as receivers:
            await _run(server, ns, prometheus_factory, receivers)
    finally:
        drop_namespace(server, ns)


async def _operator(
    api: KubeServer,
    ns: str,
    prometheus_factory: Any,
    receivers: NotificationReceivers,
    on_regression: str = "revert",
) -> tuple[Operator, Clock, dict[str, Any]]:
    """The world of the script, and an operator (started) whose clock is at S."""
    prom = prometheus_factory(backfill=script(ns))
    url = receivers.url_for(ReceiverKind.SLACK)
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "finance-hook", "namespace": ns},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }
    )
    api.create(receivers_secret(ns, receivers))
    for name in QUALITY_AFTER:
        api.create(deployment(ns, name))
    doc = policy(ns, receivers.url_for(ReceiverKind.PAGERDUTY))
    doc["spec"]["verify"]["onRegression"] = on_regression
    body = api.create(doc)
    clock = Clock()
    op = in_loop_operator(
        api.client_configuration(),
        namespaces=[ns],
        prometheus_url=prom.url,
        clock=clock,
    )
    await op.start()
    return op, clock, body


async def _run(
    api: KubeServer, ns: str, prometheus_factory: Any, receivers: NotificationReceivers
) -> None:
    op, clock, body = await _operator(api, ns, prometheus_factory, receivers)
    try:
        await op.register(body)
        await _settled(op, ns, lambda ws: len(ws) == 2)
        await op.run_cycle(INTERVAL)  # S: the soft stage switches both agents
        assert {_model(api, ns, n) for n in QUALITY_AFTER} == {"gpt-4o-mini"}
        record = json.loads(_annotations(api, ns, "drop-bot")[PROBATION])
        assert record["previous"] == "gpt-4o"
        assert record["baseline"]["quality_score"] == pytest.approx(0.9, abs=0.01)
        assert record["baseline"]["executions"] == pytest.approx(160, abs=8)
        await _settled(op, ns, lambda ws: all(PROBATION in w.annotations for w in ws.values()))
        while clock.now < S + timedelta(minutes=6):
            clock.now += INTERVAL
            await op.run_cycle(INTERVAL)
            await asyncio.sleep(0.05)
        assert _model(api, ns, "drop-bot") == "gpt-4o"
        reverted = parse_probation(_annotations(api, ns, "drop-bot"))
        assert reverted is not None
        assert reverted.reverted_at is not None  # the record keeps the rejection
        assert _model(api, ns, "keep-bot") == "gpt-4o-mini"
        state = json.loads(_annotations(api, ns, "drop-bot")[state_key("spend")])
        assert "gpt-4o-mini" in state["rejected"]
        status = (api.get(API, "AgentPolicy", ns, "spend") or {})["status"]
        lines = {(a["agent"].split("/")[1], a["outcome"]) for a in status["recentActions"]}
        assert ("drop-bot", "Regressed") in lines
        assert ("drop-bot", "Reverted") in lines
        assert ("keep-bot", "Verified") in lines
        regressed = next(a for a in status["recentActions"] if a["outcome"] == "Regressed")
        assert re.search(
            r"quality_score (89|9[01])(\.\d)?% → (5[89]|6[0-2])(\.\d)?%", regressed["reason"]
        ), regressed["reason"]
        messages = receivers.wait_for(3, kind=ReceiverKind.SLACK, within=20)
        texts = [json.dumps(m.json()) for m in messages]
        assert any("reverted to gpt-4o" in t and "needs a person" in t for t in texts), texts
        await _regression_page_resolves(op, ns, clock, receivers)
    finally:
        await op.stop()


def _probation_events(receivers: NotificationReceivers, kind: ReceiverKind) -> list[Any]:
    out = []
    for r in receivers.accepted(kind):
        body = r.json()
        key = body.get("dedup_key") if kind is ReceiverKind.PAGERDUTY else body.get("episode")
        if str(key).endswith(":probation"):
            out.append(body)
    return out


async def _regression_page_resolves(
    op: Operator, ns: str, clock: Clock, receivers: NotificationReceivers
) -> None:
    """drop-bot's page (PagerDuty trigger) resolves once the revert shows on the workload,
    with the same dedup_key; the webhook's resolved message says so, with the numbers."""

    def reverted(ws: dict[str, Any]) -> bool:
        record = parse_probation(ws["drop-bot"].annotations)
        return record is not None and record.reverted_at is not None

    await _settled(op, ns, reverted)
    for _ in range(20):
        pd = _probation_events(receivers, ReceiverKind.PAGERDUTY)
        if any(e["event_action"] == "resolve" for e in pd):
            break
        clock.now += INTERVAL
        await op.run_cycle(INTERVAL)
        await op.parts.deliveries.drain(30)
    pd = _probation_events(receivers, ReceiverKind.PAGERDUTY)
    assert [e["event_action"] for e in pd] == ["trigger", "resolve"], pd
    assert pd[0]["dedup_key"] == pd[1]["dedup_key"]
    hooks = _probation_events(receivers, ReceiverKind.WEBHOOK)
    assert [h["state"] for h in hooks] == ["firing", "resolved"], hooks
    assert hooks[0]["episode"] == hooks[1]["episode"] == pd[0]["dedup_key"]
    assert hooks[0]["agent"] == {"namespace": ns, "name": "drop-bot"}  # keep-bot held
    resolved = hooks[1]["summary"]
    assert "the revert is applied: the agent runs gpt-4o again" in resolved, resolved
    assert re.search(r"quality_score (89|9[01])(\.\d)?% → (5[89]|6[0-2])(\.\d)?%", resolved)
    # Resolved once: a few more cycles send nothing more about it.
    for _ in range(3):
        clock.now += INTERVAL
        await op.run_cycle(INTERVAL)
        await op.parts.deliveries.drain(30)
    assert len(_probation_events(receivers, ReceiverKind.PAGERDUTY)) == 2


async def test_a_notified_regression_stays_paged_until_a_person_puts_the_model_back(
    server: KubeServer, prometheus_factory: Any
) -> None:
    ns = create_namespace(server, f"probation-{next(_namespaces)}-{_RUN}")
    try:
        with NotificationReceivers() as receivers:
            await _run_notified(server, ns, prometheus_factory, receivers)
    finally:
        drop_namespace(server, ns)


async def _run_notified(
    api: KubeServer, ns: str, prometheus_factory: Any, receivers: NotificationReceivers
) -> None:
    op, clock, body = await _operator(api, ns, prometheus_factory, receivers, "notify")
    try:
        await op.register(body)
        await _settled(op, ns, lambda ws: len(ws) == 2)
        await op.run_cycle(INTERVAL)  # S: the soft stage switches both agents
        await _settled(op, ns, lambda ws: all(PROBATION in w.annotations for w in ws.values()))
        while clock.now < S + timedelta(minutes=8):
            clock.now += INTERVAL
            await op.run_cycle(INTERVAL)
            await op.parts.deliveries.drain(30)
        assert _model(api, ns, "drop-bot") == "gpt-4o-mini"  # notify: the change stays
        pd = _probation_events(receivers, ReceiverKind.PAGERDUTY)
        assert [e["event_action"] for e in pd] == ["trigger"], pd  # open, never repeated
        # A person puts the previous model back by hand.
        deployment = api.get("apps/v1", "Deployment", ns, "drop-bot") or {}
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        index = next(i for i, e in enumerate(env) if e["name"] == "MODEL")
        api.patch(
            "apps/v1",
            "Deployment",
            ns,
            "drop-bot",
            [
                {
                    "op": "replace",
                    "path": f"/spec/template/spec/containers/0/env/{index}/value",
                    "value": "gpt-4o",
                }
            ],
            patch_type="json",
        )
        await _settled(op, ns, lambda ws: ws["drop-bot"].env.get(("agent", "MODEL")) == "gpt-4o")
        for _ in range(10):
            if len(_probation_events(receivers, ReceiverKind.PAGERDUTY)) == 2:
                break
            clock.now += INTERVAL
            await op.run_cycle(INTERVAL)
            await op.parts.deliveries.drain(30)
        pd = _probation_events(receivers, ReceiverKind.PAGERDUTY)
        assert [e["event_action"] for e in pd] == ["trigger", "resolve"], pd
        assert pd[0]["dedup_key"] == pd[1]["dedup_key"]
        hooks = _probation_events(receivers, ReceiverKind.WEBHOOK)
        assert [h["state"] for h in hooks] == ["firing", "resolved"], hooks
        assert "the agent runs gpt-4o now, not gpt-4o-mini" in hooks[1]["summary"]
    finally:
        await op.stop()
