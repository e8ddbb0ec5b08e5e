"""The chart's RBAC is enough for the operator, and it is what is enforced: a real API server.

The chart is rendered with Helm's engine; its ServiceAccount, (Cluster)Role and binding go
into a fresh local control plane, and ``agentmedic run`` (a subprocess) gets a kubeconfig
holding only a token of that ServiceAccount. The demo's scenario then plays out (an agent
scaled to zero, a model switched, a prompt-optimization Job, status, Events) and a restore
by annotation undoes the scale to zero. The API server's audit log must show the operator's
requests and not one 403. The negative twin removes the Jobs rule: the refusal must be in
the audit log and surface as an ``ActionFailed`` Event of agentmedic. The namespaced
install with ``readClusterKinds`` also has finance's team ceiling (a ClusterAgentBudget):
its StageReached Event must reach the namespace default, through the Role the chart puts
there and nothing wider.

Each scenario gets its own control plane (the sandbox world uses fixed namespaces), so these
tests do not start the suite's shared ``local_cluster``; they only need its binaries.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentmedic.actions.events import COMPONENT
from agentmedic.actions.record import DISABLED, RESTORE_REQUEST
from agentmedic_sandbox.cluster import LocalCluster
from agentmedic_sandbox.world import World, demo_scenario
from tests.chart.support import NAMESPACE, render_values
from tests.conftest import require_control_plane_binaries
from tests.e2e_cluster.conftest import eventually

# Each test starts its own control plane and world (no module fixture): in a parallel run
# each is a scheduling unit of its own.
pytestmark = [pytest.mark.e2e_cluster, pytest.mark.prometheus, pytest.mark.schedule_alone]

AGENTS = "agents"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@dataclass
class Run:
    world: World
    cluster: LocalCluster
    user: str

    def audit(self) -> list[dict[str, Any]]:
        """The operator's requests as the API server audited them."""
        time.sleep(2)  # the audit backend writes in batches of at most a second
        events = []
        with self.cluster.audit_log_path.open() as f:
            for line in f:
                event = json.loads(line)
                if event["user"]["username"] == self.user:
                    events.append(event)
        return events

    def agentmedic_events(self, reason: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.world.events()
            if e["reason"] == reason and e.get("reportingComponent") == COMPONENT
        ]


def _install(cluster: LocalCluster, values: dict[str, Any], drop_jobs_rule: bool) -> str:
    """Apply the chart's ServiceAccount and RBAC; return the ServiceAccount's user name."""
    rendered = render_values(values)
    cluster.ensure_namespace(NAMESPACE)
    cluster.ensure_namespace(AGENTS)
    dropped = 0
    for kind in RBAC_KINDS:
        for doc in rendered.of_kind(kind):
            doc = copy.deepcopy(doc)
            if drop_jobs_rule and kind in ("ClusterRole", "Role"):
                before = len(doc["rules"])
                doc["rules"] = [r for r in doc["rules"] if "jobs" not in r["resources"]]
                dropped += before - len(doc["rules"])
            cluster.apply(doc)
    # The Jobs rule lives in one role (the leader election's Lease role has none).
    assert dropped == (1 if drop_jobs_rule else 0)
    [sa] = rendered.of_kind("ServiceAccount")
    return f"system:serviceaccount:{NAMESPACE}:{sa['metadata']['name']}"


def _run(
    tmp_path: Path, values: dict[str, Any], *, drop_jobs_rule: bool, team_budget: bool = False
) -> Iterator[Run]:
    cluster = LocalCluster(workdir=tmp_path / "cluster")
    cluster.start()
    try:
        user = _install(cluster, values, drop_jobs_rule)
        sa = user.rsplit(":", 1)[1]
        token = cluster.service_account_token(NAMESPACE, sa)
        kubeconfig = cluster.kubeconfig_for_token(token, tmp_path / "operator.kubeconfig")
        world = World(
            demo_scenario(agents=4, duration=90.0, team_budget=team_budget),
            operator="process",
            api=cluster,
            operator_kubeconfig=kubeconfig,
        )
        world.start()
        try:
            yield Run(world, cluster, user)
        finally:
            world.stop()
    finally:
        cluster.stop()


