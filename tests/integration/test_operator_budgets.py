"""Finance's budgets in the operator, against a real Prometheus and both API servers.

The operator runs in the test's loop (its scheduler manual, its clock the test's) over a
Prometheus backfilled with two teams' counters around the end of November 2026. The
clock stands at 2026-12-01 12:00 UTC, so December in Europe/Berlin began 13 hours
earlier, at 2026-11-30 23:00 UTC:

- ``a-bot`` (namespace fin-a) spends $100 at 22:30 UTC (still November in Berlin), $210
  at 23:30 UTC (December in Berlin, November in UTC), restarts at 06:00 (its counter
  starts again from 0) and spends $50 after;
- ``b-bot`` (namespace fin-b) spends $150 at 08:00;
- ``a-bot`` also counts 1,000,000 input and 100,000 output tokens of gpt-4o at 01:00.

So the team's December in Berlin holds $410 (82 % of $500), its December in UTC $200:
the stage reached says which month the operator counted. ``increase`` extrapolates to
the window's edges by up to one scrape step, so figures are compared within 3 %.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.api.crd import crd_manifests
from agentmedic.operator.app import Operator
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.prometheus import PrometheusServer, counter, openmetrics_text
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    RealServer,
    create_namespace,
    operator_configuration,
    wait_for,
)
from tests.integration.operator_support import NO_PROMETHEUS, in_loop_operator

pytestmark = pytest.mark.prometheus

API = "agentmedic.io/v1alpha1"
NS_A, NS_B = "fin-a", "fin-b"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
STEP = 600
START = int(datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp())
INTERVAL = timedelta(seconds=30)


def _at(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def _steps(events: dict[int, float], resets: tuple[int, ...] = ()) -> list[tuple[float, float]]:
    """A counter sampled every STEP seconds to NOW, growing by ``events`` (time → amount)
    and starting again from 0 at each of ``resets``."""
    value, points = 0.0, []
    for t in range(START, int(NOW.timestamp()) + 1, STEP):
        if t in resets:
            value = 0.0
        value += events.get(t, 0.0)
        points.append((t, value))
    return points


def history() -> str:
    a = {"agent": "a-bot", "namespace": NS_A, "model": "gpt-4o"}
    b = {"agent": "b-bot", "namespace": NS_B, "model": "gpt-4o-mini"}
    series = [
        counter(
            "agent_cost_usd_total",
            a,
            _steps(
                {
                    _at(2026, 11, 30, 22, 30): 100,
                    _at(2026, 11, 30, 23, 30): 210,
                    _at(2026, 12, 1, 6, 10): 50,
                },
                resets=(_at(2026, 12, 1, 6),),
            ),
        ),
        counter("agent_cost_usd_total", b, _steps({_at(2026, 12, 1, 8): 150})),
        counter("agent_tokens_total", {**a, "type": "input"}, _steps({_at(2026, 12, 1, 1): 1e6})),
        counter("agent_tokens_total", {**a, "type": "output"}, _steps({_at(2026, 12, 1, 1): 1e5})),
    ]
    return openmetrics_text(series)


@pytest.fixture(scope="module")
def prometheus(prometheus_module_factory: Any) -> PrometheusServer:
    server: PrometheusServer = prometheus_module_factory(backfill=history())
    return server


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        real: RealServer = request.getfixturevalue("real_server")
        for crd in crd_manifests():
            if crd["spec"]["names"]["kind"] != "AgentPolicy":
                real.install_crd(crd)
        for ns in (NS_A, NS_B):
            if real.get("v1", "Namespace", None, ns) is None:
                create_namespace(real, ns)
        yield real
        return
    with ApiEmulator() as emu:
        for ns in (NS_A, NS_B):
            create_namespace(emu, ns)
        yield emu


def deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": "payments"}},
        "spec": {
            "replicas": 2,
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


def policy(ns: str, *, budget: dict[str, Any] | None = None, tiers: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"team": "payments"}},
        "interval": "30s",
        "rules": [
            {
                "name": "low-success",
                "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.5}],
                "actions": [{"scaleToZero": {}}],
            }
        ],
        "guardrails": {"maxDisabledPercent": 100},
    }
    if tiers:
        spec["model"] = {
            "env": {"container": "agent", "name": "MODEL"},
            "tiers": ["gpt-4o", "gpt-4o-mini"],
        }
    if budget is not None:
        spec["budget"] = budget
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": "payments", "namespace": ns},
        "spec": spec,
    }


def team_budget(name: str, stages: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ClusterAgentBudget",
        "metadata": {"name": name},
        "spec": {
            "namespaces": [NS_A, NS_B],
            "selector": {"matchLabels": {"team": "payments"}},
            "period": "month",
            "timeZone": "Europe/Berlin",
            "limitUSD": 500,
            "stages": stages,
            **spec,
        },
    }


class Running:
    """One operator in the test's loop, with the objects the test created."""

    def __init__(self, api: KubeServer, op: Operator) -> None:
        self.api = api
        self.op = op

    async def evaluate_budgets(self) -> None:
        """One budget evaluation once the watches and the workload cache have listed."""
        budgets = self.op.parts.budgets
        for _ in range(500):
            ready = all(
                self.op.cache.workloads(e.namespace, e.selector) is not None
                for e in self.op.entries.values()
            )
            if ready and await budgets.run(self.op._owned(), self.op.cache) > 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the budgets were never evaluated")

    def status(self, name: str) -> dict[str, Any]:
        obj = self.api.get(API, "ClusterAgentBudget", None, name) or {}
        status: dict[str, Any] = obj.get("status") or {}
        return status


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def start(
    api: KubeServer,
    prometheus: PrometheusServer,
    *policies: dict[str, Any],
    clock: Clock | None = None,
    prometheus_url: str | None = None,
) -> Running:
    op = in_loop_operator(
        operator_configuration(api),
        prometheus_url=prometheus_url or prometheus.url,
        clock=clock or Clock(),
        spend_refresh_seconds=0,
        lease_namespace=NS_A,
    )
    await op.start()
    for p in policies:
        meta = p["metadata"]
        await op.register(api.get(API, "AgentPolicy", meta["namespace"], meta["name"]) or {})
    return Running(api, op)


