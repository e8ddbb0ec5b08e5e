"""The core actions against a real API server (kind, k3s): what the emulator cannot prove.

Skipped cleanly without a reachable local cluster; see README.md in this directory.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from agentmedic.actions import (
    KEDA_PAUSED_REPLICAS,
    ActionExecutor,
    ActionRecord,
    EventReason,
    ExecutionOutcome,
    PolicyRef,
    WorkloadRef,
    parse_disabled,
)
from agentmedic.actions import record as rec
from agentmedic.actions.events import COMPONENT
from agentmedic.api.types import EnvRef, ModelSpec, PromptOptimizationAction
from tests.e2e_cluster.conftest import (
    _served,
    eventually,
    install_keda_crd_stand_in,
    uses_local_cluster,
)

pytestmark = pytest.mark.e2e_cluster

PAUSE = "registry.k8s.io/pause:3.9"  # tiny; whether pods ever run does not matter here
SPEC = ModelSpec(
    env=EnvRef(container="agent", name="OPENAI_MODEL"), tiers=["gpt-4o", "gpt-4o-mini"]
)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _record(namespace: str, *, episode: str | None = None, dry_run: bool = False) -> ActionRecord:
    # No AgentPolicy object exists in the cluster; its Events are still accepted.
    return ActionRecord(
        policy=PolicyRef(namespace, "e2e-policy", str(uuid.uuid4())),
        rule="low-success",
        episode=episode or _unique("episode"),
        reason="success rate below 80%",
        evidence="success_rate 0.5 < 0.8 over 15m",
        dry_run=dry_run,
    )


def _owned_record(executor: ActionExecutor, namespace: str, episode: str) -> ActionRecord:
    """A record whose policy exists when the cluster serves AgentPolicies: a Job is owned by
    its policy, and the garbage collector deletes a Job whose owner it can look up and not
    find (on a cluster without the CRD it cannot look it up, and keeps the Job)."""
    if not _served(executor.kube, "/apis/agentmedic.io/v1alpha1"):
        return _record(namespace, episode=episode)
    body = {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": _unique("owner"), "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "none"}},
            "rules": [
                {
                    "name": "low-success",
                    "all": [{"metric": "success_rate", "window": "5m", "op": "<", "value": 0.8}],
                    "actions": [{"scaleToZero": {}}],
                }
            ],
        },
    }
    created = _create(
        executor, f"/apis/agentmedic.io/v1alpha1/namespaces/{namespace}/agentpolicies", body
    )
    meta = created["metadata"]
    return ActionRecord(
        policy=PolicyRef(namespace, meta["name"], meta["uid"]),
        rule="low-success",
        episode=episode,
        reason="success rate below 80%",
        evidence="success_rate 0.5 < 0.8 over 15m",
    )


def _container(name: str, env: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "image": PAUSE, "env": [{"name": k, "value": v} for k, v in env.items()]}


def _workload(
    namespace: str, name: str, kind: str = "Deployment", replicas: int = 2
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    _container("proxy", {f"PROXY_{i}": str(i) for i in range(5)}),
                    _container(
                        "agent",
                        {"OPENAI_MODEL": "gpt-4o", **{f"SETTING_{i}": "v" for i in range(8)}},
                    ),
                    _container("shipper", {"OPENAI_MODEL": "keep-me", "SHIP": "1"}),
                ],
            },
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def _create(executor: ActionExecutor, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = executor.kube.request("create", "POST", path, body=body)
    return result


def _get(executor: ActionExecutor, path: str) -> dict[str, Any]:
    result: dict[str, Any] = executor.kube.request("get", "GET", path)
    return result


def _create_workload(executor: ActionExecutor, namespace: str, manifest: dict[str, Any]) -> None:
    plural = "deployments" if manifest["kind"] == "Deployment" else "statefulsets"
    _create(executor, f"/apis/apps/v1/namespaces/{namespace}/{plural}", manifest)


def _events_for(executor: ActionExecutor, namespace: str, name: str) -> list[dict[str, Any]]:
    """agentmedic's Events about ``name`` (a real cluster's controllers add their own)."""
    items = _get(executor, f"/api/v1/namespaces/{namespace}/events")["items"]
    return [
        e
        for e in items
        if e["involvedObject"]["name"] == name and e.get("reportingComponent") == COMPONENT
    ]


def test_scale_to_zero_and_restore_a_deployment(executor: ActionExecutor, namespace: str) -> None:
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name, replicas=2))
    ref = WorkloadRef("Deployment", namespace, name)
    record = _record(namespace)

    assert executor.scale_to_zero(ref, record).outcome is ExecutionOutcome.APPLIED
    assert executor.scale_to_zero(ref, record).outcome is ExecutionOutcome.UNCHANGED

    obj = executor.kube.get_workload("Deployment", namespace, name)
    assert obj["spec"]["replicas"] == 0
    disabled = parse_disabled(obj["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.replicas == 2
    reasons = {e["reason"] for e in _events_for(executor, namespace, name)}
    assert EventReason.SCALED_TO_ZERO in reasons

    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    obj = executor.kube.get_workload("Deployment", namespace, name)
    assert obj["spec"]["replicas"] == 2
    assert rec.DISABLED not in obj["metadata"]["annotations"]
    assert rec.LAST_RESTORE in obj["metadata"]["annotations"]


def test_scale_to_zero_and_restore_a_statefulset(executor: ActionExecutor, namespace: str) -> None:
    name = _unique("idx")
    _create_workload(executor, namespace, _workload(namespace, name, "StatefulSet", replicas=1))
    ref = WorkloadRef("StatefulSet", namespace, name)

    assert executor.scale_to_zero(ref, _record(namespace)).outcome is ExecutionOutcome.APPLIED
    assert executor.kube.get_workload("StatefulSet", namespace, name)["spec"]["replicas"] == 0
    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    assert executor.kube.get_workload("StatefulSet", namespace, name)["spec"]["replicas"] == 1


def test_switch_model_touches_one_env_var_and_restores_it(
    executor: ActionExecutor, namespace: str
) -> None:
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name))
    ref = WorkloadRef("Deployment", namespace, name)
    before = executor.kube.get_workload("Deployment", namespace, name)
    containers_before = before["spec"]["template"]["spec"]["containers"]

    result = executor.switch_model(ref, SPEC, "gpt-4o-mini", _record(namespace))

    assert result.outcome is ExecutionOutcome.APPLIED
    after = executor.kube.get_workload("Deployment", namespace, name)
    containers = after["spec"]["template"]["spec"]["containers"]
    assert [c["env"] for c in containers[::2]] == [c["env"] for c in containers_before[::2]]
    agent_env = {e["name"]: e["value"] for e in containers[1]["env"]}
    assert agent_env["OPENAI_MODEL"] == "gpt-4o-mini"
    assert len(containers[1]["env"]) == len(containers_before[1]["env"])

    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    restored = executor.kube.get_workload("Deployment", namespace, name)
    assert restored["spec"]["template"]["spec"]["containers"] == containers_before


def test_dry_run_changes_nothing(executor: ActionExecutor, namespace: str) -> None:
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name))
    ref = WorkloadRef("Deployment", namespace, name)
    before = executor.kube.get_workload("Deployment", namespace, name)

    result = executor.scale_to_zero(ref, _record(namespace, dry_run=True))

    assert result.outcome is ExecutionOutcome.DRY_RUN
    after = executor.kube.get_workload("Deployment", namespace, name)
    assert after["spec"]["replicas"] == before["spec"]["replicas"]
    assert rec.DISABLED not in (after["metadata"].get("annotations") or {})
    reasons = {e["reason"] for e in _events_for(executor, namespace, name)}
    assert reasons == {EventReason.WOULD_SCALE_TO_ZERO}


def test_a_prompt_job_from_a_cron_job_runs_once_per_episode(
    executor: ActionExecutor, namespace: str
) -> None:
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name))
    cron = _unique("optimizer")
    _create(
        executor,
        f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": cron, "namespace": namespace},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "opt", "image": PAUSE}],
                                # On a cluster whose pods do run (kwok completes a Job's pod
                                # at once) the Job must stay active for the refusal below:
                                # a node selector no node matches keeps its pod Pending.
                                "nodeSelector": {"agentmedic.io/e2e": "never-scheduled"},
                            }
                        }
                    }
                },
            },
        },
    )
    ref = WorkloadRef("Deployment", namespace, name)
    record = _owned_record(executor, namespace, _unique("episode"))
    action = PromptOptimizationAction(from_cron_job=cron, ttl_seconds_after_finished=300)
    evidence = {"latency_p95_ms": 12000}

    first = executor.start_prompt_job(ref, record.policy, action, record, evidence)
    again = executor.start_prompt_job(ref, record.policy, action, record, evidence)
    other = executor.start_prompt_job(
        ref, record.policy, action, _owned_record(executor, namespace, "other"), evidence
    )

    assert first.outcome is ExecutionOutcome.APPLIED
    assert again.outcome is ExecutionOutcome.UNCHANGED
    # The first is still active (its pod is Pending).
    assert other.outcome is ExecutionOutcome.REFUSED
    job = _get(executor, f"/apis/batch/v1/namespaces/{namespace}/jobs/{first.details['job']}")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["spec"]["ttlSecondsAfterFinished"] == 300
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["AGENTMEDIC_EVIDENCE"]) == evidence
    # The policy does not exist here, so the garbage collector may delete the Job at any time
    # now; what mattered is that the API server accepted the owner reference.
    assert job["metadata"]["ownerReferences"][0]["kind"] == "AgentPolicy"


def test_an_hpa_leaves_a_zero_replica_deployment_alone(
    executor: ActionExecutor, namespace: str
) -> None:
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name, replicas=2))
    _create(
        executor,
        f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 2,
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
        },
    )
    ref = WorkloadRef("Deployment", namespace, name)

    assert executor.scale_to_zero(ref, _record(namespace)).outcome is ExecutionOutcome.APPLIED

    def scaling_disabled() -> bool:
        hpa = _get(
            executor, f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
        )
        return any(
            c["type"] == "ScalingActive" and c.get("reason") == "ScalingDisabled"
            for c in (hpa.get("status") or {}).get("conditions") or []
        )

    eventually(scaling_disabled, timeout=120, what="the HPA to report ScalingDisabled")
    assert executor.kube.get_workload("Deployment", namespace, name)["spec"]["replicas"] == 0
    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    assert executor.kube.get_workload("Deployment", namespace, name)["spec"]["replicas"] == 2


def test_keda_scaled_agents_are_paused_and_unpaused(
    executor: ActionExecutor, namespace: str
) -> None:
    from agentmedic.actions import NotFound

    try:
        executor.kube.list_scaled_objects(namespace)
    except NotFound:
        if not uses_local_cluster():
            pytest.skip("KEDA's ScaledObject CRD is not installed in this cluster")
        # The local control plane gets a stand-in for KEDA's CRD: the test is about the
        # annotations agentmedic writes, which KEDA's controller would only read.
        install_keda_crd_stand_in(executor)
    name = _unique("bot")
    _create_workload(executor, namespace, _workload(namespace, name, replicas=1))
    _create(
        executor,
        f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"name": name},
                "minReplicaCount": 1,
                "triggers": [
                    {
                        "type": "cron",
                        "metadata": {
                            "timezone": "UTC",
                            "start": "0 0 * * *",
                            "end": "59 23 * * *",
                            "desiredReplicas": "1",
                        },
                    }
                ],
            },
        },
    )
    ref = WorkloadRef("Deployment", namespace, name)

    assert executor.scale_to_zero(ref, _record(namespace)).outcome is ExecutionOutcome.APPLIED
    so = executor.kube.get_scaled_object(namespace, name)
    assert so["metadata"]["annotations"][KEDA_PAUSED_REPLICAS] == "0"

    assert executor.restore(ref, by="e2e").outcome is ExecutionOutcome.APPLIED
    so = executor.kube.get_scaled_object(namespace, name)
    assert KEDA_PAUSED_REPLICAS not in (so["metadata"].get("annotations") or {})
