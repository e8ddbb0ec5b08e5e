"""The chart grants exactly the permissions the operator's code declares, no more, no less.

The lists come from the code: ``agentmedic.operator.permissions`` (kopf, the watch cache,
status) and ``agentmedic.actions.permissions`` (scale, model switch, Jobs, Events,
Secrets). The integration tests check that every request the operator sends is in those
lists; this test checks that the rendered RBAC is those lists.

Two refinements: the Lease of leader election is granted only in the release namespace,
by a Role of its own, and not at all when peering is off; and in the namespaced mode the
operator reads only the AgentBudgets of its namespaces (a Role cannot grant cluster-scoped
kinds). Finance's kinds are read, and only their status written
(``agentmedic.api.budget.OPERATOR_PERMISSIONS``).

The ClusterRoles for people (budget editor, policy editor, viewer) are checked below the
operator's: who may write what, and into which of Kubernetes' roles they aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import pytest

from agentmedic.actions.permissions import REQUIRED_PERMISSIONS as ACTION_PERMISSIONS
from agentmedic.api.budget import OPERATOR_PERMISSIONS as FINANCE_PERMISSIONS
from agentmedic.api.crd import all_kinds
from agentmedic.operator.permissions import REQUIRED_PERMISSIONS as OPERATOR_PERMISSIONS

from .support import NAMESPACE, VALUE_SETS, Rendered, merged, render_set, render_values


class Grant(NamedTuple):
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}.{self.group or 'core'}"


def required_by_code() -> frozenset[Grant]:
    operator = {Grant(g, r, v) for g, r, v in OPERATOR_PERMISSIONS | FINANCE_PERMISSIONS}
    actions = {Grant(p.group, p.resource, p.verb) for p in ACTION_PERMISSIONS}
    return frozenset(operator | actions)


CLUSTER_SCOPED = frozenset(k.plural for k in all_kinds() if k.scope == "Cluster") | {"namespaces"}


LEASES = "coordination.k8s.io"


def expected(values: dict[str, Any]) -> frozenset[Grant]:
    """What the watched-namespace (or cluster) roles must grant: all but the Lease, and in
    the namespaced mode nothing on cluster-scoped kinds."""
    namespaced = bool(values.get("namespaces"))
    return frozenset(
        g
        for g in required_by_code()
        if g.group != LEASES and not (namespaced and g.resource.split("/")[0] in CLUSTER_SCOPED)
    )


def election_grants() -> frozenset[Grant]:
    return frozenset(g for g in required_by_code() if g.group == LEASES)


def is_election_role(role: dict[str, Any]) -> bool:
    return str(role["metadata"]["name"]).endswith("-leader-election")


def grants(rules: Iterable[dict[str, Any]]) -> list[Grant]:
    out = []
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"unexpected rule fields (resourceNames, nonResourceURLs?): {rule}"
        )
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.append(Grant(group, resource, verb))
    return out


PEOPLE = ("budget-editor", "policy-editor", "viewer")
SILENCE_ROLES = ("silence-editor", "silence-viewer")


def is_people_role(role: dict[str, Any]) -> bool:
    """A ClusterRole for people (finance's, the SREs', the viewer, on-call's silences), not
    one of the operator's."""
    name = str(role["metadata"]["name"])
    return role["kind"] == "ClusterRole" and name.endswith(PEOPLE + SILENCE_ROLES)


is_user_role = is_people_role


def all_roles(rendered: Rendered) -> list[dict[str, Any]]:
    return rendered.of_kind("ClusterRole") + rendered.of_kind("Role")


def roles(rendered: Rendered) -> list[dict[str, Any]]:
    """The operator's roles (not the ClusterRoles for people)."""
    return [r for r in all_roles(rendered) if not is_people_role(r)]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_leases_are_granted_only_for_election_and_only_in_the_release_namespace(
    value_set: str,
) -> None:
    rendered = render_set(value_set)
    election = [r for r in roles(rendered) if is_election_role(r)]
    if VALUE_SETS[value_set].get("peering", {}).get("enabled", True):
        (role,) = election
        assert role["kind"] == "Role"
        assert role["metadata"]["namespace"] == NAMESPACE
        assert set(grants(role["rules"])) == election_grants()
        assert {g.verb for g in election_grants()} == {"get", "create", "update"}
    else:
        assert election == []


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_has_no_wildcards(value_set: str) -> None:
    for role in all_roles(render_set(value_set)):
        for grant in grants(role["rules"]):
            assert "*" not in grant.group + grant.resource + grant.verb, (
                f"{role['kind']}/{role['metadata']['name']} grants a wildcard: {grant}"
            )


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_each_role_grants_exactly_what_the_code_uses(value_set: str) -> None:
    rendered = render_set(value_set)
    want = expected(VALUE_SETS[value_set])
    all_roles = [r for r in roles(rendered) if not is_election_role(r)]
    assert all_roles, "no RBAC rendered"
    for role in all_roles:
        granted = grants(role["rules"])
        where = f"{role['kind']}/{role['metadata']['name']}"
        duplicates = {g for g in granted if granted.count(g) > 1}
        assert not duplicates, f"{where} grants twice: {sorted(map(str, duplicates))}"
        missing = want - set(granted)
        extra = set(granted) - want
        assert not missing, f"{where} lacks what the code uses: {sorted(map(str, missing))}"
        assert not extra, f"{where} grants what no code uses: {sorted(map(str, extra))}"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_secrets_are_only_readable_one_by_one(value_set: str) -> None:
    for role in roles(render_set(value_set)):
        if is_election_role(role):
            continue
        on_secrets = {g.verb for g in grants(role["rules"]) if g.resource.startswith("secrets")}
        assert on_secrets == {"get"}


def test_cluster_mode_uses_one_clusterrole_and_no_namespaced_roles() -> None:
    rendered = render_set("default")
    assert len([r for r in rendered.of_kind("ClusterRole") if not is_people_role(r)]) == 1
    assert all(is_election_role(r) for r in rendered.of_kind("Role"))
    assert all(is_election_role(b) for b in rendered.of_kind("RoleBinding"))


@pytest.mark.parametrize("value_set", ["namespaced", "basic-auth-standalone"])
def test_namespaced_mode_grants_nothing_cluster_wide(value_set: str) -> None:
    rendered = render_set(value_set)
    assert not [r for r in rendered.of_kind("ClusterRole") if not is_people_role(r)]
    assert not rendered.of_kind("ClusterRoleBinding")
    watched = VALUE_SETS[value_set]["namespaces"]
    placed = [r for r in rendered.of_kind("Role") if not is_election_role(r)]
    assert sorted(r["metadata"]["namespace"] for r in placed) == sorted(watched)
    bindings = [b for b in rendered.of_kind("RoleBinding") if not is_election_role(b)]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_bindings_give_the_roles_to_the_operators_service_account(value_set: str) -> None:
    rendered = render_set(value_set)
    accounts = {
        d["spec"]["template"]["spec"]["serviceAccountName"] for d in rendered.of_kind("Deployment")
    }
    assert len(accounts) == 1
    (account,) = accounts
    assert rendered.one("ServiceAccount", account)
    role_names = {
        (r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")) for r in roles(rendered)
    }
    bindings = rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding")
    assert len(bindings) == len(role_names)
    for binding in bindings:
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        assert (ref["kind"], ref["name"], namespace) in role_names
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]


def test_rbac_can_be_left_to_the_platform_team() -> None:
    rendered = render_values(merged("default", rbac={"create": False}))
    assert not all_roles(rendered)
    assert not rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding")


# ----------------------------------------------------------------- roles for people

EDIT = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)
READ = frozenset({"get", "list", "watch"})
FINANCE = frozenset({"agentbudgets", "clusteragentbudgets", "modelpricelists"})
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def people(rendered: Rendered) -> dict[str, dict[str, Any]]:
    found = {}
    for role in rendered.of_kind("ClusterRole"):
        name = str(role["metadata"]["name"])
        if is_people_role(role) and not name.endswith(SILENCE_ROLES):
            suffix = next(p for p in PEOPLE if name.endswith(f"-{p}"))
            found[suffix] = role
    return found


