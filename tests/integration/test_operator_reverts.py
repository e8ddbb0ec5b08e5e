"""agentmedic's scale to zero put back by "someone else" (the test sets replicas back, as
Argo CD's selfHeal would): told once and not applied again (onRevert tell), or applied
again with backoff, the record kept (onRevert reapply).

The operator runs in the test's loop (cycles run by the test, a clock it moves, an
in-process metrics backend) on both API servers (ids ``emulated`` and ``real``), with a
Slack receiver on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from agentmedic.actions.record import DISABLED, DOWNGRADED
from agentmedic.operator.app import Operator
from agentmedic.operator.watch import CachedWorkload
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
from tests.integration.operator_support import in_loop_operator
from tests.integration.test_operator_silences import (
    API,
    INTERVAL,
    Clock,
    SickBackend,
    deployment,
    policy,
    replicas,
)

_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]
TRACKING = "argocd.argoproj.io/tracking-id"


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator() as emu:
        yield emu


class Run:
    def __init__(
        self, api: KubeServer, ns: str, op: Operator, clock: Clock, slack: NotificationReceivers
    ) -> None:
        self.api, self.ns, self.op, self.clock, self.slack = api, ns, op, clock, slack

    async def cycle(self) -> None:
        """One cycle, then an interval: the clock moves on, and the operator's watch has
        delivered what the cycle wrote (in a real interval it has seconds for that; here the
        next cycle follows at once, and would otherwise read a cache behind its own writes)."""
        await self.op.run_cycle(INTERVAL)
        await self.op.parts.deliveries.drain(20)
        self.clock.now += INTERVAL
        obj = self.api.get("apps/v1", "Deployment", self.ns, "argo-bot") or {}
        latest = int(obj["metadata"]["resourceVersion"])
        await self.seen(lambda w: int(w.resource_version) >= latest)

    async def revert(self, to: int) -> None:
        """Put replicas back as a GitOps sync would; wait until the operator's watch saw it."""
        self.api.patch("apps/v1", "Deployment", self.ns, "argo-bot", {"spec": {"replicas": to}})
        await self.seen(lambda w: w.replicas == to)

    async def seen(self, check: Callable[[CachedWorkload], bool]) -> None:
        """Wait until the operator's workload watch shows the bot passing ``check``."""
        selector = self.op.entries[(self.ns, "heal")].selector
        async with asyncio.timeout(30):
            while True:
                cached = self.op.cache.workloads(self.ns, selector) or []
                if any(w.name == "argo-bot" and check(w) for w in cached):
                    return
                await asyncio.sleep(0.05)

    def model(self) -> str:
        obj = self.api.get("apps/v1", "Deployment", self.ns, "argo-bot") or {}
        return str(obj["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])

    def pages(self) -> list[str]:
        return [m.json()["text"] for m in self.slack.accepted(ReceiverKind.SLACK)]

    def condition(self, kind: str) -> dict[str, Any] | None:
        status = (self.api.get(API, "AgentPolicy", self.ns, "heal") or {}).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == kind), None)

    def record(self) -> dict[str, Any]:
        obj = self.api.get("apps/v1", "Deployment", self.ns, "argo-bot") or {}
        return dict(json.loads(obj["metadata"]["annotations"][DISABLED]))


