"""The operator's budget parts without servers: parsing, selection, status, the ledger,
and the token query's answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.api.types import LabelSelector
from agentmedic.engine.finance import AgentSpendFigures, evaluate_budget
from agentmedic.engine.series import AgentId
from agentmedic.metrics import QueryResult, Sample
from agentmedic.metrics.budget_spend import fetch_tokens, tokens_query
from agentmedic.operator.budget_events import involved_object, transitions
from agentmedic.operator.budget_notices import ledger_of
from agentmedic.operator.budget_status import (
    build_status,
    held_from_status,
    price_list_status,
    status_due,
    status_patch,
    wire,
)
from agentmedic.operator.budgets import BudgetBook, matches, parse_budget

API = "agentmedic.io/v1alpha1"
NOW = datetime(2026, 12, 16, 12, tzinfo=UTC)


def cluster_budget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ClusterAgentBudget",
        "metadata": {"name": "team", "uid": "u-1", "generation": 3, "resourceVersion": "7"},
        "spec": {"limitUSD": 100, "namespaces": ["a"], **spec},
    }


def test_label_selectors_match_as_kubernetes_does() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"team": "pay"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "chat"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert matches(sel, {"team": "pay", "tier": "chat"})
    assert not matches(sel, {"team": "pay", "tier": "batch"})
    assert not matches(sel, {"team": "pay", "tier": "web", "legacy": "1"})
    assert not matches(sel, {"tier": "web"})
    assert matches(None, {})


def test_an_invalid_budget_names_the_field_and_the_fix() -> None:
    entry = parse_budget(cluster_budget(timeZone="Mars/Olympus"))
    assert entry.spec is None
    assert any("spec.timeZone" in p for p in entry.problems), entry.problems
    assert str(entry.ref) == "ClusterAgentBudget team"


def test_selection_by_namespace_labels_and_the_policy_that_acts() -> None:
    book = BudgetBook()
    entry = book.upsert(
        cluster_budget(
            namespaces=[],
            namespaceSelector={"matchLabels": {"team": "pay"}},
            selector={"matchLabels": {"app": "bot"}},
        )
    )
    book.namespace_labels = {"a": {"team": "pay"}, "b": {"team": "search"}}
    bot, other, elsewhere = AgentId("a", "bot"), AgentId("a", "cron"), AgentId("b", "bot")
    policies = [
        ("a/first", [(bot, {"app": "bot"}), (other, {"app": "cron"})], False),
        ("a/second", [(bot, {"app": "bot"})], True),
        ("b/p", [(elsewhere, {"app": "bot"})], True),
    ]
    sel = book.select(entry, policies)
    assert sel.agents == {bot: "a/first"}, "the first policy by namespace and name acts"
    assert sel.no_tiers == [bot]
    ev = evaluate_budget(entry.ref, entry.spec, {bot: AgentSpendFigures(90.0, 0.0)}, NOW)  # type: ignore[arg-type]
    book.publish({bot: ("a/first", (ev.verdicts[bot],))})
    assert book.verdicts_for("a/first", bot)[0].stage == "warn"
    assert book.verdicts_for("a/second", bot) == (), "one policy acts for the budgets"


def test_status_is_written_when_it_changed_and_spend_alone_at_most_once_per_refresh() -> None:
    entry = BudgetBook().upsert(cluster_budget())
    spec = entry.spec
    assert spec is not None
    agent = AgentId("a", "bot")

    def status(spent: float, at: datetime) -> dict[str, Any]:
        ev = evaluate_budget(entry.ref, spec, {agent: AgentSpendFigures(spent, 1.0)}, at)
        return wire(
            build_status(
                entry, ev, agents=1, no_tiers=[], not_managed=[], metrics_error=None, now=at
            )
        )

    first = status(50.0, NOW)
    assert status_due(entry, first, NOW, 300)
    entry.status, entry.spend_written_at = first, NOW
    later = NOW + timedelta(minutes=1)
    assert not status_due(entry, status(50.2, later), later, 300), "within one step: same"
    assert not status_due(entry, status(60.0, later), later, 300), "spend alone waits"
    assert status_due(
        entry, status(60.0, NOW + timedelta(minutes=5)), NOW + timedelta(minutes=5), 300
    )
    reached = status(85.0, later)
    assert reached["stage"] == "warn"
    assert status_due(entry, reached, later, 300), "a stage reached is written at once"
    assert first["spendUSD"] == 50.0
    assert first["observedGeneration"] == 3


def _written(entry: Any, ev: Any, agents: int, at: datetime) -> dict[str, Any]:
    status = build_status(
        entry, ev, agents=agents, no_tiers=[], not_managed=[], metrics_error=None, now=at
    )
    return wire(status)


def test_a_rolling_hold_is_read_back_from_status_after_a_restart() -> None:
    """Spend at 95% of a reached stage's threshold: the operator that reached it holds it;
    a new one holds it too when it starts from the status the first one wrote, and only
    from it (without status the same figures reach nothing)."""
    stages = [
        {"name": "warn", "atPercent": 50},
        {"name": "cheaper", "atPercent": 100, "response": "downgrade"},
    ]
    for applies_to in ("total", "perAgent"):
        entry = BudgetBook().upsert(
            cluster_budget(period="24h", stages=stages, appliesTo=applies_to)
        )
        spec = entry.spec
        assert spec is not None
        a, b = AgentId("a", "bot"), AgentId("a", "calm")
        over = {a: AgentSpendFigures(101.0, 0.0), b: AgentSpendFigures(0.0, 0.0)}
        first = evaluate_budget(entry.ref, spec, over, NOW)
        status = _written(entry, first, 2, NOW)
        assert status["stage"] == "cheaper", applies_to
        held = [{"stages": ["cheaper", "warn"]}]
        if applies_to == "perAgent":
            held[0]["agents"] = ["a/bot"]
        assert status["heldStages"] == held, applies_to
        later = NOW + timedelta(hours=1)
        at_95 = {a: AgentSpendFigures(95.0, 0.0), b: AgentSpendFigures(0.0, 0.0)}
        seeded = evaluate_budget(entry.ref, spec, at_95, later, held_from_status(status))
        assert seeded.stage == "cheaper", applies_to
        assert seeded.verdicts[a].stage == "cheaper"
        assert seeded.verdicts[b].stage == ("cheaper" if applies_to == "total" else None)
        assert evaluate_budget(entry.ref, spec, at_95, later).stage == "warn", "unseeded"
        below = {a: AgentSpendFigures(89.0, 0.0), b: AgentSpendFigures(0.0, 0.0)}
        released = evaluate_budget(entry.ref, spec, below, later, held_from_status(status))
        assert released.stage == "warn", "below 90% of the threshold it is released"


def test_a_calendar_period_holds_nothing_in_status_and_bad_status_seeds_nothing() -> None:
    entry = BudgetBook().upsert(cluster_budget(period="month"))
    assert entry.spec is not None
    ev = evaluate_budget(entry.ref, entry.spec, {AgentId("a", "bot"): AgentSpendFigures(90.0)}, NOW)
    status = _written(entry, ev, 1, NOW)
    assert status["stage"] == "warn"
    assert "heldStages" not in status
    assert held_from_status({"heldStages": [{"agents": ["a/bot"]}]}) == {}, "no stages: invalid"
    assert held_from_status(None) == {}


def test_unpriced_models_are_named_sorted_and_bounded_and_cleared_once_priced() -> None:
    entry = BudgetBook().upsert(cluster_budget(costSource="priceList", priceList="team"))
    assert entry.spec is not None
    ev = evaluate_budget(entry.ref, entry.spec, {AgentId("a", "bot"): AgentSpendFigures(5.0)}, NOW)

    def priced(unpriced: frozenset[str] | None, exists: bool = True) -> Any:
        s = build_status(
            entry,
            ev,
            agents=1,
            no_tiers=[],
            not_managed=[],
            metrics_error=None,
            now=NOW,
            unpriced=unpriced,
            price_list=("team", exists),
        )
        entry.status = wire(s)
        return next((c for c in s.conditions if c.type == "Priced"), None)

    models = frozenset(f"model-{i:02}" for i in range(12, 0, -1))
    c = priced(models)
    assert (c.status, c.reason) == ("False", "UnpricedModels")
    assert "model-01, model-02, model-03" in c.message
    assert "model-10 and 2 more" in c.message
    assert "model-11" not in c.message
    assert "spend is a lower bound" in c.message
    assert c.message.endswith("add them to spec.prices of the ModelPriceList team")
    assert priced(None) == c, "spend not read: the condition stands"
    c = priced(frozenset({"llama-3"}), exists=False)
    assert "create ModelPriceList team with their prices" in c.message
    c = priced(frozenset())
    assert (c.status, c.reason) == ("True", "AllModelsPriced")
    reported = build_status(
        entry, ev, agents=1, no_tiers=[], not_managed=[], metrics_error=None, now=NOW
    )
    assert "Priced" not in {c.type for c in reported.conditions}, "costSource reported"


def test_events_are_the_transitions_of_status_and_nothing_when_it_is_unchanged() -> None:
    stages = [
        {"name": "warn", "atPercent": 80},
        {"name": "stop", "atPercent": 100, "response": "stop"},
    ]
    entry = BudgetBook().upsert(cluster_budget(stages=stages, costSource="priceList"))
    spec = entry.spec
    assert spec is not None
    bot = AgentId("a", "bot")

    def step(spent: float, **kw: Any) -> list[tuple[str, str, bool]]:
        ev = evaluate_budget(entry.ref, spec, {bot: AgentSpendFigures(spent, 0.0)}, NOW)
        wanted = wire(
            build_status(
                entry,
                ev,
                agents=1,
                no_tiers=[],
                not_managed=[],
                now=NOW,
                price_list=("default", True),
                **{"metrics_error": None, "unpriced": frozenset(), **kw},
            )
        )
        events = transitions(entry, entry.status, wanted, ev)
        entry.status = wanted
        return [(e.reason, e.message, e.warning) for e in events]

    assert step(10.0) == [], "a first status with nothing reached: no Event"
    (reached,) = step(85.0)
    assert reached[0] == "StageReached"
    assert reached[1] == (
        "stage warn (notify) reached: spend $85.00 of $100.00 (85 %) in December 2026 (UTC)"
    )
    assert not reached[2], "notify is Normal"
    assert step(85.0) == [], "the same status again (an operator restarted): nothing"
    (stop,) = step(101.0)
    assert stop[0] == "StageReached"
    assert stop[1].startswith("stage stop (stop) reached")
    assert stop[2], "a stop is a Warning"
    reasons = [e[0] for e in step(101.0, metrics_error="query timed out")]
    assert reasons == ["MetricsUnavailable"]
    assert step(101.0, metrics_error="another error") == [], "still unavailable"
    assert [e[0] for e in step(101.0)] == ["MetricsAvailable"]
    (unpriced,) = step(101.0, unpriced=frozenset({"llama-3"}))
    assert unpriced[0] == "UnpricedModels"
    assert "llama-3" in unpriced[1]
    assert step(101.0, unpriced=frozenset({"llama-3"})) == []
    assert [e[0] for e in step(101.0, unpriced=frozenset({"llama-3", "x"}))] == [
        "UnpricedModels"
    ], "a model more: told"
    invalid = transitions(
        entry,
        entry.status,
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidSpec",
                    "message": "spec.timeZone: fix it",
                }
            ]
        },
        None,
    )
    assert [(e.reason, e.warning) for e in invalid] == [("InvalidSpec", True)]
    assert "spec.timeZone: fix it" in invalid[0].message
    assert involved_object(entry) == {
        "apiVersion": API,
        "kind": "ClusterAgentBudget",
        "name": "team",
        "uid": "u-1",
    }, "cluster-scoped: no namespace (the Event goes to default)"


def test_a_stage_released_says_why() -> None:
    rolling = BudgetBook().upsert(cluster_budget(period="24h"))
    assert rolling.spec is not None
    bot = AgentId("a", "bot")
    first = evaluate_budget(rolling.ref, rolling.spec, {bot: AgentSpendFigures(85.0)}, NOW)
    shown = _written(rolling, first, 1, NOW)
    later = NOW + timedelta(hours=1)
    low = evaluate_budget(
        rolling.ref, rolling.spec, {bot: AgentSpendFigures(50.0)}, later, first.reached
    )
    (released,) = transitions(rolling, shown, _written(rolling, low, 1, later), low)
    assert released.reason == "StageReleased"
    assert released.message == (
        "stage warn released (spend fell below 90 % of its threshold); no stage reached: "
        "spend $50.00 of $100.00 (50 %) in the last 24h"
    )
    month = BudgetBook().upsert(cluster_budget())
    assert month.spec is not None
    ev = evaluate_budget(month.ref, month.spec, {bot: AgentSpendFigures(85.0)}, NOW)
    shown = _written(month, ev, 1, NOW)
    january = datetime(2027, 1, 1, 0, 10, tzinfo=UTC)
    fresh = evaluate_budget(month.ref, month.spec, {bot: AgentSpendFigures(1.0)}, january)
    (released,) = transitions(month, shown, _written(month, fresh, 1, january), fresh)
    assert "released (a new period began)" in released.message


def test_a_price_list_names_models_it_left_unpriced_until_they_are_priced() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "team", "generation": 2}}
    models = [f"m-{i:02}" for i in range(12, 0, -1)]
    status = price_list_status(obj, 3, [], NOW, models)
    assert status["unpricedModels"] == [f"m-{i:02}" for i in range(1, 11)], "sorted, ten"
    obj["status"] = status
    cleared = price_list_status(obj, 4, [], NOW, [])
    assert "unpricedModels" not in cleared
    assert status_patch(obj["status"], cleared)["unpricedModels"] is None, "merge patch: removed"
    assert "unpricedModels" not in status_patch(None, cleared)


def test_downgrade_without_model_tiers_and_unmanaged_workloads_are_said() -> None:
    entry = BudgetBook().upsert(
        cluster_budget(stages=[{"name": "down", "atPercent": 50, "response": "downgrade"}])
    )
    assert entry.spec is not None
    agent = AgentId("a", "bot")
    ev = evaluate_budget(entry.ref, entry.spec, {agent: AgentSpendFigures(10.0, 0.0)}, NOW)
    s = build_status(
        entry, ev, agents=1, no_tiers=[agent], not_managed=[], metrics_error=None, now=NOW
    )
    limited = next(c for c in s.conditions if c.type == "ActionsLimited")
    assert (limited.status, limited.reason) == ("True", "NoModelTiers")
    assert "a/bot" in limited.message
    s = build_status(
        entry,
        ev,
        agents=1,
        no_tiers=[],
        not_managed=[AgentId("a", "stray")],
        metrics_error="Unreachable",
        now=NOW,
    )
    conditions = {c.type: c for c in s.conditions}
    assert conditions["ActionsLimited"].reason == "NotManaged"
    assert conditions["MetricsAvailable"].status == "False"


def test_the_notice_ledger_reads_back_from_the_status_condition() -> None:
    entry = BudgetBook().upsert(cluster_budget())
    entry.status = {
        "conditions": [
            {
                "type": "StagesNotified",
                "status": "True",
                "reason": "Pending",
                "message": "limit@2026-11-30T23:00:00Z: reserved; warn@2026-11-30T23:00:00Z: sent",
                "lastTransitionTime": "2026-12-01T00:00:00Z",
            }
        ]
    }
    assert ledger_of(entry) == {
        "limit@2026-11-30T23:00:00Z": "reserved",
        "warn@2026-11-30T23:00:00Z": "sent",
    }


class TokenBackend:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.queries: list[str] = []

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.queries.append(promql)
        return QueryResult("vector", samples=tuple(self.samples))

    async def query_range(self, *args: Any) -> Any:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


async def test_token_counts_by_model_and_type_one_query_nan_is_no_data() -> None:
    def s(agent: str, ns: str, model: str, kind: str, value: float) -> Sample:
        return Sample({"agent": agent, "namespace": ns, "model": model, "type": kind}, value)

    backend = TokenBackend(
        [
            s("bot", "a", "gpt-4o", "input", 100.0),
            s("bot", "a", "gpt-4o", "output", 10.0),
            s("bot", "b", "gpt-4o", "input", 7.0),
            s("odd", "a", "gpt-4o", "input", math.nan),
            s("stranger", "a", "gpt-4o", "input", 1.0),
        ]
    )
    wanted = [AgentId("a", "bot"), AgentId("b", "bot"), AgentId("a", "odd")]
    got = await fetch_tokens(backend, timedelta(hours=13), wanted, NOW)
    assert got == {
        AgentId("a", "bot"): {("gpt-4o", "input"): 100.0, ("gpt-4o", "output"): 10.0},
        AgentId("b", "bot"): {("gpt-4o", "input"): 7.0},
    }
    assert backend.queries == [
        tokens_query(timedelta(hours=13), ["bot", "odd"], "agent", "namespace")
    ]
    assert backend.queries[0] == (
        "sum by (agent, namespace, model, type) "
        '(increase(agent_tokens_total{agent=~"bot|odd"}[13h]))'
    )


def test_an_agent_budget_selects_only_its_own_namespace() -> None:
    book = BudgetBook()
    entry = book.upsert(
        {
            "apiVersion": API,
            "kind": "AgentBudget",
            "metadata": {"name": "ceiling", "namespace": "a", "uid": "u-2"},
            "spec": {"limitUSD": 50, "appliesTo": "perAgent"},
        }
    )
    assert str(entry.ref) == "AgentBudget a/ceiling"
    mine, theirs = AgentId("a", "bot"), AgentId("b", "bot")
    sel = book.select(entry, [("a/p", [(mine, {})], True), ("b/p", [(theirs, {})], True)])
    assert list(sel.agents) == [mine]
    assert entry.ref.rule("limit") == "budget.agentbudget/a/ceiling/limit"


async def test_a_kind_not_served_or_forbidden_where_optional_counts_as_none() -> None:
    import asyncio

    import httpx
    import kubernetes.client as k8s

    from agentmedic.kube import AsyncKube, RetryPolicy
    from agentmedic.operator.budget_watch import ResourceWatch

    def handler(request: httpx.Request) -> httpx.Response:
        status = {"/missing": 404, "/forbidden": 403}[request.url.path]
        return httpx.Response(status, json={"kind": "Status", "code": status})

    http = AsyncKube(
        k8s.Configuration(host="http://127.0.0.1:1"),
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=1, base=0.0, cap=0.0),
    )
    changes: list[str] = []
    missing = ResourceWatch(http, "/missing", lambda: changes.append("missing"))
    optional = ResourceWatch(http, "/forbidden", lambda: None, optional=True)
    required = ResourceWatch(http, "/forbidden", lambda: None)
    try:
        for w in (missing, optional, required):
            w.start()
        async with asyncio.timeout(10):
            await missing.synced.wait()
            await optional.synced.wait()
        assert missing.items == {}
        assert changes == ["missing"]
        await asyncio.sleep(0.1)
        assert not required.synced.is_set(), "a required kind the operator may not read waits"
        assert required.failing is not None
        assert "403" in required.failing
    finally:
        for w in (missing, optional, required):
            await w.aclose()
        await http.aclose()
