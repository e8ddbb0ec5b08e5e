"""Generated pages match the code they are generated from; the reference says only true things."""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from agentmedic.api.types import AgentPolicy
from agentmedic.api.validation import validate_policy
from agentmedic.cli.main import main
from agentmedic.docsgen.budget_reference import render_budget_reference
from agentmedic.docsgen.configuration import render_configuration
from agentmedic.docsgen.reference import (
    CROSS_FIELD_CHECKS,
    MINIMAL_POLICY,
    admission_rules,
    model_docs,
    render_reference,
)
from agentmedic.operator.settings import OperatorSettings

from .markdown import ROOT

GENERATED = {
    "docs/policy-reference.md": ("reference", render_reference),
    "docs/budget-reference.md": ("budget-reference", render_budget_reference),
    "docs/configuration.md": ("configuration", render_configuration),
}


@pytest.mark.parametrize("page", sorted(GENERATED))
def test_committed_page_matches_the_code(page: str) -> None:
    command, render = GENERATED[page]
    committed = (ROOT / page).read_text(encoding="utf-8")
    assert committed == render(), (
        f"{page} drifted from the code: run `make docs` "
        f"(or `agentmedic docs {command} > {page}`) and commit it"
    )


@pytest.mark.parametrize("page", sorted(GENERATED))
def test_the_docs_command_prints_the_page(page: str) -> None:
    command, render = GENERATED[page]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["docs", command]) == 0
    assert out.getvalue() == render()


def test_every_model_field_is_in_the_reference() -> None:
    text = render_reference()
    documented = {d.model for d in model_docs()}
    for doc in model_docs():
        for f in doc.fields:
            assert f"| `{f.name}` |" in text, f"{doc.model.__name__}.{f.name} missing"
    # Every model reachable from AgentPolicy is documented, once.
    assert AgentPolicy in documented
    assert len({d.anchor for d in model_docs()}) == len(model_docs())


def test_every_field_has_a_description() -> None:
    missing = [
        f"{d.model.__name__}.{f.name}" for d in model_docs() for f in d.fields if not f.description
    ]
    assert not missing


def test_every_admission_rule_of_the_crd_is_listed() -> None:
    text = render_reference()
    for message, _rule, paths in admission_rules():
        assert message in text
        for path in paths:
            assert f"`{path}`" in text


def test_the_minimal_policy_is_valid() -> None:
    policy, problems = validate_policy(yaml.safe_load(MINIMAL_POLICY))
    assert policy is not None
    assert problems == []


def test_every_setting_is_in_the_configuration_page() -> None:
    text = render_configuration()
    for name, info in OperatorSettings.model_fields.items():
        assert f"| `{info.alias or name}` |" in text
        assert f"`AGENTMEDIC_{name.upper()}`" in text


# ----------------------------------------------------------------- checks across fields

Doc = dict[str, Any]


def _base() -> Doc:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": "p", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"team": "a"}},
            "interval": "30s",
            "rules": [
                {
                    "name": "r1",
                    "all": [{"metric": "error_rate", "op": ">", "value": 0.2}],
                    "for": "5m",
                    "actions": [{"notify": {"channels": ["slack"]}}],
                }
            ],
            "model": {"env": {"container": "agent", "name": "MODEL"}, "tiers": ["big", "small"]},
            "budget": {"limitUSD": 10, "hard": {"actions": [{"scaleToZero": {}}]}},
            "guardrails": {"quietHours": [{"start": "22:00", "end": "06:00"}]},
            "notifications": {
                "channels": [
                    {"name": "slack", "slack": {"webhookSecretRef": {"name": "s", "key": "u"}}}
                ]
            },
        },
    }


def _rule(d: Doc) -> Doc:
    rule: Doc = d["spec"]["rules"][0]
    return rule


def _cond(d: Doc) -> Doc:
    cond: Doc = _rule(d)["all"][0]
    return cond


def _action(d: Doc, action: Doc) -> None:
    _rule(d)["actions"] = [action]


