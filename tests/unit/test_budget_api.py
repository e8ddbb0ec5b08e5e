"""Finance's kinds: the examples, every check across fields, the lint and the CRDs' CEL rules."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from agentmedic.api.budget import OPERATOR_PERMISSIONS, AgentBudget, ClusterAgentBudget
from agentmedic.api.budget_lint import lint_finance
from agentmedic.api.budget_validation import FINANCE_KINDS, budget_problems, validate_budget
from agentmedic.api.crd import crd_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))

Doc = dict[str, Any]


def finance_documents() -> list[tuple[str, Doc]]:
    out = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in FINANCE_KINDS:
                out.append((f"{path.name}:{doc['kind']}", doc))
    return out


FINANCE_EXAMPLES = finance_documents()


def test_the_examples_hold_every_finance_kind_and_a_team_budget_across_namespaces() -> None:
    kinds = {doc["kind"] for _, doc in FINANCE_EXAMPLES}
    assert kinds == set(FINANCE_KINDS)
    teams = [
        ClusterAgentBudget.model_validate(d)
        for _, d in FINANCE_EXAMPLES
        if d["kind"] == "ClusterAgentBudget"
    ]
    assert any(len(t.spec.namespaces) >= 2 and t.spec.time_zone != "UTC" for t in teams)
    responses = {s.response.value for t in teams for s in t.spec.stages}
    assert responses == {"notify", "downgrade", "stop"}
    assert any(s.on_forecast for t in teams for s in t.spec.stages)


@pytest.mark.parametrize(("where", "doc"), FINANCE_EXAMPLES, ids=[w for w, _ in FINANCE_EXAMPLES])
def test_each_finance_example_is_valid_without_warnings(where: str, doc: Doc) -> None:
    resource, problems = validate_budget(doc)
    assert problems == [], [str(p) for p in problems]
    assert resource is not None
    assert [str(f) for f in lint_finance(resource)] == []


@pytest.mark.parametrize(("where", "doc"), FINANCE_EXAMPLES, ids=[w for w, _ in FINANCE_EXAMPLES])
def test_each_finance_example_passes_its_crd_schema_and_cel_rules(where: str, doc: Doc) -> None:
    schema = _openapi(doc["kind"])
    jsonschema.Draft4Validator(_as_jsonschema(schema)).validate(doc)
    assert list(_cel_failures(schema, doc)) == []


# ----------------------------------------------------------------- validation


def _budget() -> Doc:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "ClusterAgentBudget",
        "metadata": {"name": "team"},
        "spec": {
            "namespaces": ["a", "b"],
            "period": "month",
            "timeZone": "Europe/Berlin",
            "limitUSD": 100,
            "selector": {"matchLabels": {"team": "t"}},
            "stages": [
                {"name": "warn", "atPercent": 80, "channels": ["fin"]},
                {"name": "stop", "atPercent": 100, "response": "stop", "channels": ["fin"]},
            ],
            "notifications": {
                "channels": [
                    {"name": "fin", "slack": {"webhookSecretRef": {"name": "s", "key": "u"}}}
                ]
            },
        },
    }


def _spec(d: Doc) -> Doc:
    spec: Doc = d["spec"]
    return spec


# One budget breaking each check, and the one problem (path, words of the message) it gives.
VIOLATIONS: dict[str, tuple[Callable[[Doc], Any], str, str]] = {
    "time zone": (
        lambda d: _spec(d).update(timeZone="Europe/Berlinn"),
        "spec.timeZone",
        "not an IANA time zone",
    ),
    "rolling period": (
        lambda d: _spec(d).update(period="fortnight"),
        "spec.period",
        "neither day, week, month nor a duration",
    ),
    "rolling period bounds": (
        lambda d: _spec(d).update(period="400d"),
        "spec.period",
        "between 1m and 366d",
    ),
    "stage channel": (
        lambda d: _spec(d)["stages"][1].update(channels=["fin", "finance"]),
        "spec.stages[1].channels[1]",
        "did you mean 'fin'?",
    ),
    "stage names": (
        lambda d: _spec(d)["stages"][1].update(name="warn"),
        "spec.stages",
        "stage name 'warn' is used 2 times",
    ),
    "channel names": (
        lambda d: _spec(d)["notifications"]["channels"].append(
            copy.deepcopy(_spec(d)["notifications"]["channels"][0])
        ),
        "spec.notifications.channels",
        "channel name 'fin' is used 2 times",
    ),
    "channel one-of": (
        lambda d: _spec(d)["notifications"]["channels"][0].update(
            webhook={"urlSecretRef": {"name": "w", "key": "u"}}
        ),
        "spec.notifications.channels[0]",
        "set exactly one of slack, pagerduty, webhook, alertmanager (found slack, webhook)",
    ),
    "no namespaces": (
        lambda d: _spec(d).update(namespaces=[]),
        "spec.namespaces",
        "set either (or both)",
    ),
    "empty namespace selector": (
        lambda d: _spec(d).update(namespaceSelector={}),
        "spec.namespaceSelector",
        "would select every namespace",
    ),
    "namespace twice": (
        lambda d: _spec(d).update(namespaces=["a", "a"]),
        "spec.namespaces",
        "namespace name 'a' is used 2 times",
    ),
    "selector values": (
        lambda d: _spec(d)["selector"].update(
            matchExpressions=[{"key": "tier", "operator": "In", "values": []}]
        ),
        "spec.selector.matchExpressions[0].values",
        "must not be empty for operator In",
    ),
    "misspelt field": (
        lambda d: _spec(d).update(timezone=_spec(d).pop("timeZone")),
        "spec.timezone",
        "did you mean 'timeZone'?",
    ),
    "namespace name": (
        lambda d: _spec(d).update(namespaces=["Support_EU"]),
        "spec.namespaces[0]",
        "String should match pattern",
    ),
}


def test_the_base_budget_is_valid() -> None:
    assert budget_problems(_budget()) == []


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_check_reports_one_problem_at_its_field_with_the_fix(name: str) -> None:
    breaks, path, words = VIOLATIONS[name]
    doc = _budget()
    breaks(doc)
    problems = budget_problems(doc)
    assert [p.path for p in problems] == [path], [str(p) for p in problems]
    assert words in problems[0].message


def test_every_problem_is_reported_at_once() -> None:
    doc = _budget()
    for name in ("time zone", "stage channel", "stage names", "channel one-of"):
        VIOLATIONS[name][0](doc)
    paths = sorted(p.path for p in budget_problems(doc))
    assert paths == sorted(
        [
            "spec.timeZone",
            "spec.stages[1].channels[1]",
            "spec.stages",
            "spec.notifications.channels[0]",
        ]
    )


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        (None, "", "expected one of AgentBudget, ClusterAgentBudget, ModelPriceList"),
        ({"apiVersion": "agentmedic.io/v1alpha1", "kind": "AgentBudgett"}, "kind", "did you mean"),
        ({"apiVersion": "agentmedic.io/v1", "kind": "AgentBudget"}, "apiVersion", "set it to"),
        ({"apiVersion": "agentmedic.io/v1alpha1", "kind": "AgentBudget"}, "spec", "required"),
    ],
)
def test_a_document_of_the_wrong_shape_is_named(doc: Any, path: str, words: str) -> None:
    resource, problems = validate_budget(doc)
    assert resource is None
    assert problems[0].path == path
    assert words in problems[0].message


def test_a_namespaced_budget_needs_no_namespaces() -> None:
    doc = _budget()
    doc["kind"] = "AgentBudget"
    del _spec(doc)["namespaces"]
    doc["metadata"]["namespace"] = "agents"
    resource, problems = validate_budget(doc)
    assert problems == []
    assert isinstance(resource, AgentBudget)


def _price_list(*prices: Doc, include_defaults: bool = True) -> Doc:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "ModelPriceList",
        "metadata": {"name": "default"},
        "spec": {"prices": list(prices), "includeDefaults": include_defaults},
    }


def test_a_price_list_names_each_model_once_and_prices_something() -> None:
    twice = _price_list(
        {"model": "m", "input": 1, "output": 2}, {"model": "m", "input": 1, "output": 3}
    )
    assert [str(p) for p in budget_problems(twice)] == [
        "spec.prices[1].model: 'm' is priced already at spec.prices[0]; keep one entry per model"
    ]
    nothing = _price_list(include_defaults=False)
    assert [p.path for p in budget_problems(nothing)] == ["spec.includeDefaults"]
    negative = _price_list({"model": "m", "input": -1, "output": 2})
    assert [p.path for p in budget_problems(negative)] == ["spec.prices[0].input"]


# ----------------------------------------------------------------- lint


def _lint(doc: Doc) -> list[tuple[str, str]]:
    resource, problems = validate_budget(doc)
    assert problems == [], problems
    assert resource is not None
    return [(f.code, f.path) for f in lint_finance(resource)]


LINTS: dict[str, tuple[Callable[[Doc], Any], list[tuple[str, str]]]] = {
    "forecast on a rolling period": (
        lambda d: (
            _spec(d).update(period="30d", timeZone="UTC"),
            _spec(d)["stages"][0].update(onForecast=True),
        ),
        [("ForecastOnRollingPeriod", "spec.stages[0].onForecast")],
    ),
    "time zone of a rolling period": (
        lambda d: _spec(d).update(period="7d"),
        [("TimeZoneIgnored", "spec.timeZone")],
    ),
    "stage after the stop": (
        lambda d: _spec(d)["stages"].append(
            {"name": "late", "atPercent": 150, "channels": ["fin"]}
        ),
        [("StageAfterStop", "spec.stages[2].atPercent")],
    ),
    "stop without channels": (
        lambda d: _spec(d)["stages"][1].update(channels=[]),
        [("StageWithoutChannels", "spec.stages[1].channels")],
    ),
    "price list of reported cost": (
        lambda d: _spec(d).update(priceList="eu-prices"),
        [("PriceListIgnored", "spec.priceList")],
    ),
    "forecast window longer than the period": (
        lambda d: _spec(d).update(period="day", forecastWindow="36h"),
        [("ForecastWindowLongerThanPeriod", "spec.forecastWindow")],
    ),
}


@pytest.mark.parametrize("name", sorted(LINTS))
def test_each_lint_warns_at_its_field(name: str) -> None:
    change, expected = LINTS[name]
    doc = _budget()
    change(doc)
    assert _lint(doc) == expected


def test_a_stop_reached_on_forecast_does_not_silence_later_stages() -> None:
    doc = _budget()
    _spec(doc)["stages"][1].update(onForecast=True)
    _spec(doc)["stages"].append({"name": "late", "atPercent": 150, "channels": ["fin"]})
    assert _lint(doc) == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"model": "m", "input": 0, "output": 0}, [("ZeroPrice", "spec.prices[0]")]),
        ({"model": "m", "input": 1, "output": 0}, [("ZeroPrice", "spec.prices[0].output")]),
        ({"model": "m", "input": 3, "output": 1}, []),  # output cheaper than input is fine
        (
            {"model": "m", "input": 2500, "output": 10},
            [("PriceImplausible", "spec.prices[0].input")],
        ),
        (
            {"model": "m", "input": 1, "output": 2, "cachedInput": 1.5},
            [("CachedInputAboveInput", "spec.prices[0].cachedInput")],
        ),
    ],
)
def test_price_list_lint(entry: Doc, expected: list[tuple[str, str]]) -> None:
    assert _lint(_price_list(entry)) == expected


# ----------------------------------------------------------------- the CRDs


def _openapi(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _as_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [_as_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("nullable"):
        out.pop("nullable")
        out["type"] = [node["type"], "null"]
    return out


def _cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[str]:
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            yield f"{path}: {rule['message']}"
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_failures(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _cel_failures(schema["items"], item, f"{path}[{i}]")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no namespaces", "set spec.namespaces or spec.namespaceSelector"),
        ("stage channel", "each channel must be defined in spec.notifications.channels"),
        ("stage names", "stage names must be unique"),
        ("channel one-of", "exactly one of slack, pagerduty, webhook and alertmanager"),
    ],
)
def test_the_crd_refuses_at_admission_what_validation_refuses(name: str, message: str) -> None:
    doc = _budget()
    VIOLATIONS[name][0](doc)
    failures = list(_cel_failures(_openapi("ClusterAgentBudget"), doc))
    assert any(message in f for f in failures), failures
    assert list(_cel_failures(_openapi("ClusterAgentBudget"), _budget())) == []


def test_a_budget_without_channels_passes_the_stage_channel_rule() -> None:
    doc = _budget()
    doc["kind"] = "AgentBudget"
    del _spec(doc)["namespaces"], _spec(doc)["notifications"]
    for stage in _spec(doc)["stages"]:
        del stage["channels"]
    assert list(_cel_failures(_openapi("AgentBudget"), doc)) == []


def test_the_operator_reads_finance_kinds_and_writes_only_their_status() -> None:
    writes = {(r, v) for _, r, v in OPERATOR_PERMISSIONS if v not in ("get", "list", "watch")}
    assert writes == {
        ("agentbudgets/status", "patch"),
        ("clusteragentbudgets/status", "patch"),
        ("modelpricelists/status", "patch"),
    }
    reads = {r for _, r, v in OPERATOR_PERMISSIONS if v == "watch"}
    assert reads == {"agentbudgets", "clusteragentbudgets", "modelpricelists"}
