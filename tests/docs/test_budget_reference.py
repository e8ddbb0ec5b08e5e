"""The budget reference says only true things: each documented check and warning exists
and reports at the documented field; every field, CEL rule and column is on the page."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from agentmedic.api import budget_lint
from agentmedic.api.budget_lint import lint_finance
from agentmedic.api.budget_validation import FINANCE_KINDS, validate_budget
from agentmedic.docsgen.budget_reference import (
    BUDGET_CHECKS,
    BUDGET_WARNINGS,
    KINDS,
    render_budget_reference,
)
from agentmedic.docsgen.policy_fields import admission_rules, model_docs

Doc = dict[str, Any]


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def _team() -> Doc:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "ClusterAgentBudget",
        "metadata": {"name": "team"},
        "spec": {
            "namespaces": ["a"],
            "selector": {"matchLabels": {"team": "t"}},
            "limitUSD": 100,
            "stages": [{"name": "warn", "atPercent": 80, "channels": ["fin"]}],
            "notifications": {
                "channels": [
                    {"name": "fin", "webhook": {"urlSecretRef": {"name": "w", "key": "u"}}}
                ]
            },
        },
    }


def _prices() -> Doc:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "ModelPriceList",
        "metadata": {"name": "default"},
        "spec": {"prices": [{"model": "m", "input": 1, "output": 2}]},
    }


def _stage(d: Doc) -> Doc:
    stage: Doc = d["spec"]["stages"][0]
    return stage


VIOLATIONS: dict[str, tuple[Callable[[], Doc], Callable[[Doc], Any]]] = {
    "spec.selector.matchExpressions[].values": (
        _team,
        lambda d: d["spec"]["selector"].update(
            matchExpressions=[{"key": "k", "operator": "Exists", "values": ["v"]}]
        ),
    ),
    "spec.namespaces": (_team, lambda d: d["spec"].update(namespaces=[])),
    "spec.namespaceSelector": (_team, lambda d: d["spec"].update(namespaceSelector={})),
    "spec.period": (_team, lambda d: d["spec"].update(period="1s")),
    "spec.timeZone": (_team, lambda d: d["spec"].update(timeZone="CEST")),
    "spec.notifications.channels": (
        _team,
        lambda d: d["spec"]["notifications"]["channels"].append(
            copy.deepcopy(d["spec"]["notifications"]["channels"][0])
        ),
    ),
    "spec.notifications.channels[]": (
        _team,
        lambda d: d["spec"]["notifications"]["channels"][0].pop("webhook"),
    ),
    "spec.stages": (_team, lambda d: d["spec"]["stages"].append(copy.deepcopy(_stage(d)))),
    "spec.stages[].channels": (_team, lambda d: _stage(d).update(channels=["fin", "fin"])),
    "spec.stages[].channels[]": (_team, lambda d: _stage(d).update(channels=["fni"])),
    "spec.prices[].model": (
        _prices,
        lambda d: d["spec"]["prices"].append(copy.deepcopy(d["spec"]["prices"][0])),
    ),
    "spec.includeDefaults": (
        _prices,
        lambda d: d["spec"].update(prices=[], includeDefaults=False),
    ),
}


@pytest.mark.parametrize("base", [_team, _prices])
def test_the_bases_of_the_violations_are_valid(base: Callable[[], Doc]) -> None:
    assert validate_budget(base())[1] == []


@pytest.mark.parametrize("check", BUDGET_CHECKS, ids=lambda c: c.path)
def test_each_documented_check_exists_and_reports_at_its_path(check: Any) -> None:
    assert check.path in VIOLATIONS, f"add a document that breaks {check.path!r}"
    base, breaks = VIOLATIONS[check.path]
    doc = base()
    breaks(doc)
    resource, problems = validate_budget(doc)
    assert resource is not None, f"the violation of {check.path} broke the schema: {problems}"
    assert [_generic(p.path) for p in problems] == [check.path], [str(p) for p in problems]


def test_no_violation_is_left_without_its_documented_check() -> None:
    assert set(VIOLATIONS) == {c.path for c in BUDGET_CHECKS}


def test_every_warning_the_lint_can_give_is_documented_once() -> None:
    source = inspect.getsource(budget_lint)
    codes = set(re.findall(r'_warn\(\s*"(\w+)"', source))
    documented = [c.code for c in BUDGET_WARNINGS]
    assert sorted(documented) == sorted(codes)


@pytest.mark.parametrize("warning", BUDGET_WARNINGS, ids=lambda c: c.code)
def test_each_documented_warning_is_reported_at_its_path(warning: Any) -> None:
    doc = _team()
    spec = doc["spec"]
    changes: dict[str, Callable[[], Any]] = {
        "TimeZoneIgnored": lambda: spec.update(period="7d", timeZone="Europe/Berlin"),
        "PriceListIgnored": lambda: spec.update(priceList="other"),
        "ForecastWindowLongerThanPeriod": lambda: spec.update(period="day", forecastWindow="2d"),
        "ForecastOnRollingPeriod": lambda: (
            spec.update(period="7d"),
            _stage(doc).update(onForecast=True),
        ),
        "StageAfterStop": lambda: spec["stages"].insert(
            0, {"name": "stop", "atPercent": 50, "response": "stop", "channels": ["fin"]}
        ),
        "StageWithoutChannels": lambda: _stage(doc).update(channels=[]),
        "StopOnForecast": lambda: _stage(doc).update(response="stop", onForecast=True),
    }
    prices = {
        "ZeroPrice": {"model": "m", "input": 0, "output": 0},
        "PriceImplausible": {"model": "m", "input": 1500, "output": 2},
        "CachedInputAboveInput": {"model": "m", "input": 1, "output": 2, "cachedInput": 3},
    }
    if warning.code in prices:
        doc = _prices()
        doc["spec"]["prices"] = [prices[warning.code]]
    else:
        changes[warning.code]()
    resource, problems = validate_budget(doc)
    assert problems == []
    assert resource is not None
    found = [(f.code, _generic(f.path)) for f in lint_finance(resource)]
    assert (warning.code, warning.path) in found, found


def test_every_field_of_finances_models_is_on_the_page_with_a_description() -> None:
    text = render_budget_reference()
    for kind in KINDS:
        for doc in model_docs(kind):
            if doc.model.__module__ != "agentmedic.api.budget":
                continue
            for f in doc.fields:
                assert f"| `{f.name}` |" in text, f"{doc.model.__name__}.{f.name}"
                assert f.description, f"{doc.model.__name__}.{f.name} has no description"
            assert f'<a id="{doc.anchor}"></a>' in text


def test_every_admission_rule_and_column_is_on_the_page() -> None:
    text = render_budget_reference()
    for kind in FINANCE_KINDS:
        for message, _rule, paths in admission_rules(kind):
            assert message in text
            assert all(f"`{p}`" in text for p in paths)
    for column in ("Spend", "Limit", "Forecast", "Stage", "Models"):
        assert f"| {column} |" in text


def test_types_shared_with_policies_link_to_the_policy_reference() -> None:
    text = render_budget_reference()
    assert "[LabelSelector](policy-reference.md#labelselector)" in text
    assert "[Notifications](policy-reference.md#notifications)" in text
    assert '<a id="notificationchannel"></a>' not in text
