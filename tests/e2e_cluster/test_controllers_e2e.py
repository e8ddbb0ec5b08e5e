"""agentmedic's actions meeting real controllers: ReplicaSets, kwok's pods, the HPA
controller, the Job controller and the garbage collector (local control plane only: a
kind or k3s cluster runs real kubelets, whose pods these tests do not wait for)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.actions import ActionExecutor, ExecutionOutcome, PolicyRef, WorkloadRef
from agentmedic.api.types import PromptOptimizationAction
from agentmedic_sandbox.cluster import LocalCluster
from tests.e2e_cluster.conftest import eventually
from tests.e2e_cluster.test_actions_e2e import PAUSE, _record, _workload

pytestmark = pytest.mark.e2e_cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns(local_cluster: LocalCluster) -> str:
    name = f"ctl-{uuid.uuid4().hex[:6]}"
    local_cluster.ensure_namespace(name)
    return name


@pytest.fixture
def executor(local_cluster: LocalCluster) -> Any:
    from agentmedic.actions import Kube, RetryPolicy

    kube = Kube.from_configuration(
        local_cluster.client_configuration(), retry=RetryPolicy(attempts=5, base=0.2, cap=2.0)
    )
    yield ActionExecutor(kube)
    kube.close()


def _pods(cluster: LocalCluster, ns: str, app: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.list_objects("v1", "Pod", ns, label_selector=f"app={app}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def _running(cluster: LocalCluster, ns: str, app: str, count: int) -> bool:
    pods = _pods(cluster, ns, app)
    return len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)


def _replica_set(cluster: LocalCluster, ns: str, app: str) -> dict[str, Any]:
    [rs] = cluster.list_objects("apps/v1", "ReplicaSet", ns, label_selector=f"app={app}")
    return rs


def test_scale_to_zero_empties_the_replica_set_and_restore_brings_pods_back_running(
    local_cluster: LocalCluster, executor: ActionExecutor, ns: str
) -> None:
    local_cluster.apply(_workload(ns, "bot", replicas=2))
    eventually(lambda: _running(local_cluster, ns, "bot", 2), timeout=60, interval=0.3)
    ref = WorkloadRef("Deployment", ns, "bot")

    assert executor.scale_to_zero(ref, _record(ns)).outcome is ExecutionOutcome.APPLIED
    eventually(
        lambda: _replica_set(local_cluster, ns, "bot")["spec"]["replicas"] == 0,
        timeout=60,
        interval=0.3,
        what="the ReplicaSet scaled to zero",
    )
    eventually(lambda: _pods(local_cluster, ns, "bot") == [], timeout=60, interval=0.3)

    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    eventually(lambda: _running(local_cluster, ns, "bot", 2), timeout=60, interval=0.3)
    # the same ReplicaSet: restore changed the replicas, not the pod template
    assert len(local_cluster.list_objects("apps/v1", "ReplicaSet", ns)) == 1


def _hpa(ns: str, name: str, min_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }


def _hpa_condition(cluster: LocalCluster, ns: str, name: str, reason: str) -> bool:
    hpa = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", ns, name) or {}
    return any(c.get("reason") == reason for c in (hpa.get("status") or {}).get("conditions") or [])


def _spec_writes_by_others(cluster: LocalCluster, ns: str, name: str) -> list[str]:
    """Writes to the Deployment's spec or scale by the controllers (the HPA's scale writes
    come from kube-controller-manager); agentmedic's and the test's own are not counted."""
    import time

    time.sleep(2)  # the audit log is written in batches of at most a second
    found = []
    with cluster.audit_log_path.open() as f:
        for line in f:
            e = json.loads(line)
            ref = e.get("objectRef") or {}
            if (
                ref.get("resource") == "deployments"
                and ref.get("namespace") == ns
                and ref.get("name") == name
                and ref.get("subresource") in (None, "scale")
                and e["verb"] in ("update", "patch")
                and e["userAgent"].startswith("kube-controller-manager")
            ):
                found.append(f"{e['verb']} {e['requestURI']} by {e['userAgent']}")
    return found


def test_an_hpa_with_min_replicas_holds_off_while_disabled_and_resumes_after_restore(
    local_cluster: LocalCluster, executor: ActionExecutor, ns: str
) -> None:
    local_cluster.apply(_workload(ns, "bot", replicas=2))
    local_cluster.apply(_hpa(ns, "bot", min_replicas=2))
    eventually(lambda: _running(local_cluster, ns, "bot", 2), timeout=60, interval=0.3)
    ref = WorkloadRef("Deployment", ns, "bot")

    assert executor.scale_to_zero(ref, _record(ns)).outcome is ExecutionOutcome.APPLIED
    # docs/examples.md: an HPA stops scaling while the workload is at zero
    eventually(
        lambda: _hpa_condition(local_cluster, ns, "bot", "ScalingDisabled"),
        timeout=120,
        interval=0.5,
        what="the HPA to report ScalingDisabled",
    )
    eventually(lambda: _pods(local_cluster, ns, "bot") == [], timeout=60, interval=0.3)
    assert executor.kube.get_workload("Deployment", ns, "bot")["spec"]["replicas"] == 0

    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    # ... and resumes after the restore: it acts on the Deployment again (no metrics server
    # here, so it reports that it cannot read CPU, and keeps minReplicas)
    eventually(
        lambda: _hpa_condition(local_cluster, ns, "bot", "FailedGetResourceMetric"),
        timeout=120,
        interval=0.5,
        what="the HPA to act again",
    )
    eventually(lambda: _running(local_cluster, ns, "bot", 2), timeout=60, interval=0.3)
    assert _spec_writes_by_others(local_cluster, ns, "bot") == []  # no tug of war


def test_the_tug_of_war_check_sees_an_hpa_raising_a_deployment_to_its_minimum(
    local_cluster: LocalCluster, ns: str
) -> None:
    # The control for the check above: an HPA does write when it disagrees.
    local_cluster.apply(_workload(ns, "low", replicas=1))
    local_cluster.apply(_hpa(ns, "low", min_replicas=2))
    eventually(lambda: _running(local_cluster, ns, "low", 2), timeout=120, interval=0.5)
    writes = _spec_writes_by_others(local_cluster, ns, "low")
    assert writes
    assert all("/scale" in w for w in writes)


def _cron_job(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "opt", "image": PAUSE}],
                        }
                    }
                }
            },
        },
    }


def _policy(cluster: LocalCluster, ns: str) -> PolicyRef:
    cluster.install_crd()
    doc = next(
        d
        for d in yaml.safe_load_all((ROOT / "crds/examples/auto-disable.yaml").read_text())
        if d and d.get("kind") == "AgentPolicy"
    )
    doc["metadata"] = {"name": "owner", "namespace": ns}
    created = cluster.apply(doc)
    return PolicyRef(ns, "owner", created["metadata"]["uid"])


def _job_complete(cluster: LocalCluster, ns: str, name: str) -> bool:
    job = cluster.get("batch/v1", "Job", ns, name) or {}
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def test_a_prompt_job_runs_to_completion_and_the_next_episode_may_start_another(
    local_cluster: LocalCluster, executor: ActionExecutor, ns: str
) -> None:
    local_cluster.apply(_workload(ns, "bot"))
    local_cluster.apply(_cron_job(ns, "optimizer"))
    policy = _policy(local_cluster, ns)
    ref = WorkloadRef("Deployment", ns, "bot")
    action = PromptOptimizationAction(from_cron_job="optimizer", ttl_seconds_after_finished=3600)
    first_record = _record(ns)
    first = executor.start_prompt_job(ref, policy, action, first_record, {"p95": 1})
    assert first.outcome is ExecutionOutcome.APPLIED
    job = first.details["job"]

    eventually(
        lambda: _job_complete(local_cluster, ns, job),
        timeout=90,
        interval=0.3,
        what="the Job's pod to run and complete (kwok) and the Job to be Complete",
    )
    [pod] = local_cluster.list_objects("v1", "Pod", ns, label_selector=f"job-name={job}")
    assert pod["status"]["phase"] == "Succeeded"

    # agentmedic reads completion only to allow the next episode's Job
    second = executor.start_prompt_job(
        ref, policy, action, _record(ns, episode="second"), {"p95": 1}
    )
    assert second.outcome is ExecutionOutcome.APPLIED
    assert second.details["job"] != job


def test_deleting_the_policy_garbage_collects_its_jobs_and_their_pods(
    local_cluster: LocalCluster, executor: ActionExecutor, ns: str
) -> None:
    local_cluster.apply(_workload(ns, "bot"))
    local_cluster.apply(_cron_job(ns, "optimizer"))
    policy = _policy(local_cluster, ns)
    ref = WorkloadRef("Deployment", ns, "bot")
    action = PromptOptimizationAction(from_cron_job="optimizer", ttl_seconds_after_finished=3600)
    result = executor.start_prompt_job(ref, policy, action, _record(ns), {"p95": 1})
    job = result.details["job"]
    eventually(
        lambda: local_cluster.list_objects("v1", "Pod", ns, label_selector=f"job-name={job}"),
        timeout=60,
        interval=0.3,
        what="the Job's pod",
    )

    local_cluster.request(
        "DELETE", f"/apis/agentmedic.io/v1alpha1/namespaces/{ns}/agentpolicies/owner"
    )

    eventually(
        lambda: local_cluster.get("batch/v1", "Job", ns, job) is None,
        timeout=90,
        interval=0.3,
        what="the garbage collector to delete the Job",
    )
    eventually(
        lambda: local_cluster.list_objects("v1", "Pod", ns, label_selector=f"job-name={job}") == [],
        timeout=90,
        interval=0.3,
        what="the Job's pod to go",
    )
    assert executor.kube.get_workload("Deployment", ns, "bot")["metadata"]["name"] == "bot"