# One policy that breaks each documented check, and only that check.
VIOLATIONS: dict[str, Callable[[Doc], None]] = {
    "spec.selector": lambda d: d["spec"].update(selector={"matchLabels": {}}),
    "spec.selector.matchExpressions[].values": lambda d: d["spec"]["selector"].update(
        matchExpressions=[{"key": "tier", "operator": "In", "values": []}]
    ),
    "spec.rules": lambda d: d["spec"]["rules"].append(copy.deepcopy(_rule(d))),
    "spec.rules[].all": lambda d: _rule(d).update(all=[]),
    "spec.rules[]": lambda d: _rule(d).update(any=[copy.deepcopy(_cond(d))]),
    "spec.rules[].for": lambda d: _rule(d).update({"for": "10s"}),
    "spec.rules[].all[]": lambda d: _cond(d).update(query="sum by (agent) (up)"),
    "spec.rules[].all[].metric": lambda d: _cond(d).update(metric="error_ratio"),
    "spec.rules[].all[].query": lambda d: _rule(d).update(
        all=[{"query": "sum by (agent) (rate(x[5m])", "op": ">", "value": 1}]
    ),
    "spec.rules[].all[].recoverValue": lambda d: _cond(d).update(recoverValue=0.5),
    "spec.rules[].actions[]": lambda d: _action(
        d, {"scaleToZero": {}, "notify": {"channels": ["slack"]}}
    ),
    "spec.rules[].actions[].switchModel": lambda d: (
        d["spec"].pop("model"),
        _action(d, {"switchModel": {}}),
    ),
    "spec.rules[].actions[].switchModel.to": lambda d: _action(d, {"switchModel": {"to": "tiny"}}),
    "spec.rules[].actions[].promptOptimization": lambda d: _action(d, {"promptOptimization": {}}),
    "spec.rules[].actions[].promptOptimization.jobTemplate.spec": lambda d: _action(
        d, {"promptOptimization": {"jobTemplate": {"metadata": {}}}}
    ),
    "spec.rules[].actions[].notify.channels[]": lambda d: _action(
        d, {"notify": {"channels": ["pagerduty"]}}
    ),
    "spec.budget.period": lambda d: d["spec"]["budget"].update(period="fortnight"),
    "spec.budget": lambda d: d["spec"]["budget"].pop("hard"),
    "spec.model": lambda d: d["spec"]["model"].update(configMapKey={"name": "c", "key": "m"}),
    "spec.model.tiers": lambda d: d["spec"]["model"].update(tiers=["big", "big"]),
    "spec.guardrails.quietHours[].timeZone": lambda d: d["spec"]["guardrails"]["quietHours"][
        0
    ].update(timeZone="Mars/Olympus"),
    "spec.guardrails.quietHours[].end": lambda d: d["spec"]["guardrails"]["quietHours"][0].update(
        end="22:00"
    ),
    "spec.notifications.channels": lambda d: d["spec"]["notifications"]["channels"].append(
        copy.deepcopy(d["spec"]["notifications"]["channels"][0])
    ),
    "spec.notifications.channels[]": lambda d: d["spec"]["notifications"]["channels"][0].update(
        webhook={"urlSecretRef": {"name": "w", "key": "u"}}
    ),
    "spec.noData.channels[]": lambda d: d["spec"].update(noData={"channels": ["finance"]}),
}


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def test_the_base_policy_of_the_violations_is_valid() -> None:
    assert validate_policy(_base())[1] == []


@pytest.mark.parametrize("check", CROSS_FIELD_CHECKS, ids=lambda c: c.path)
def test_each_documented_check_exists_and_reports_at_its_path(check: Any) -> None:
    assert check.path in VIOLATIONS, f"add a policy that breaks {check.path!r} to VIOLATIONS"
    doc = _base()
    VIOLATIONS[check.path](doc)
    policy, problems = validate_policy(doc)
    assert policy is not None, f"the violation of {check.path} broke the schema: {problems}"
    assert [_generic(p.path) for p in problems] == [check.path], [str(p) for p in problems]


def test_no_violation_is_left_without_its_documented_check() -> None:
    assert set(VIOLATIONS) == {c.path for c in CROSS_FIELD_CHECKS}