def granted_on(role: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for g in grants(role["rules"]):
        assert g.group == "agentmedic.io", f"{role['metadata']['name']} grants {g}"
        out.setdefault(g.resource, set()).add(g.verb)
    return out


def aggregates_into(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"].get("labels", {})
    return {k.removeprefix(AGGREGATE) for k, v in labels.items() if k.startswith(AGGREGATE) and v}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_finance_edits_budgets_and_prices_and_nothing_of_the_sres(value_set: str) -> None:
    role = people(render_set(value_set))["budget-editor"]
    assert granted_on(role) == {plural: set(EDIT) for plural in FINANCE}
    assert aggregates_into(role) == set()  # never part of edit: editors would raise ceilings


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_sres_edit_policies_only_and_namespace_editors_get_it(value_set: str) -> None:
    role = people(render_set(value_set))["policy-editor"]
    sre_kinds = ("agentpolicies", "notificationchannels", "metricsbackends")
    assert granted_on(role) == {plural: set(EDIT) for plural in sre_kinds}
    assert aggregates_into(role) == {"edit", "admin"}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_the_viewer_reads_every_kind_agentmedic_serves_and_writes_none(value_set: str) -> None:
    role = people(render_set(value_set))["viewer"]
    assert granted_on(role) == {k.plural: set(READ) for k in all_kinds()}
    assert aggregates_into(role) == {"view", "edit", "admin"}


def test_no_role_for_people_writes_status_or_is_bound_by_the_chart() -> None:
    rendered = render_set("default")
    for role in people(rendered).values():
        assert not any("/" in resource for resource in granted_on(role))
    bound = {b["roleRef"]["name"] for b in rendered.of_kind("ClusterRoleBinding")}
    bound |= {b["roleRef"]["name"] for b in rendered.of_kind("RoleBinding")}
    assert not bound & {r["metadata"]["name"] for r in people(rendered).values()}


def test_roles_for_people_can_be_left_out_or_kept_out_of_the_aggregation() -> None:
    plain = render_values(merged("default", rbac={"peopleRoles": {"aggregate": False}}))
    assert set(people(plain)) == set(PEOPLE)
    assert all(aggregates_into(r) == set() for r in people(plain).values())
    none = render_values(merged("default", rbac={"peopleRoles": {"create": False}}))
    assert people(none) == {}
    assert roles(none)  # the operator's own RBAC is still there


def test_the_operator_writes_only_the_status_of_finances_kinds() -> None:
    (role,) = [r for r in roles(render_set("default")) if not is_election_role(r)]
    finance = {g for g in grants(role["rules"]) if g.resource.split("/")[0] in FINANCE}
    assert {g.resource for g in finance if g.verb not in READ} == {f"{k}/status" for k in FINANCE}
    assert {g.verb for g in finance if g.verb not in READ} == {"patch"}


# --- shared channels and metrics backends


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_shared_kinds_are_only_listed_watched_and_given_a_status(value_set: str) -> None:
    kinds = {"notificationchannels", "metricsbackends"}
    if not VALUE_SETS[value_set].get("namespaces"):
        kinds |= {"clusternotificationchannels", "clustermetricsbackends"}
    shared = {"notificationchannels", "metricsbackends"} | {
        "clusternotificationchannels",
        "clustermetricsbackends",
    }
    shared |= {f"{r}/status" for r in shared if "/" not in r}
    want = {Grant("agentmedic.io", r, v) for r in kinds for v in ("list", "watch")}
    want |= {Grant("agentmedic.io", f"{r}/status", "patch") for r in kinds}
    for role in roles(render_set(value_set)):
        if is_election_role(role):
            continue
        granted = {g for g in grants(role["rules"]) if g.resource in shared}
        assert granted == want, f"{role['kind']}/{role['metadata']['name']}"


# --- silences: people's roles (AgentSilence) ---


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_silence_roles_grant_silences_alone_to_edit_and_read_to_view(value_set: str) -> None:
    rendered = render_set(value_set)
    by_name = {r["metadata"]["name"]: r for r in all_roles(rendered) if is_user_role(r)}
    (editor,) = [r for n, r in by_name.items() if n.endswith("-silence-editor")]
    (viewer,) = [r for n, r in by_name.items() if n.endswith("-silence-viewer")]
    assert editor["kind"] == viewer["kind"] == "ClusterRole"
    assert set(grants(editor["rules"])) == {
        Grant("agentmedic.io", "agentsilences", v)
        for v in ("get", "list", "watch", "create", "patch", "delete")
    }, "on-call gets silences, and nothing on policies or workloads"
    assert set(grants(viewer["rules"])) == {
        Grant("agentmedic.io", "agentsilences", v) for v in ("get", "list", "watch")
    }
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in editor["metadata"]["labels"]


def test_silence_roles_can_be_left_out() -> None:
    rendered = render_values(merged("default", rbac={"create": True, "silenceRoles": False}))
    names = [str(r["metadata"]["name"]) for r in all_roles(rendered) if is_user_role(r)]
    assert not [n for n in names if n.endswith(SILENCE_ROLES)]
    assert roles(rendered), "the operator's own role stays"


def test_a_namespaced_operator_reads_finances_cluster_kinds_only_when_asked() -> None:
    plain = render_values(merged("namespaced"))
    assert not [r for r in plain.of_kind("ClusterRole") if not is_people_role(r)]
    asked = render_values(merged("namespaced", readClusterKinds=True))
    (role,) = [r for r in asked.of_kind("ClusterRole") if not is_people_role(r)]
    kinds = {"clusteragentbudgets", "modelpricelists"}
    assert set(grants(role["rules"])) == {
        Grant("agentmedic.io", k, v) for k in kinds for v in ("get", "list", "watch")
    } | {Grant("agentmedic.io", f"{k}/status", "patch") for k in kinds}
    (binding,) = [
        b
        for b in asked.of_kind("ClusterRoleBinding")
        if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["subjects"][0]["kind"] == "ServiceAccount"
    assert asked.config()["readClusterKinds"] is True


def test_a_namespaced_operator_may_post_a_cluster_budgets_events_in_default_only() -> None:
    """A ClusterAgentBudget's Events go to default (as Kubernetes puts those of
    cluster-scoped objects): a namespaced operator that reads them gets a Role there that
    creates Events and nothing else; a cluster-wide one has it from its ClusterRole, and
    one that watches default from that namespace's Role."""
    asked = render_values(merged("namespaced", readClusterKinds=True))
    (role,) = [r for r in asked.of_kind("Role") if r["metadata"].get("namespace") == "default"]
    assert set(grants(role["rules"])) == {Grant("", "events", "create")}
    (binding,) = [
        b for b in asked.of_kind("RoleBinding") if b["metadata"].get("namespace") == "default"
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": binding["subjects"][0]["name"], "namespace": NAMESPACE}
    ]
    plain = render_values(merged("namespaced"))
    assert not [r for r in plain.of_kind("Role") if r["metadata"].get("namespace") == "default"]
    watching = render_values(
        merged("namespaced", readClusterKinds=True, namespaces=["agents", "default"])
    )
    in_default = [r for r in watching.of_kind("Role") if r["metadata"]["namespace"] == "default"]
    assert len(in_default) == 1, "the watched namespace's Role already grants it"
    assert Grant("", "events", "create") in grants(in_default[0]["rules"])
    cluster = render_values(merged("default"))
    (operator,) = [r for r in cluster.of_kind("ClusterRole") if not is_people_role(r)]
    assert Grant("", "events", "create") in grants(operator["rules"])
