"""Finance writes budgets, SREs write policies, and a real API server enforces the split.

The chart's ClusterRoles for people (rendered with Helm's engine) go into the local control
plane with the CRDs generated from the models. ServiceAccounts stand for the people:

- ``finance``: the budget editor through a ClusterRoleBinding (what docs/finance.md says
  to grant): AgentBudgets anywhere, ClusterAgentBudgets and ModelPriceLists;
- ``finance-eu``: the budget editor through a RoleBinding in one namespace: that
  namespace's AgentBudgets only, since a RoleBinding cannot grant cluster-scoped kinds;
- ``sre``: the policy editor through a RoleBinding in one namespace;
- ``editor``: Kubernetes' own ``edit`` role in one namespace, which the policy editor and
  the viewer aggregate into and the budget editor does not: a namespace's editor manages
  its policies and cannot raise its ceiling;
- ``auditor``: the viewer through a ClusterRoleBinding: reads every kind, writes none.

Every request is sent as that identity (``Impersonate-User`` with the admin's
certificate), so the API server's RBAC authorizer decides, not this test. The CRDs admit
the examples of crds/examples/ and refuse, with the CEL rule's message, a
ClusterAgentBudget that does not say which namespaces it covers.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentmedic.api.crd import crd_manifest
from agentmedic.docsgen.reference import MINIMAL_POLICY
from agentmedic_sandbox.cluster import LocalCluster
from tests.chart.support import BACKEND_URL, render_values
from tests.e2e_cluster.conftest import eventually

pytestmark = pytest.mark.e2e_cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "crds" / "examples"
GROUP = "/apis/agentmedic.io/v1alpha1"
PEOPLE_ROLES = ("agentmedic-budget-editor", "agentmedic-policy-editor", "agentmedic-viewer")
FORBIDDEN = 403


def _example(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return dict(doc)


@pytest.fixture(scope="module")
def split(local_cluster: LocalCluster) -> Iterator[Split]:
    local_cluster.install_crd()
    suffix = uuid.uuid4().hex[:6]
    world = Split(local_cluster, f"people-{suffix}", f"team-eu-{suffix}", f"team-us-{suffix}")
    world.install()
    try:
        yield world
    finally:
        world.remove()


class Split:
    """The people's roles, ServiceAccounts and bindings in a cluster, and their requests."""

    def __init__(self, cluster: LocalCluster, accounts: str, eu: str, us: str) -> None:
        self.cluster = cluster
        self.accounts = accounts
        self.eu = eu
        self.us = us
        self.cluster_objects: list[str] = []
        # the admin's certificate: allowed to impersonate, as kubectl --as is
        self.http = httpx.Client(base_url=cluster.url, verify=cluster.ssl_context(), timeout=30)

    def install(self) -> None:
        rendered = render_values({"prometheus": {"url": BACKEND_URL}})
        roles = [
            r for r in rendered.of_kind("ClusterRole") if r["metadata"]["name"] in PEOPLE_ROLES
        ]
        assert sorted(r["metadata"]["name"] for r in roles) == sorted(PEOPLE_ROLES)
        for role in roles:
            self.cluster.apply(role)
        for ns in (self.accounts, self.eu, self.us):
            self.cluster.ensure_namespace(ns)
        for sa in ("finance", "finance-eu", "sre", "editor", "auditor"):
            self.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": sa, "namespace": self.accounts},
                }
            )
        self._bind("finance", "agentmedic-budget-editor", None)
        self._bind("auditor", "agentmedic-viewer", None)
        self._bind("finance-eu", "agentmedic-budget-editor", self.eu)
        self._bind("sre", "agentmedic-policy-editor", self.eu)
        self._bind("editor", "edit", self.eu)

    def _bind(self, sa: str, role: str, namespace: str | None) -> None:
        kind = "RoleBinding" if namespace else "ClusterRoleBinding"
        name = f"{sa}-{self.accounts}"
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        else:
            self.cluster_objects.append(
                f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"
            )
        self.cluster.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": self.accounts}],
            }
        )

    def remove(self) -> None:
        for path in self.cluster_objects:
            self.send("admin", "DELETE", path)
        for ns in (self.accounts, self.eu, self.us):
            self.send("admin", "DELETE", f"/api/v1/namespaces/{ns}")
        self.http.close()

    def send(
        self, who: str, method: str, path: str, body: Any = None, *, merge: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """One request as the ServiceAccount ``who`` (``admin``: the cluster's admin)."""
        headers = {"Accept": "application/json"}
        if who != "admin":
            headers["Impersonate-User"] = f"system:serviceaccount:{self.accounts}:{who}"
        if merge:
            headers["Content-Type"] = "application/merge-patch+json"
        response = self.http.request(method, path, json=body, headers=headers)
        answer = response.json() if response.content else {}
        return response.status_code, answer

    # the objects, each with a fresh name so that the tests stay independent

    def budget(self, namespace: str) -> tuple[str, dict[str, Any]]:
        doc = _example("finance-namespace-budget.yaml")
        doc["metadata"] = {"name": f"b-{uuid.uuid4().hex[:6]}", "namespace": namespace}
        return f"{GROUP}/namespaces/{namespace}/agentbudgets", doc

    def team_budget(self) -> tuple[str, dict[str, Any]]:
        doc = _example("finance-team-budget.yaml")
        doc["metadata"] = {"name": f"cab-{uuid.uuid4().hex[:6]}"}
        doc["spec"]["namespaces"] = [self.eu, self.us]
        return f"{GROUP}/clusteragentbudgets", doc

    def price_list(self) -> tuple[str, dict[str, Any]]:
        doc = _example("finance-price-list.yaml")
        doc["metadata"] = {"name": f"prices-{uuid.uuid4().hex[:6]}"}
        return f"{GROUP}/modelpricelists", doc

    def policy(self, namespace: str) -> tuple[str, dict[str, Any]]:
        doc = yaml.safe_load(MINIMAL_POLICY)
        doc["metadata"] = {"name": f"p-{uuid.uuid4().hex[:6]}", "namespace": namespace}
        return f"{GROUP}/namespaces/{namespace}/agentpolicies", doc


def _created(split: Split, who: str, collection: str, doc: dict[str, Any]) -> str:
    """Create ``doc`` as ``who``, change it (an update), and return its path."""
    code, answer = split.send(who, "POST", collection, doc)
    assert code == 201, f"{who} could not create {doc['kind']}: {code} {answer.get('message')}"
    path = f"{collection}/{doc['metadata']['name']}"
    if doc["kind"] == "ModelPriceList":
        change: dict[str, Any] = {"spec": {"includeDefaults": False}}
    elif doc["kind"] == "AgentPolicy":
        change = {"spec": {"interval": "1m"}}
    else:
        change = {"spec": {"limitUSD": 123}}
    code, answer = split.send(who, "PATCH", path, change, merge=True)
    assert code == 200, f"{who} could not update {doc['kind']}: {code} {answer.get('message')}"
    return path


def _refused(split: Split, who: str, collection: str, doc: dict[str, Any]) -> None:
    code, answer = split.send(who, "POST", collection, doc)
    assert code == FORBIDDEN, f"{who} was not refused {doc['kind']}: {code} {answer}"
    assert answer["reason"] == "Forbidden"
    assert f"system:serviceaccount:{split.accounts}:{who}" in answer["message"]


def test_finance_writes_every_budget_kind_and_no_policy(split: Split) -> None:
    for collection, doc in (
        split.budget(split.eu),
        split.budget(split.us),
        split.team_budget(),
        split.price_list(),
    ):
        path = _created(split, "finance", collection, doc)
        # the operator alone writes status
        code, _ = split.send("finance", "PATCH", f"{path}/status", {"status": {}}, merge=True)
        assert code == FORBIDDEN
    _refused(split, "finance", *split.policy(split.eu))


def test_the_sre_writes_policies_and_no_budget_kind(split: Split) -> None:
    _created(split, "sre", *split.policy(split.eu))
    _refused(split, "sre", *split.budget(split.eu))
    _refused(split, "sre", *split.team_budget())
    _refused(split, "sre", *split.price_list())
    # the RoleBinding grants policies in its namespace only
    _refused(split, "sre", *split.policy(split.us))


def test_a_namespace_binding_of_the_budget_editor_grants_that_namespaces_budgets_only(
    split: Split,
) -> None:
    _created(split, "finance-eu", *split.budget(split.eu))
    _refused(split, "finance-eu", *split.budget(split.us))
    _refused(split, "finance-eu", *split.team_budget())
    _refused(split, "finance-eu", *split.price_list())
    _refused(split, "finance-eu", *split.policy(split.eu))


def test_a_namespace_editor_gets_policies_and_reads_budgets_but_cannot_raise_a_ceiling(
    split: Split,
) -> None:
    collection, doc = split.policy(split.eu)

    def aggregated() -> bool:
        # Kubernetes' aggregation controller copies the labelled roles into edit
        return split.send("editor", "GET", collection)[0] == 200

    eventually(aggregated, timeout=60, interval=0.5, what="the policy editor in edit")
    _created(split, "editor", collection, doc)
    budgets, budget = split.budget(split.eu)
    assert split.send("editor", "GET", budgets)[0] == 200
    _refused(split, "editor", budgets, budget)


def test_the_viewer_lists_every_kind_and_writes_none(split: Split) -> None:
    made = [
        split.budget(split.eu),
        split.team_budget(),
        split.price_list(),
        split.policy(split.eu),
    ]
    for collection, doc in made:
        assert split.send("admin", "POST", collection, doc)[0] == 201
    for collection, doc in made:
        code, listed = split.send("auditor", "GET", collection)
        assert code == 200
        assert doc["metadata"]["name"] in {i["metadata"]["name"] for i in listed["items"]}
        fresh = copy.deepcopy(doc)
        fresh["metadata"]["name"] += "-2"
        _refused(split, "auditor", collection, fresh)
        path = f"{collection}/{doc['metadata']['name']}"
        code, _ = split.send(
            "auditor", "PATCH", path, {"metadata": {"labels": {"a": "b"}}}, merge=True
        )
        assert code == FORBIDDEN
        assert split.send("auditor", "DELETE", path)[0] == FORBIDDEN
    for namespaced in (f"{GROUP}/agentbudgets", f"{GROUP}/agentpolicies"):
        assert split.send("auditor", "GET", namespaced)[0] == 200  # across namespaces


def test_the_crds_admit_the_examples_as_written(split: Split) -> None:
    split.cluster.ensure_namespace("research")
    for name in (
        "finance-team-budget.yaml",
        "finance-namespace-budget.yaml",
        "finance-price-list.yaml",
    ):
        doc = _example(name)
        doc["metadata"]["name"] += f"-{uuid.uuid4().hex[:4]}"
        namespace = doc["metadata"].get("namespace")
        collection = split.cluster.resource_path(doc["apiVersion"], doc["kind"], namespace)
        code, answer = split.send("admin", "POST", collection, doc)
        assert code == 201, f"{name}: {answer.get('message')}"
        assert answer["spec"] == doc["spec"]  # nothing pruned, nothing defaulted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.pop("namespaces"),
            "set spec.namespaces or spec.namespaceSelector: which namespaces' agents the budget "
            "covers",
        ),
        (
            lambda s: s["stages"][0].update(channels=["finanse"]),
            "spec.stages[].channels: each channel must be defined in spec.notifications.channels",
        ),
        (
            lambda s: s["stages"][1].update(name="warn"),
            "spec.stages: stage names must be unique",
        ),
    ],
    ids=["no-namespaces", "undefined-channel", "stage-twice"],
)
def test_the_crd_refuses_a_team_budget_with_the_rules_message(
    split: Split, change: Any, message: str
) -> None:
    collection, doc = split.team_budget()
    change(doc["spec"])
    code, answer = split.send("finance", "POST", collection, doc)
    assert code == 422, answer
    assert message in answer["message"]


def test_the_crd_refuses_a_model_priced_twice(split: Split) -> None:
    collection, doc = split.price_list()
    doc["spec"]["prices"].append(dict(doc["spec"]["prices"][0], input=9))
    code, answer = split.send("finance", "POST", collection, doc)
    assert code == 422, answer
    assert "spec.prices[3]: Duplicate value" in answer["message"]


def test_every_finance_crd_is_established_with_its_rules_as_generated(split: Split) -> None:
    # ModelPriceList once carried a CEL rule whose estimated cost the server refused.
    for kind in ("AgentBudget", "ClusterAgentBudget", "ModelPriceList"):
        generated = crd_manifest(kind)
        code, served = split.send(
            "admin",
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
            + generated["metadata"]["name"],
        )
        assert code == 200
        conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert served["spec"]["versions"] == generated["spec"]["versions"]
