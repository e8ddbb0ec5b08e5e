"""``agentmedic backtest``'s files: one policy and any number of budgets, or problems named."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmedic.cli._backtest_inputs import load_inputs
from agentmedic.cli._errors import CliError
from agentmedic.cli.main import main

BUDGET = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentBudget
metadata: {name: pay-cap, namespace: pay}
spec: {limitUSD: 50}
"""
CLUSTER_BUDGET = """\
apiVersion: agentmedic.io/v1alpha1
kind: ClusterAgentBudget
metadata: {name: team}
spec: {limitUSD: 500, namespaces: [pay, ship], timeZone: Europe/Berlin}
"""
POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {name: %s, namespace: pay}
spec:
  selector: {matchLabels: {app: bot}}
  rules:
    - name: errors
      all: [{metric: success_rate, window: 15m, op: "<", value: 0.8}]
      actions: [{scaleToZero: {}}]
"""


def write(tmp_path: Path, name: str, *docs: str) -> Path:
    path = tmp_path / name
    path.write_text("---\n".join(docs))
    return path


def test_budgets_in_several_files_with_or_without_a_policy_are_all_read(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", POLICY % "p", BUDGET)
    b = write(tmp_path, "b.yaml", CLUSTER_BUDGET)
    inputs = load_inputs([a, b], None, None)
    assert inputs.problems == []
    assert inputs.policy is not None
    assert [(d.kind, d.name, d.namespaces, d.where) for d in inputs.budgets] == [
        ("AgentBudget", "pay-cap", ("pay",), f"{a}#2"),
        ("ClusterAgentBudget", "team", ("pay", "ship"), str(b)),
    ]
    alone = load_inputs([b], None, None)
    assert alone.policy is None
    assert [d.name for d in alone.budgets] == ["team"]


def test_an_agent_budget_without_a_namespace_takes_dash_n(tmp_path: Path) -> None:
    path = write(tmp_path, "b.yaml", BUDGET.replace(", namespace: pay", ""))
    assert load_inputs([path], None, "agents").budgets[0].namespaces == ("agents",)
    (problem,) = load_inputs([path], None, None).problems
    assert problem == f"{path} (pay-cap): an AgentBudget needs metadata.namespace (or -n NAMESPACE)"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (CLUSTER_BUDGET.replace("namespaces: [pay, ship], ", ""), "spec.namespaces is empty"),
        (BUDGET.replace("limitUSD: 50", "limitUSD: -5"), "(pay-cap): spec.limitUSD: Input should"),
        (BUDGET.replace("limitUSD: 50", "limitUSD: 5, bogus: 1"), "spec.bogus"),
    ],
)
def test_a_bad_budget_is_exit_2_with_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    path = write(tmp_path, "b.yaml", text)
    code = main(["backtest", str(path), "--prometheus", "http://127.0.0.1:9", "--from", "now-1h"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert says in err


def test_policies_in_two_files_are_named_with_the_flags_that_pick_one(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", POLICY % "first")
    b = write(tmp_path, "b.yaml", POLICY % "second", BUDGET)
    with pytest.raises(CliError) as caught:
        load_inputs([a, b], None, None)
    assert caught.value.message == (
        f"the files hold 2 AgentPolicies: {a} (first), {b}#1 (second); a backtest replays one, "
        "pick it with --policy-name first or --policy-name second"
    )
    picked = load_inputs([a, b], "second", None)
    assert picked.policy is not None
    assert picked.policy.metadata["name"] == "second"
    assert len(picked.budgets) == 1


def test_files_without_a_policy_or_a_budget_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (problem,) = load_inputs([path], None, None).problems
    assert (
        problem == f"{path}: no AgentPolicy in the file (nor an AgentBudget or ClusterAgentBudget)"
    )
