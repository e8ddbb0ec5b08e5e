"""`agentmedic validate` as a linter (issue 18, finding 1) and backtest's policy choice."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from agentmedic.cli.main import main

HEAD = """\
apiVersion: agentmedic.io/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: agents}}
"""

BODY = """\
spec:
  selector: {{matchLabels: {{team: a}}}}
  rules:
  - name: r
    all: [{{metric: {metric}, op: "{op}", value: {value}}}]
    for: 5m
    actions: {actions}
  notifications:
    channels: [{{name: oncall, slack: {{webhookSecretRef: {{name: s, key: url}}}}}}]
"""

NOTIFY = "[{notify: {channels: [oncall]}}]"
DISABLE = "[{scaleToZero: {}}, {notify: {channels: [oncall]}}]"


def policy(
    name: str = "p",
    *,
    kind: str = "AgentPolicy",
    metric: str = "error_rate",
    op: str = ">",
    value: float = 0.5,
    actions: str = NOTIFY,
) -> str:
    return HEAD.format(kind=kind, name=name) + BODY.format(
        metric=metric, op=op, value=value, actions=actions
    )


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, *documents: str, name: str = "m1.yaml") -> Path:
    path = tmp_path / name
    path.write_text("---\n".join(documents))
    return path


def test_a_misspelt_kind_is_an_error_naming_the_document_from_1(tmp_path: Path) -> None:
    path = write(tmp_path, policy("good"), policy("typo", kind="AgentPolcy"))
    code, out, err = run("validate", str(path))
    assert code == 1
    assert f"{path}#2 (typo): kind: 'AgentPolcy' is not a kind of agentmedic.io/v1alpha1" in err
    assert "did you mean 'AgentPolicy'?" in err
    assert f"{path}#1" not in err
    assert "1 problem(s) in 1 policy and 1 other document(s)" in out


def test_an_unknown_api_version_is_an_error_and_kubernetes_builtins_are_left_alone(
    tmp_path: Path,
) -> None:
    other = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    cron = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\n"
    path = write(tmp_path, secret, cron, policy(), other)
    code, _, err = run("validate", str(path))
    assert code == 1
    [line] = err.splitlines()
    assert line.startswith(
        f"{path}#4 (w): kind: example.com/v1/Widget is not a kind of agentmedic.io/v1alpha1 "
        "(AgentPolicy, AgentBudget, ClusterAgentBudget, ModelPriceList)"
    )


@pytest.mark.parametrize(
    ("metric", "op", "value", "fix"),
    [("success_rate", "<", 70, "did you mean 0.7?"), ("error_rate", ">", 15, "0.15?")],
)
def test_a_ratio_written_as_a_percentage_is_an_error_with_the_fix(
    tmp_path: Path, metric: str, op: str, value: float, fix: str
) -> None:
    path = write(tmp_path, policy(metric=metric, op=op, value=value))
    code, _, err = run("validate", str(path))
    assert code == 1
    assert f"{path} (p): spec.rules[0].all[0].value: {value:g} is outside 0..1" in err
    assert fix in err


def test_a_misspelt_metric_gets_did_you_mean(tmp_path: Path) -> None:
    code, _, err = run("validate", str(write(tmp_path, policy(metric="sucess_rate"))))
    assert code == 1
    assert "unknown metric 'sucess_rate'; did you mean 'success_rate'?" in err


def test_a_cap_that_rounds_to_zero_warns_exits_0_and_fails_with_strict(tmp_path: Path) -> None:
    path = write(tmp_path, policy(actions=DISABLE))
    assert run("validate", str(path), "--fleet-size", "10") == (
        0,
        "1 policy document(s) valid\n",
        "",
    )
    code, out, err = run("validate", str(path), "--fleet-size", "1")
    assert code == 0
    assert err.startswith(f"{path} (p): warning: spec.guardrails.maxDisabledPercent: is 50")
    # One agent is also fewer than systemicMinAgents (3): outages disable one by one.
    assert "warning: spec.guardrails.systemicMinAgents: is 3" in err
    assert "1 policy document(s) valid, 2 warning(s)" in out
    code, out, _ = run("validate", str(path), "--fleet-size", "1", "--strict")
    assert code == 1
    assert "2 warning(s) in 1 policy document(s) (--strict)" in out


def test_wide_adds_the_code(tmp_path: Path) -> None:
    path = write(tmp_path, policy(actions="[{scaleToZero: {}}]"))
    _, _, err = run("validate", str(path), "-o", "wide")
    assert err.rstrip().endswith("[ScaleToZeroWithoutNotify]")


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_print_the_documented_shape(tmp_path: Path, output: str) -> None:
    path = write(tmp_path, policy("a", metric="success_rate", op="<", value=70), policy("b"))
    code, out, err = run("validate", str(path), "-o", output)
    assert code == 1
    assert err == ""
    doc = json.loads(out) if output == "json" else yaml.safe_load(out)
    assert doc["schema"] == "agentmedic.io/validate/v1"
    assert doc["valid"] is False
    assert doc["summary"] == {
        "documents": 2,
        "policies": 2,
        "kinds": {"AgentPolicy": 2},
        "errors": 1,
        "warnings": 0,
        "strict": False,
    }
    assert [(d["document"], d["name"], d["errors"]) for d in doc["documents"]] == [
        (1, "a", 1),
        (2, "b", 0),
    ]
    [finding] = doc["findings"]
    assert finding == {
        "file": str(path),
        "document": 1,
        "name": "a",
        "kind": "AgentPolicy",
        "severity": "error",
        "code": "RatioOutOfRange",
        "field": "spec.rules[0].all[0].value",
        "message": finding["message"],
        "fix": "did you mean 0.7?",
    }


def test_json_of_a_valid_file_says_valid(tmp_path: Path) -> None:
    code, out, _ = run("validate", str(write(tmp_path, policy())), "-o", "json")
    assert code == 0
    shown = json.loads(out)
    assert shown["valid"] is True
    assert [d["document"] for d in shown["documents"]] == [1]


def test_an_agent_policy_under_a_kubernetes_api_version_is_not_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, policy().replace("agentmedic.io/v1alpha1", "v1"))
    code, _, err = run("validate", str(path))
    assert code == 1
    assert f"{path} (p): apiVersion: is 'v1'; set it to agentmedic.io/v1alpha1" in err


def test_backtest_of_a_multi_policy_file_names_the_policy_name_to_pick(
    tmp_path: Path,
) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    path = write(tmp_path, secret, policy("quality"), policy("budget"))
    # validate calls the file valid ...
    assert run("validate", str(path))[0] == 0
    # ... so backtest must not call it a problem: it names each policy as validate does.
    code, _, err = run(
        "backtest", str(path), "--prometheus", "http://127.0.0.1:9", "--from", "now-1h"
    )
    assert code == 2
    assert "problem" not in err
    assert f"{path} holds 2 AgentPolicies: #2 (quality), #3 (budget)" in err
    assert "--policy-name quality or --policy-name budget" in err


# ----------------------------------------------------------------- finance's kinds

TEAM_BUDGET = """\
apiVersion: agentmedic.io/v1alpha1
kind: ClusterAgentBudget
metadata: {{name: {name}}}
spec:
  namespaces: [support-eu, support-us]
  timeZone: {zone}
  limitUSD: 1000
  stages:
  - {{name: warn, atPercent: 80, channels: [{channel}]}}
  - {{name: stop, atPercent: 100, response: stop, channels: [finance]}}
  notifications:
    channels: [{{name: finance, slack: {{webhookSecretRef: {{name: s, key: url}}}}}}]
