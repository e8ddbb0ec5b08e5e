"""The files ``agentmedic backtest`` replays: one AgentPolicy and any number of budgets.

Documents are numbered and named as ``agentmedic validate`` shows them (``FILE#N (name)``);
files holding several policies without ``--policy-name`` are refused with the exact flags
to pick one. AgentBudget and ClusterAgentBudget documents may sit in the policy's file or
in others, with or without a policy. An AgentBudget needs its namespace
(``metadata.namespace`` or ``-n``); a ClusterAgentBudget its ``spec.namespaces`` or, when
the cluster is given (``--kubeconfig``/``--context``), a ``namespaceSelector`` whose
Namespaces are listed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmedic.cli._errors import CliError

if TYPE_CHECKING:
    from agentmedic.api.types import AgentPolicy
    from agentmedic.backtest.budgets import BudgetDoc

__all__ = ["Inputs", "load_inputs", "resolve_namespace_selectors"]

BUDGET_KINDS = ("AgentBudget", "ClusterAgentBudget")


@dataclass
class Inputs:
    policy: AgentPolicy | None = None
    budgets: list[BudgetDoc] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _metadata(document: dict[str, Any]) -> dict[str, Any]:
    metadata = document.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _budget(
    document: dict[str, Any], where: str, namespace: str | None, cluster: bool
) -> tuple[BudgetDoc | None, list[str]]:
    from pydantic import ValidationError

    from agentmedic.api.budget import AgentBudget, ClusterAgentBudget
    from agentmedic.backtest.budgets import BudgetDoc

    name = str(_metadata(document).get("name") or "")
    label = f"{where} ({name or 'no name'})"
    model = AgentBudget if document.get("kind") == "AgentBudget" else ClusterAgentBudget
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        return None, [
            f"{label}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
    if isinstance(parsed, AgentBudget):
        own = _metadata(document).get("namespace") or namespace
        if not own:
            return None, [f"{label}: an AgentBudget needs metadata.namespace (or -n NAMESPACE)"]
        return BudgetDoc("AgentBudget", name, str(own), parsed.spec, where), []
    if not parsed.spec.namespaces and not (cluster and parsed.spec.namespace_selector):
        return None, [
            f"{label}: spec.namespaces is empty; list the namespaces whose agents count in "
            "spec.namespaces, or give --kubeconfig to find its namespaceSelector's Namespaces"
        ]
    return BudgetDoc("ClusterAgentBudget", name, None, parsed.spec, where), []


def _several(policies: list[tuple[str, dict[str, Any]]]) -> str:
    """A backtest replays one policy: name them and the flags that pick one."""
    files = {w.rsplit("#", 1)[0] for w, _ in policies}
    one_file = len(files) == 1
    listed = ", ".join(
        (f"#{w.rsplit('#', 1)[1]}" if one_file and "#" in w else w)
        + f" ({_metadata(d).get('name')})"
        for w, d in policies
    )
    picks = " or ".join(f"--policy-name {_metadata(d).get('name')}" for _, d in policies[:3])
    source = next(iter(files)) if one_file else "the files"
    verb = "holds" if one_file else "hold"
    return (
        f"{source} {verb} {len(policies)} AgentPolicies: {listed}; a backtest replays one, "
        f"pick it with {picks}"
    )


def load_inputs(
    paths: list[Path], policy_name: str | None, namespace: str | None, *, cluster: bool = False
) -> Inputs:
    """The policy (at most one) and the budgets of ``paths``, or the problems found."""
    from agentmedic.api.validation import validate_policy
    from agentmedic.api.yamlfile import YAMLInputError, load_documents
    from agentmedic.cli.validate import is_builtin_kubernetes

    out = Inputs()
    policies: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            documents = load_documents(path)
        except YAMLInputError as exc:
            out.problems.append(str(exc))
            continue
        multi = len(documents) > 1
        for n, d in enumerate(documents, start=1):
            if not isinstance(d, dict) or is_builtin_kubernetes(d):
                continue
            where = f"{path}#{n}" if multi else str(path)
            if d.get("kind") == "AgentPolicy":
                policies.append((where, d))
            elif d.get("kind") in BUDGET_KINDS:
                budget, problems = _budget(d, where, namespace, cluster)
                out.problems += problems
                if budget is not None:
                    out.budgets.append(budget)
    if out.problems:
        return out
    if policy_name is not None:
        policies = [(w, d) for w, d in policies if _metadata(d).get("name") == policy_name]
        if not policies:
            names = ", ".join(str(p) for p in paths)
            out.problems.append(f"{names}: no AgentPolicy named {policy_name!r}")
            return out
    if not policies:
        if not out.budgets:
            names = ", ".join(str(p) for p in paths)
            out.problems.append(
                f"{names}: no AgentPolicy in the file"
                + ("s" if len(paths) > 1 else "")
                + " (nor an AgentBudget or ClusterAgentBudget)"
            )
        return out
    if len(policies) > 1:
        raise CliError(_several(policies))
    where, document = policies[0]
    policy, found = validate_policy(document)
    label = f"{where} ({_metadata(document).get('name')})"
    out.problems += [f"{label}: {p}" for p in found]
    out.policy = policy if not found else None
    return out


def resolve_namespace_selectors(budgets: list[BudgetDoc], args: Any) -> list[BudgetDoc]:
    """Each ClusterAgentBudget with a namespaceSelector, with the Namespaces it selects in
    the cluster of ``--kubeconfig``/``--context`` (:class:`CliError` when unreachable)."""
    from dataclasses import replace

    from agentmedic.actions.workloads import label_selector_string
    from agentmedic.api.budget import ClusterAgentBudgetSpec
    from agentmedic.cli._finance import list_namespaces

    out = []
    for doc in budgets:
        spec = doc.spec
        if isinstance(spec, ClusterAgentBudgetSpec) and spec.namespace_selector is not None:
            names = list_namespaces(args, label_selector_string(spec.namespace_selector))
            doc = replace(doc, selected=tuple(names))
        out.append(doc)
    return out