@pytest.fixture
def team(server: KubeServer) -> Iterator[KubeServer]:
    """Both teams' agents; what a test adds is deleted after it."""
    for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
        server.create(deployment(ns, name))
    yield server
    for kind, ns, name in [
        *(
            ("ClusterAgentBudget", None, n)
            for n in (
                "team",
                "team-stop",
                "team-tokens",
                "team-told",
                "team-bad",
                "team-labels",
                "team-held",
            )
        ),
        *(("AgentPolicy", ns, "payments") for ns in (NS_A, NS_B)),
        ("AgentBudget", NS_A, "own"),
    ]:
        if server.get(API, kind, ns, name) is not None:
            server.delete(API, kind, ns, name)
    if server.get("v1", "Secret", NS_A, "finance-hook") is not None:
        server.delete("v1", "Secret", NS_A, "finance-hook")
    if server.get(API, "ModelPriceList", None, "team-prices") is not None:
        server.delete(API, "ModelPriceList", None, "team-prices")
    for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
        server.delete("apps/v1", "Deployment", ns, name)
        wait_for(
            lambda ns=ns, name=name: server.get("apps/v1", "Deployment", ns, name) is None,
            f"deployment {name} to go",
        )


async def test_a_team_budget_across_two_namespaces_counts_december_in_berlin(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    api = team
    pa, pb = policy(NS_A), policy(NS_B, tiers=False)
    api.create(pa)
    api.create(pb)
    api.create(
        team_budget(
            "team",
            [
                {"name": "warn", "atPercent": 80, "response": "notify"},
                {"name": "cheaper", "atPercent": 90, "response": "downgrade"},
            ],
        )
    )
    bad = team_budget("team-bad", [{"name": "warn", "atPercent": 80}], timeZone="Mars/Olympus")
    api.create(bad)  # the schema admits it; no such time zone
    run = await start(api, prometheus, pa, pb)
    try:
        await run.evaluate_budgets()
        ready = {c["type"]: c for c in run.status("team-bad")["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert "spec.timeZone" in ready["message"]
        assert "Mars/Olympus" in ready["message"]
        status = run.status("team")
        assert status["stage"] == "warn", status
        assert status["agents"] == 2
        assert status["periodStart"] == "2026-11-30T23:00:00Z"
        assert status["periodEnd"] == "2026-12-31T23:00:00Z"
        assert 410 * 0.97 <= status["spendUSD"] <= 410 * 1.03
        assert [t["agent"] for t in status["topAgents"]] == [f"{NS_A}/a-bot", f"{NS_B}/b-bot"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["status"] == "True"
        limited = conditions["ActionsLimited"]
        assert (limited["status"], limited["reason"]) == ("True", "NoModelTiers")
        assert f"{NS_B}/b-bot" in limited["message"]
        assert status["observedGeneration"] == 1
        if isinstance(api, ApiEmulator):
            api.clear_requests()
            await run.evaluate_budgets()
            assert api.write_requests() == [], "nothing changed: no write"
        # notify only: the policies' cycle changes no workload
        await run.op.run_cycle(INTERVAL)
        for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
            assert api.get("apps/v1", "Deployment", ns, name)["spec"]["replicas"] == 2
    finally:
        await run.op.stop()


async def test_a_team_stop_beats_a_policy_downgrade_and_names_the_budget(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    api = team
    own = {
        "period": "day",
        "limitUSD": 80,
        "soft": {"atPercent": 50, "actions": [{"switchModel": {}}]},
    }
    pa, pb = policy(NS_A, budget=own), policy(NS_B)
    api.create(pa)
    api.create(pb)
    api.create(team_budget("team-stop", [{"name": "stop", "atPercent": 70, "response": "stop"}]))
    clock = Clock()
    run = await start(api, prometheus, pa, pb, clock=clock)
    try:
        await run.evaluate_budgets()
        assert run.status("team-stop")["stage"] == "stop"
        await run.op.run_cycle(INTERVAL)
        for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
            dep = api.get("apps/v1", "Deployment", ns, name)
            assert dep["spec"]["replicas"] == 0, name
            record = dep["metadata"]["annotations"]["agentmedic.io/disabled"]
            assert "budget.clusteragentbudget/team-stop/stop" in record
            assert "ClusterAgentBudget team-stop (total)" in record
            env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
            assert env == [{"name": "MODEL", "value": "gpt-4o"}], "no downgrade besides"
        clock.now += INTERVAL
        await run.op.run_cycle(INTERVAL)  # the records are observed
        # January in Berlin (23:10 UTC on 31 December): a new period, the agents come back.
        clock.now = datetime(2026, 12, 31, 23, 10, tzinfo=UTC)
        await run.evaluate_budgets()
        status = run.status("team-stop")
        assert (status["stage"], status["periodStart"]) == ("", "2026-12-31T23:00:00Z")
        await run.op.run_cycle(INTERVAL)
        for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
            dep = api.get("apps/v1", "Deployment", ns, name)
            assert dep["spec"]["replicas"] == 2, name
            assert "agentmedic.io/disabled" not in dep["metadata"].get("annotations", {})
    finally:
        await run.op.stop()


async def test_a_price_list_budget_follows_the_price_list(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    api = team
    pa = policy(NS_A)
    api.create(pa)
    prices = {
        "apiVersion": API,
        "kind": "ModelPriceList",
        "metadata": {"name": "team-prices"},
        "spec": {"prices": [{"model": "gpt-4o", "input": 2.5, "output": 10}]},
    }
    api.create(prices)
    api.create(
        team_budget(
            "team-tokens",
            [{"name": "warn", "atPercent": 80}],
            limitUSD=10,
            costSource="priceList",
            priceList="team-prices",
        )
    )
    run = await start(api, prometheus, pa)
    try:
        await run.evaluate_budgets()
        listed = api.get(API, "ModelPriceList", None, "team-prices") or {}
        ready = listed["status"]["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "InUse")
        assert listed["status"]["models"] > 1, "the SDK's table is included"
        # 1M input at $2.50 and 100k output at $10 per million: $3.50
        assert 3.5 * 0.97 <= run.status("team-tokens")["spendUSD"] <= 3.5 * 1.03
        api.patch(
            API,
            "ModelPriceList",
            None,
            "team-prices",
            {"spec": {"prices": [{"model": "gpt-4o", "input": 5, "output": 20}]}},
        )
        book = run.op.parts.budgets.book

        def doubled() -> bool:
            listed = book.price_lists.get("team-prices")
            return listed is not None and listed.cost("gpt-4o", 1e6, 0) == 5.0

        for _ in range(500):
            await run.evaluate_budgets()
            if doubled():
                break
            await asyncio.sleep(0.02)
        status = run.status("team-tokens")
        assert 7.0 * 0.97 <= status["spendUSD"] <= 7.0 * 1.03
        assert status["stage"] == ""
        # b-bot (fin-b) is selected by the budget but by no policy: not counted, and said so
        assert status["agents"] == 1

        def limited() -> dict[str, Any]:
            conditions = {c["type"]: c for c in run.status("team-tokens")["conditions"]}
            return conditions["ActionsLimited"]

        for _ in range(500):
            if limited()["reason"] == "NotManaged":
                break
            await run.evaluate_budgets()
            await asyncio.sleep(0.02)
        assert limited()["status"] == "True"
        assert limited()["reason"] == "NotManaged"
        assert f"{NS_B}/b-bot" in limited()["message"]
    finally:
        await run.op.stop()


UNPRICED = (
    "tokens of models without a price count nothing, so spend is a lower bound: "
    "gpt-4o; add them to spec.prices of the ModelPriceList team-prices"
)


async def test_a_model_the_price_list_cannot_price_is_said_on_the_budget(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    """a-bot's gpt-4o tokens, priced by a list of gpt-4o-mini only: the spend ($0) is a
    lower bound and the budget says which model to add where; no agent is touched. Once
    the list prices gpt-4o, Priced is True again."""
    api = team
    pa = policy(NS_A)
    api.create(pa)
    mini = {"model": "gpt-4o-mini", "input": 0.15, "output": 0.6}
    api.create(
        {
            "apiVersion": API,
            "kind": "ModelPriceList",
            "metadata": {"name": "team-prices"},
            "spec": {"includeDefaults": False, "prices": [mini]},
        }
    )
    api.create(
        team_budget(
            "team-tokens",
            [{"name": "stop", "atPercent": 50, "response": "stop"}],
            limitUSD=10,
            costSource="priceList",
            priceList="team-prices",
        )
    )
    run = await start(api, prometheus, pa)

    def priced() -> dict[str, Any]:
        conditions = {c["type"]: c for c in run.status("team-tokens").get("conditions", [])}
        return conditions.get("Priced") or {}

    try:
        await run.evaluate_budgets()
        assert (priced()["status"], priced()["reason"]) == ("False", "UnpricedModels")
        assert priced()["message"] == UNPRICED
        listed = api.get(API, "ModelPriceList", None, "team-prices") or {}
        assert listed["status"]["unpricedModels"] == ["gpt-4o"]
        await run.evaluate_budgets()
        assert run.status("team-tokens")["stage"] == ""
        await run.op.run_cycle(INTERVAL)
        assert api.get("apps/v1", "Deployment", NS_A, "a-bot")["spec"]["replicas"] == 2
        gpt4o = {"model": "gpt-4o", "input": 0.25, "output": 1}
        api.patch(API, "ModelPriceList", None, "team-prices", {"spec": {"prices": [mini, gpt4o]}})
        for _ in range(500):
            await run.evaluate_budgets()
            if priced().get("status") == "True":
                break
            await asyncio.sleep(0.02)
        assert (priced()["status"], priced()["reason"]) == ("True", "AllModelsPriced")
        for _ in range(500):  # the list's status follows in the same or the next run
            listed = api.get(API, "ModelPriceList", None, "team-prices") or {}
            if "unpricedModels" not in listed["status"]:
                break
            await run.evaluate_budgets()
            await asyncio.sleep(0.02)
        assert "unpricedModels" not in listed["status"], listed["status"]
        budget = api.get(API, "ClusterAgentBudget", None, "team-tokens") or {}
        ((reason, message),) = _events(api, "default", budget)
        assert (reason, message) == ("UnpricedModels", UNPRICED), "once, and none when priced"
    finally:
        await run.op.stop()


async def test_a_reached_stage_is_told_once_across_evaluations_and_a_restart(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    with NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        # A ClusterAgentBudget's Secrets are read from the operator's namespace.
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "finance-hook", "namespace": NS_A},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        budget = team_budget(
            "team-told",
            [
                {"name": "warn", "atPercent": 80, "channels": ["finance"]},
                {"name": "limit", "atPercent": 100, "channels": ["finance"]},
            ],
        )
        budget["spec"]["notifications"] = {
            "channels": [
                {
                    "name": "finance",
                    "slack": {"webhookSecretRef": {"name": "finance-hook", "key": "url"}},
                }
            ]
        }
        api.create(budget)
        for _ in range(2):  # an operator, then its successor after a restart
            run = await start(api, prometheus, pa, pb)
            try:
                await run.evaluate_budgets()
                await run.evaluate_budgets()
            finally:
                await run.op.stop()
        told = receivers.accepted(ReceiverKind.SLACK)
        assert len(told) == 1, [r.body for r in told]
        text = told[0].body.decode()
        assert "ClusterAgentBudget team-told (total): $4" in text
        assert "stage warn reached" in text
        notified = {c["type"]: c for c in run.status("team-told")["conditions"]}["StagesNotified"]
        assert notified["reason"] == "Sent"
        assert notified["message"] == "warn@2026-11-30T23:00:00Z: sent"


def _slack_budget(
    api: KubeServer, url: str, name: str, stages: list[dict[str, Any]], **spec: Any
) -> None:
    """A team budget whose stages tell the channel ``finance`` (Slack at ``url``)."""
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "finance-hook", "namespace": NS_A},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }
    )
    budget = team_budget(name, stages, **spec)
    budget["spec"]["notifications"] = {
        "channels": [
            {
                "name": "finance",
                "slack": {"webhookSecretRef": {"name": "finance-hook", "key": "url"}},
            }
        ]
    }
    api.create(budget)


def _models(api: KubeServer) -> dict[str, tuple[str, dict[str, str]]]:
    """Each agent's model and agentmedic's annotations (its records)."""
    out = {}
    for ns, name in ((NS_A, "a-bot"), (NS_B, "b-bot")):
        dep = api.get("apps/v1", "Deployment", ns, name) or {}
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        notes = dep["metadata"].get("annotations") or {}
        # agentmedic's records only (the real deployment controller adds its revision)
        out[name] = (env[0]["value"], {k: v for k, v in notes.items() if "agentmedic" in k})
    return out


async def test_a_restart_keeps_a_rolling_stage_held_at_95_percent(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    """A rolling 24h budget of $430: at 12:00 the day holds $510 and the downgrade stage is
    reached; at 22:40 the $100 of 22:30 the day before has left the window and $410 remain
    (95 %, above the 90 % a reached stage is held to). An operator started afresh at 22:40
    keeps the stage from the status its predecessor wrote: no restore, no second notice."""
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    with NotificationReceivers() as receivers:
        _slack_budget(
            api,
            receivers.url_for(ReceiverKind.SLACK),
            "team-held",
            [{"name": "cheaper", "response": "downgrade", "channels": ["finance"]}],
            period="24h",
            limitUSD=430,
        )
        clock = Clock()
        run = await start(api, prometheus, pa, pb, clock=clock)
        try:
            await run.evaluate_budgets()
            status = run.status("team-held")
            assert status["stage"] == "cheaper", status
            assert status["heldStages"] == [{"stages": ["cheaper"]}]
            await run.op.run_cycle(INTERVAL)
            clock.now += INTERVAL
            await run.op.run_cycle(INTERVAL)  # the records are observed
        finally:
            await run.op.stop()
        downgraded = _models(api)
        assert {m for m, _ in downgraded.values()} == {"gpt-4o-mini"}, downgraded
        assert all("agentmedic.io/downgraded" in notes for _, notes in downgraded.values())
        later = Clock()
        later.now = datetime(2026, 12, 1, 22, 40, tzinfo=UTC)
        run = await start(api, prometheus, pa, pb, clock=later)
        try:
            await run.evaluate_budgets()
            status = run.status("team-held")
            assert 387 <= status["spendUSD"] < 430, status  # between 90 % and 100 %
            assert status["stage"] == "cheaper", status
            await run.op.run_cycle(INTERVAL)
            later.now += INTERVAL
            await run.evaluate_budgets()
            await run.op.run_cycle(INTERVAL)
            assert run.status("team-held")["stage"] == "cheaper"
            assert _models(api) == downgraded, "no restore, the records unchanged"
            # The next morning the $210 of 23:30 has left too ($200, 47 %): released.
            later.now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
            await run.evaluate_budgets()
            assert run.status("team-held")["stage"] == ""
            assert "heldStages" not in run.status("team-held")
        finally:
            await run.op.stop()
        budget = api.get(API, "ClusterAgentBudget", None, "team-held") or {}
        reasons = sorted(reason for reason, _ in _events(api, "default", budget))
        assert reasons == ["StageReached", "StageReleased"], "reached once, released once"
        told = receivers.accepted(ReceiverKind.SLACK)
        assert len(told) == 1, [r.body for r in told]
        assert "stage cheaper reached" in told[0].body.decode()


async def test_a_budget_whose_spend_cannot_be_read_says_so_and_keeps_what_it_holds(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    """An operator that starts while Prometheus is down evaluates no budget: a budget it
    never evaluated says why it has no figure (Ready False, MetricsAvailable False), and
    one an earlier replica evaluated keeps its figures and held stages in status, so that
    the next evaluation with spend neither releases the stage nor reaches it again."""
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    api.create(
        team_budget(
            "team-held", [{"name": "cheaper", "response": "downgrade"}], period="24h", limitUSD=430
        )
    )
    clock = Clock()
    run = await start(api, prometheus, pa, pb, clock=clock)
    try:
        await run.evaluate_budgets()
        await run.op.run_cycle(INTERVAL)
        clock.now += INTERVAL
        await run.op.run_cycle(INTERVAL)  # the records are observed
    finally:
        await run.op.stop()
    before = run.status("team-held")
    assert before["stage"] == "cheaper", before
    assert before["heldStages"] == [{"stages": ["cheaper"]}]
    downgraded = _models(api)
    assert {m for m, _ in downgraded.values()} == {"gpt-4o-mini"}, downgraded

    api.create(team_budget("team", [{"name": "warn", "atPercent": 80}]))
    clock.now += INTERVAL
    run = await start(api, prometheus, pa, pb, clock=clock, prometheus_url=NO_PROMETHEUS)
    try:
        await run.evaluate_budgets()
        await run.op.run_cycle(INTERVAL)
        fresh = run.status("team")
        conditions = {c["type"]: c for c in fresh["conditions"]}
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
            "False",
            "NotEvaluated",
        )
        available = conditions["MetricsAvailable"]
        assert (available["status"], available["reason"]) == ("False", "MetricsUnavailable")
        assert available["message"], "the backend's error is named"
        assert "spendUSD" not in fresh, fresh
        assert "stage" not in fresh, fresh
        held = run.status("team-held")
        assert {k: held[k] for k in ("stage", "heldStages", "spendUSD")} == {
            k: before[k] for k in ("stage", "heldStages", "spendUSD")
        }
        assert {c["type"]: c["status"] for c in held["conditions"]}["MetricsAvailable"] == "False"
        assert _models(api) == downgraded, "nothing undone on a backend's fault"
    finally:
        await run.op.stop()

    run = await start(api, prometheus, pa, pb, clock=clock)
    try:
        await run.evaluate_budgets()
        after = run.status("team-held")
        assert after["stage"] == "cheaper", after
        assert {c["type"]: c["status"] for c in after["conditions"]}["Ready"] == "True"
        assert {c["type"]: c["status"] for c in run.status("team")["conditions"]}["Ready"] == "True"
    finally:
        await run.op.stop()
    assert _models(api) == downgraded


def _events(api: KubeServer, namespace: str, obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of agentmedic's Events about ``obj`` in ``namespace``."""
    uid = obj["metadata"]["uid"]
    return [
        (e["reason"], e["message"])
        for e in api.list("v1", "Event", namespace)
        if (e.get("involvedObject") or {}).get("uid") == uid
        and e.get("reportingComponent") == "agentmedic"
    ]


async def test_budget_events_are_posted_once_across_evaluations_and_a_restart(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    """What kubectl describe shows: a stage reached on a ClusterAgentBudget (its Events in
    default, where Kubernetes keeps those of cluster-scoped objects) and on an AgentBudget
    (in its namespace), an invalid budget; each once, though two operators evaluate each
    budget twice."""
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    api.create(team_budget("team", [{"name": "warn", "atPercent": 80}]))
    api.create(team_budget("team-bad", [{"name": "warn", "atPercent": 80}], timeZone="Mars/X"))
    own = {
        "apiVersion": API,
        "kind": "AgentBudget",
        "metadata": {"name": "own", "namespace": NS_A},
        "spec": {
            "limitUSD": 300,
            "timeZone": "Europe/Berlin",
            "stages": [{"name": "warn", "atPercent": 80}],
        },
    }
    api.create(own)
    for _ in range(2):  # an operator, then its successor after a restart
        run = await start(api, prometheus, pa, pb)
        try:
            await run.evaluate_budgets()
            await run.evaluate_budgets()
        finally:
            await run.op.stop()
    team_obj = api.get(API, "ClusterAgentBudget", None, "team") or {}
    ((reason, message),) = _events(api, "default", team_obj)
    assert reason == "StageReached"
    assert message.startswith("stage warn (notify) reached: spend $4"), message
    assert message.endswith("of $500.00 (82 %) in December 2026 (Europe/Berlin)"), message
    bad = api.get(API, "ClusterAgentBudget", None, "team-bad") or {}
    ((reason, message),) = _events(api, "default", bad)
    assert reason == "InvalidSpec"
    assert message.startswith("the budget is not evaluated: spec.timeZone")
    mine = api.get(API, "AgentBudget", NS_A, "own") or {}
    ((reason, message),) = _events(api, NS_A, mine)
    assert reason == "StageReached"
    assert message.startswith("stage warn (notify) reached: spend $26"), message
    assert message.endswith("of $300.00 (87 %) in December 2026 (Europe/Berlin)"), message


async def test_namespaces_chosen_by_label(team: KubeServer, prometheus: PrometheusServer) -> None:
    """A namespaceSelector picks the Namespaces by their labels (fin-a only), on the real
    server with the operator's declared permissions (list/watch of Namespaces)."""
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    api.patch("v1", "Namespace", None, NS_A, {"metadata": {"labels": {"cost-centre": "cc-7"}}})
    budget = team_budget("team-labels", [{"name": "warn", "atPercent": 80}])
    del budget["spec"]["namespaces"]
    budget["spec"]["namespaceSelector"] = {"matchLabels": {"cost-centre": "cc-7"}}
    api.create(budget)
    run = await start(api, prometheus, pa, pb)
    try:
        ready: dict[str, Any] = {}
        for _ in range(500):
            await run.op.parts.budgets.run(run.op._owned(), run.op.cache)
            conditions = {c["type"]: c for c in run.status("team-labels").get("conditions", [])}
            ready = conditions.get("Ready") or {}
            if ready:
                break
            await asyncio.sleep(0.02)
        assert ready["status"] == "True", ready
        status = run.status("team-labels")
        assert status["agents"] == 1
        assert [t["agent"] for t in status["topAgents"]] == [f"{NS_A}/a-bot"]
    finally:
        await run.op.stop()
        api.patch("v1", "Namespace", None, NS_A, {"metadata": {"labels": {"cost-centre": None}}})


async def test_a_budget_names_a_shared_channel_defined_once(
    team: KubeServer, prometheus: PrometheusServer
) -> None:
    """A stage's channel may be a ClusterNotificationChannel (channelRef), as a policy's
    may: its Secret is read in the operator's namespace and the stage is told through it."""
    api = team
    pa, pb = policy(NS_A), policy(NS_B)
    api.create(pa)
    api.create(pb)
    with NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "finance-shared-hook", "namespace": NS_A},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        api.create(
            {
                "apiVersion": API,
                "kind": "ClusterNotificationChannel",
                "metadata": {"name": "finance-slack"},
                "spec": {
                    "slack": {"webhookSecretRef": {"name": "finance-shared-hook", "key": "url"}}
                },
            }
        )
        budget = team_budget(
            "team-shared", [{"name": "warn", "atPercent": 80, "channels": ["finance"]}]
        )
        budget["spec"]["notifications"] = {
            "channels": [
                {
                    "name": "finance",
                    "channelRef": {"kind": "ClusterNotificationChannel", "name": "finance-slack"},
                }
            ]
        }
        api.create(budget)
        run = await start(api, prometheus, pa, pb)
        try:
            for _ in range(100):  # the first use starts the kind's watch; sent once listed
                await run.evaluate_budgets()
                if receivers.accepted(ReceiverKind.SLACK):
                    break
                await asyncio.sleep(0.05)
            await run.evaluate_budgets()
        finally:
            await run.op.stop()
            api.delete(API, "ClusterNotificationChannel", None, "finance-slack")
        told = receivers.accepted(ReceiverKind.SLACK)
        assert len(told) == 1, [r.body for r in told]
        assert "ClusterAgentBudget team-shared (total)" in told[0].body.decode()
        assert "stage warn reached" in told[0].body.decode()