"""

PRICES = """\
apiVersion: agentmedic.io/v1alpha1
kind: ModelPriceList
metadata: {name: default}
spec:
  prices: [{model: m, input: 0, output: 0}]
"""


def team(name: str = "team", *, zone: str = "Europe/Berlin", channel: str = "finance") -> str:
    return TEAM_BUDGET.format(name=name, zone=zone, channel=channel)


def test_budgets_and_price_lists_are_checked_beside_policies(tmp_path: Path) -> None:
    path = write(tmp_path, policy(), team(), PRICES)
    code, out, err = run("validate", str(path))
    assert code == 0
    assert err == (
        f"{path}#3 (default): warning: spec.prices[0]: prices m at 0 for input and output: its "
        "tokens cost nothing and no budget with costSource priceList ever counts them; set "
        "the provider's prices (USD per million tokens), or remove the entry to use the "
        "built-in table\n"
    )
    assert out == "1 policy, 1 cluster budget and 1 price list document(s) valid, 1 warning(s)\n"
    assert run("validate", "--strict", str(path))[0] == 1


def test_every_problem_of_a_budget_is_one_line_naming_the_field_and_the_fix(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, team(zone="Europe/Berlinn", channel="finanse"))
    code, out, err = run("validate", str(path))
    assert code == 1
    assert err.splitlines() == [
        f"{path} (team): spec.timeZone: 'Europe/Berlinn' is not an IANA time zone; use e.g. "
        "UTC, Europe/Berlin or America/New_York",
        f"{path} (team): spec.stages[0].channels[0]: channel 'finanse' is not defined in "
        "spec.notifications.channels (did you mean 'finance'? defined: finance)",
    ]
    assert out == "2 problem(s) in 1 cluster budget document(s)\n"


def test_a_misspelt_finance_kind_gets_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, team().replace("ClusterAgentBudget", "ClusterAgentBudgets"))
    code, _, err = run("validate", str(path))
    assert code == 1
    assert err == (
        f"{path} (team): kind: 'ClusterAgentBudgets' is not a kind of agentmedic.io/v1alpha1 "
        "(known: AgentPolicy, AgentBudget, ClusterAgentBudget, ModelPriceList); did you mean "
        "'ClusterAgentBudget'?\n"
    )


def test_json_names_each_documents_kind_and_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path, policy(), team(channel="nobody"), PRICES)
    code, out, _ = run("validate", str(path), "-o", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["summary"] == {
        "documents": 3,
        "policies": 1,
        "kinds": {"AgentPolicy": 1, "ClusterAgentBudget": 1, "ModelPriceList": 1},
        "errors": 1,
        "warnings": 1,
        "strict": False,
    }
    assert [(d["kind"], d["errors"], d["warnings"]) for d in doc["documents"]] == [
        ("AgentPolicy", 0, 0),
        ("ClusterAgentBudget", 1, 0),
        ("ModelPriceList", 0, 1),
    ]
    assert [(f["kind"], f["code"], f["field"]) for f in doc["findings"]] == [
        ("ClusterAgentBudget", "InvalidSpec", "spec.stages[0].channels[0]"),
        ("ModelPriceList", "ZeroPrice", "spec.prices[0]"),
    ]