@asynccontextmanager
async def running(api: KubeServer, on_revert: str, *, model: bool = False) -> AsyncIterator[Run]:
    ns = create_namespace(api, f"reverts-{next(_namespaces)}-{_RUN}")
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    with NotificationReceivers() as slack:
        url = slack.url_for(ReceiverKind.SLACK)
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": ns},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        bot = deployment(ns, "argo-bot")
        bot["metadata"]["annotations"] = {TRACKING: f"bots:apps/Deployment:{ns}/argo-bot"}
        body = policy(ns)
        body["spec"]["guardrails"]["onRevert"] = on_revert
        if model:
            container = bot["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [{"name": "MODEL", "value": "gpt-4o"}]
            body["spec"]["model"] = {
                "env": {"container": "agent", "name": "MODEL"},
                "tiers": ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"],
            }
            body["spec"]["rules"][0]["actions"][0] = {"switchModel": {}}
        api.create(bot)
        body = api.create(body)
        op = in_loop_operator(
            operator_configuration(api),
            namespaces=[ns],
            clock=clock,
            backend=SickBackend(ns, ("argo-bot",)),
        )
        await op.start()
        try:
            await op.register(body)
            async with asyncio.timeout(30):
                await op.cache.wait_synced()
            yield Run(api, ns, op, clock, slack)
        finally:
            await op.stop()
    drop_namespace(api, ns)


async def test_tell_says_once_who_reverted_it_and_does_not_fight(server: KubeServer) -> None:
    async with running(server, "tell") as run:
        await run.cycle()
        assert replicas(run.api, run.ns, "argo-bot") == 0
        (page,) = run.pages()  # the scale to zero's page warns of the manager
        assert "managed by Argo CD Application bots: its sync may put it back" in page
        await run.revert(2)
        for _ in range(4):
            await run.cycle()
            assert replicas(run.api, run.ns, "argo-bot") == 2, "not applied again"
        pages = run.pages()
        assert len(pages) == 2, pages
        assert "was reverted likely by Argo CD Application bots" in pages[1]
        assert "replicas are 2 again (agentmedic set 0)" in pages[1]
        cond = run.condition("Reverted")
        assert cond is not None
        assert cond["status"] == "True"
        assert "scale to zero reverted likely by Argo CD Application bots" in cond["message"]
        assert run.record()["replicas"] == 2, "the record still says what restore puts back"
        events = [
            e
            for e in run.api.list("v1", "Event", run.ns)
            if e.get("reason") == "Reverted" and e["involvedObject"]["name"] == "heal"
        ]
        assert len(events) == 1
        assert events[0]["type"] == "Warning"


async def test_reapply_applies_it_again_with_backoff_and_keeps_the_record(
    server: KubeServer,
) -> None:
    async with running(server, "reapply") as run:
        await run.cycle()
        assert replicas(run.api, run.ns, "argo-bot") == 0
        await run.revert(2)
        await run.cycle()  # the revert is seen: wait one interval
        assert replicas(run.api, run.ns, "argo-bot") == 2
        await run.cycle()
        assert replicas(run.api, run.ns, "argo-bot") == 0, "applied again after one interval"
        assert run.record()["replicas"] == 2, "restore still puts back the original count"
        await run.revert(3)
        await run.cycle()
        await run.cycle()
        assert replicas(run.api, run.ns, "argo-bot") == 3, "the second wait is two intervals"
        await run.cycle()
        assert replicas(run.api, run.ns, "argo-bot") == 0
        assert run.record()["replicas"] == 2
        assert len(run.pages()) == 1, "no revert message while it re-applies"
        status = (run.api.get(API, "AgentPolicy", run.ns, "heal") or {})["status"]
        again = [a for a in status["recentActions"] if "applying it again" in a["reason"]]
        assert again
        assert {a["outcome"] for a in again} == {"Applied"}


async def test_a_reverted_model_switch_is_told_then_reapplied_by_choice(server: KubeServer) -> None:
    """The model env put back to the recorded previous model: told with tell; with reapply
    the switch is written again after one interval, the record still naming gpt-4o."""
    for on_revert in ("tell", "reapply"):
        async with running(server, on_revert, model=True) as run:
            await run.cycle()
            assert run.model() == "gpt-4o-mini"
            run.api.patch(
                "apps/v1",
                "Deployment",
                run.ns,
                "argo-bot",
                [
                    {
                        "op": "replace",
                        "path": "/spec/template/spec/containers/0/env/0/value",
                        "value": "gpt-4o",
                    }
                ],
                patch_type="json",
            )
            await run.seen(lambda w: w.env.get(("agent", "MODEL")) == "gpt-4o")
            await run.cycle()
            await run.cycle()
            downgraded = json.loads(
                (run.api.get("apps/v1", "Deployment", run.ns, "argo-bot") or {})["metadata"][
                    "annotations"
                ][DOWNGRADED]
            )
            assert downgraded["model"] == "gpt-4o", "restore still puts back the first model"
            if on_revert == "tell":
                assert run.model() == "gpt-4o", "not applied again"
                assert any("model switch" in p and "reverted" in p for p in run.pages())
            else:
                assert run.model() == "gpt-4o-mini", "applied again after one interval"
                assert not any("reverted" in p for p in run.pages())