CLUSTER_WIDE = {"prometheus": {"url": "http://127.0.0.1:9090"}}
NAMESPACED = {"prometheus": {"url": "http://127.0.0.1:9090"}, "namespaces": [AGENTS]}
VALUES = {
    "cluster-wide": CLUSTER_WIDE,
    "namespaced": NAMESPACED,
    # finance's team ceiling (a ClusterAgentBudget) too: read, status, Events in default
    "namespaced-cluster-kinds": {**NAMESPACED, "readClusterKinds": True},
}


@pytest.fixture(params=sorted(VALUES))
def granted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Run]:
    require_control_plane_binaries()
    team = request.param == "namespaced-cluster-kinds"
    yield from _run(tmp_path, VALUES[request.param], drop_jobs_rule=False, team_budget=team)


@pytest.fixture(params=["cluster-wide", "namespaced"])
def without_jobs_rule(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Run]:
    require_control_plane_binaries()
    values = CLUSTER_WIDE if request.param == "cluster-wide" else NAMESPACED
    yield from _run(tmp_path, values, drop_jobs_rule=True)


def test_the_charts_rbac_lets_the_operator_heal_and_restore_without_one_403(granted: Run) -> None:
    world = granted.world
    eventually(
        lambda: world.replicas("flaky-bot") == 0, timeout=150, what="flaky-bot scaled to zero"
    )
    eventually(lambda: len(world.jobs()) >= 1, timeout=150, what="a prompt-optimization Job")
    eventually(
        lambda: granted.agentmedic_events("ScaledToZero"), timeout=30, what="a ScaledToZero Event"
    )
    eventually(
        lambda: (world.policy("auto-disable").get("status") or {}).get("recentActions"),
        timeout=60,
        what="the policy's status to record the action",
    )

    granted.cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{AGENTS}/deployments/flaky-bot",
        {"metadata": {"annotations": {RESTORE_REQUEST: "true"}}},
        content_type="application/merge-patch+json",
    )
    eventually(lambda: world.replicas("flaky-bot") == 2, timeout=90, what="the restore")
    assert DISABLED not in world.deployment("flaky-bot")["metadata"].get("annotations", {})

    if world.scenario.budgets:
        eventually(
            lambda: [
                e
                for e in world.events("default")
                if e["involvedObject"].get("kind") == "ClusterAgentBudget"
                and e["reason"] == "StageReached"
                and e.get("reportingComponent") == COMPONENT
            ],
            timeout=150,
            what="the team ceiling's StageReached Event in default",
        )

    audited = granted.audit()
    verbs = {(e["verb"], e.get("objectRef", {}).get("resource")) for e in audited}
    assert ("patch", "deployments") in verbs
    assert ("create", "jobs") in verbs
    assert ("patch", "agentpolicies") in verbs or ("patch", "agentpolicies/status") in verbs
    forbidden = [
        f"{e['verb']} {e['requestURI']}" for e in audited if e["responseStatus"]["code"] == 403
    ]
    assert forbidden == []


def test_without_the_jobs_rule_the_refusal_is_an_action_failed_event(
    without_jobs_rule: Run,
) -> None:
    run = without_jobs_rule
    failed = eventually(
        lambda: [
            e for e in run.agentmedic_events("ActionFailed") if "forbidden" in e["message"].lower()
        ],
        timeout=150,
        what="an ActionFailed Event for the refused Job",
    )
    assert run.world.jobs() == []
    forbidden = [
        e
        for e in run.audit()
        if e["responseStatus"]["code"] == 403 and e.get("objectRef", {}).get("resource") == "jobs"
    ]
    assert forbidden, "the API server refused no Job request"
    assert any(e["involvedObject"]["name"] == "slow-bot" for e in failed)
