"""scaleToZero and its restore on both API servers: record, idempotency, races, HPA, KEDA."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmedic.actions import (
    KEDA_PAUSED_REPLICAS,
    ActionExecutor,
    Conflict,
    EventReason,
    ExecutionOutcome,
    Transient,
    parse_disabled,
    restore_requested,
)
from agentmedic.actions import record as rec
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import (
    Sleeps,
    desired_state,
    event_reasons,
    events,
    fetch,
    get,
    make_executor,
    own_annotations,
    policy_uid,
    record,
    ref,
    workload,
    writes,
)
from tests.integration.kube_servers import KubeServer

# The shared fixtures, bound here so that this module gets its own emulator.
api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps


def test_scale_to_zero_sets_zero_replicas_and_records_the_previous_count(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=3))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    obj = get(api, ns)
    assert obj["spec"]["replicas"] == 0
    annotations = obj["metadata"]["annotations"]
    disabled = json.loads(annotations[rec.DISABLED])
    assert disabled["replicas"] == 3
    assert disabled["policy"] == f"{ns}/support-policy"
    assert disabled["policyUid"] == policy_uid(ns)
    assert disabled["rule"] == "low-success"
    assert disabled["episode"] == record(ns).episode
    assert disabled["at"] == "2025-03-14T09:26:53Z"
    assert disabled["keda"] is None
    assert annotations[rec.POLICY] == f"{ns}/support-policy"
    assert annotations[rec.RULE] == "low-success"
    assert "success_rate 0.62 < 0.8" in annotations[rec.REASON]
    assert annotations[rec.ACTED_AT] == "2025-03-14T09:26:53Z"
    # the labels and the template were not touched
    assert obj["metadata"]["labels"]["app"] == "bot"
    assert obj["spec"]["template"]["spec"]["containers"][0]["name"] == "agent"


def test_scale_to_zero_writes_an_event_on_the_workload_and_on_the_policy(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    executor.scale_to_zero(ref(ns), record(ns))

    by_kind = {e["involvedObject"]["kind"]: e for e in events(api, ns)}
    assert set(by_kind) == {"Deployment", "AgentPolicy"}
    for event in by_kind.values():
        assert event["reason"] == EventReason.SCALED_TO_ZERO
        assert event["type"] == "Normal"
        assert "from 3 to 0 replicas" in event["message"]
        assert f"agentmedic restore deployment/bot -n {ns}" in event["message"]
    assert by_kind["AgentPolicy"]["involvedObject"]["uid"] == policy_uid(ns)
    assert by_kind["Deployment"]["involvedObject"]["name"] == "bot"


def test_repeating_the_same_scale_decision_writes_nothing(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.scale_to_zero(ref(ns), record(ns))
    before = desired_state(api, ns)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    again = executor.scale_to_zero(ref(ns), record(ns))

    assert again.outcome is ExecutionOutcome.UNCHANGED
    assert desired_state(api, ns) == before
    if isinstance(api, ApiEmulator):  # where requests are recorded: not even a no-op write
        assert writes(api, except_events=False) == []


def test_a_second_episode_keeps_the_first_recorded_replica_count(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=4))
    executor.scale_to_zero(ref(ns), record(ns))

    other = executor.scale_to_zero(ref(ns), record(ns, rule="budget.hard", episode="e2"))

    assert other.outcome is ExecutionOutcome.UNCHANGED
    disabled = parse_disabled(get(api, ns)["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.replicas == 4


def test_a_workload_already_at_zero_is_not_recorded(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=0))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.UNCHANGED
    assert rec.DISABLED not in (get(api, ns)["metadata"].get("annotations") or {})


def test_statefulsets_are_scaled_and_restored_like_deployments(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, "indexer", kind="StatefulSet", replicas=2))
    target = ref(ns, "indexer", "StatefulSet")

    assert executor.scale_to_zero(target, record(ns)).outcome is ExecutionOutcome.APPLIED
    assert get(api, ns, "indexer", "StatefulSet")["spec"]["replicas"] == 0

    assert executor.restore(target, by="test").outcome is ExecutionOutcome.APPLIED
    obj = get(api, ns, "indexer", "StatefulSet")
    assert obj["spec"]["replicas"] == 2
    assert rec.DISABLED not in obj["metadata"]["annotations"]


def test_restore_after_an_operator_restart_uses_only_the_annotations(
    api: KubeServer, ns: str
) -> None:
    api.create(workload(ns, replicas=5))
    first = make_executor(api)
    first.scale_to_zero(ref(ns), record(ns))
    first.kube.close()

    restarted = make_executor(api)  # new client, no memory: only the object carries state
    result = restarted.restore(ref(ns), by="auto-recovery")
    restarted.kube.close()

    assert result.outcome is ExecutionOutcome.APPLIED
    obj = get(api, ns)
    assert obj["spec"]["replicas"] == 5
    annotations = obj["metadata"]["annotations"]
    assert not {rec.DISABLED, rec.POLICY, rec.RULE, rec.REASON, rec.EPISODE} & set(annotations)
    assert annotations[rec.LAST_RESTORE].startswith("2025-03-14T09:26:53Z by auto-recovery")
    assert "replicas 0 → 5" in annotations[rec.LAST_RESTORE]
    assert "Restored" in event_reasons(api, ns, "AgentPolicy")


def test_restore_without_a_record_says_so_and_writes_nothing(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    before = desired_state(api, ns)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    result = executor.restore(ref(ns), by="cli:alice")

    assert result.outcome is ExecutionOutcome.UNCHANGED
    assert "nothing to restore" in result.message
    assert desired_state(api, ns) == before
    if isinstance(api, ApiEmulator):
        assert writes(api, except_events=False) == []


def test_the_restore_annotation_is_honoured_and_removed(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=2))
    executor.scale_to_zero(ref(ns), record(ns))
    api.patch(
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        {"metadata": {"annotations": {rec.RESTORE_REQUEST: "true"}}},
    )
    assert restore_requested(get(api, ns))

    executor.restore(ref(ns), by="annotation")

    obj = get(api, ns)
    assert obj["spec"]["replicas"] == 2
    assert not restore_requested(obj)
    assert rec.RESTORE_REQUEST not in obj["metadata"]["annotations"]


def test_a_restore_request_without_a_record_is_cleared(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, annotations={rec.RESTORE_REQUEST: "true", "team": "support"}))

    result = executor.restore(ref(ns), by="annotation")

    assert result.outcome is ExecutionOutcome.UNCHANGED
    assert own_annotations(get(api, ns)) == {"team": "support"}


def test_restore_leaves_a_replica_count_someone_changed_since(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=3))
    executor.scale_to_zero(ref(ns), record(ns))
    api.patch("apps/v1", "Deployment", ns, "bot", {"spec": {"replicas": 1}})  # a person

    result = executor.restore(ref(ns), by="test")

    assert get(api, ns)["spec"]["replicas"] == 1
    assert "replicas left at 1" in result.message
    assert rec.DISABLED not in get(api, ns)["metadata"]["annotations"]


def test_dry_run_writes_only_would_events(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    before = desired_state(api, ns, with_events=False)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    result = executor.scale_to_zero(ref(ns), record(ns, dry_run=True))

    assert result.outcome is ExecutionOutcome.DRY_RUN
    assert desired_state(api, ns, with_events=False) == before
    if isinstance(api, ApiEmulator):
        assert writes(api) == []
        assert all(r.path.endswith("/events") for r in api.write_requests())
    assert events(api, ns)
    for event in events(api, ns):
        assert event["reason"] == EventReason.WOULD_SCALE_TO_ZERO
        assert event["message"].startswith("would ")


def test_a_vanished_workload_ends_in_not_found_and_a_warning_event(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    result = executor.scale_to_zero(ref(ns, "ghost"), record(ns))

    assert result.outcome is ExecutionOutcome.NOT_FOUND
    assert "ghost" in result.message
    warnings = [e for e in events(api, ns) if e["type"] == "Warning"]
    assert {e["reason"] for e in warnings} == {EventReason.WORKLOAD_NOT_FOUND}
    assert {e["involvedObject"]["kind"] for e in warnings} == {"Deployment", "AgentPolicy"}


def test_restore_of_a_vanished_workload_is_not_found(ns: str, executor: ActionExecutor) -> None:
    assert executor.restore(ref(ns, "ghost"), by="test").outcome is ExecutionOutcome.NOT_FOUND


@pytest.mark.emulator_only("injects 409/500/503 answers and reads the request history")
@pytest.mark.parametrize("status", [409, 500, 503])
def test_an_injected_failure_on_patch_is_retried_and_succeeds(
    api: ApiEmulator, ns: str, executor: ActionExecutor, sleeps: Sleeps, status: int
) -> None:
    api.create(workload(ns, replicas=3))
    api.inject(method="PATCH", path_regex=f"/namespaces/{ns}/deployments/bot$", status=status)

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert get(api, ns)["spec"]["replicas"] == 0
    patches = [r for r in api.requests if r.method == "PATCH" and r.path.endswith("/bot")]
    assert [r.status for r in patches] == [status, 200]
    if status >= 500:
        assert len(sleeps) == 1  # one backoff pause before the retry


@pytest.mark.emulator_only("injects a 429 answer")
def test_throttling_is_retried_after_the_servers_retry_after(
    api: ApiEmulator, ns: str, executor: ActionExecutor, sleeps: Sleeps
) -> None:
    api.create(workload(ns))
    api.inject(method="GET", path_regex=f"/namespaces/{ns}/deployments/bot$", status=429)

    assert executor.scale_to_zero(ref(ns), record(ns)).outcome is ExecutionOutcome.APPLIED
    assert sleeps == [1.0]  # the emulator sends Retry-After: 1


@pytest.mark.emulator_only("injects 500 answers")
def test_persistent_server_errors_raise_transient_after_bounded_retries(
    api: ApiEmulator, ns: str, executor: ActionExecutor, sleeps: Sleeps
) -> None:
    api.create(workload(ns))
    api.inject(method="GET", path_regex=f"/namespaces/{ns}/deployments/bot$", status=500, times=10)

    with pytest.raises(Transient, match="get Deployment"):
        executor.scale_to_zero(ref(ns), record(ns))
    assert len(sleeps) == executor.kube.retry.attempts - 1
    assert all(0 <= s <= executor.kube.retry.cap for s in sleeps)


def test_a_concurrent_replica_change_is_detected_and_the_new_count_recorded(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=3))
    original_get = executor.kube.get_workload
    calls = {"n": 0}

    def get_then_someone_scales(kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj = original_get(kind, namespace, name)
        calls["n"] += 1
        if calls["n"] == 1:  # between our read and our patch, an HPA scales to 6
            api.patch("apps/v1", "Deployment", ns, "bot", {"spec": {"replicas": 6}})
        return obj

    executor.kube.get_workload = get_then_someone_scales  # type: ignore[method-assign]

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert calls["n"] >= 2  # the stale patch's `test` failed instead of overwriting: read again
    if isinstance(api, ApiEmulator):
        failed = [r for r in api.requests if r.method == "PATCH" and r.status == 422]
        assert len(failed) == 1
    disabled = parse_disabled(get(api, ns)["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.replicas == 6


@pytest.mark.emulator_only("injects 409 answers")
def test_a_workload_that_keeps_changing_gives_up_with_conflict(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.inject(
        method="PATCH", path_regex=f"/namespaces/{ns}/deployments/bot$", status=409, times=50
    )

    with pytest.raises(Conflict, match="kept changing"):
        executor.scale_to_zero(ref(ns), record(ns))
    assert get(api, ns)["spec"]["replicas"] == 3


# --------------------------------------------------------------------------- HPA


def _hpa(namespace: str, min_replicas: int) -> dict[str, Any]:
    # An External metric: what a real server requires of an HPA that may scale to zero.
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bot", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bot"},
            "minReplicas": min_replicas,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "agent_queue_depth"},
                        "target": {"type": "AverageValue", "averageValue": "5"},
                    },
                }
            ],
        },
    }


def test_an_hpa_targeting_the_agent_is_recorded_and_left_alone(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(_hpa(ns, 2))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert "warnings" not in result.details
    disabled = parse_disabled(get(api, ns)["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.hpas == ("bot",)
    assert (
        fetch(api, "autoscaling/v2", "HorizontalPodAutoscaler", ns, "bot")["spec"]["minReplicas"]
        == 2
    )


def test_an_hpa_with_min_replicas_zero_is_warned_about(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(_hpa(ns, 0))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert "minReplicas 0" in result.details["warnings"][0]
    assert "minReplicas 0" in result.message


# --------------------------------------------------------------------------- KEDA


def _scaled_object(namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "bot-scaler", "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"name": "bot"},
            "minReplicaCount": 1,
            "triggers": [{"type": "prometheus", "metadata": {"query": "x", "threshold": "5"}}],
        },
    }


def test_keda_scaled_agents_are_paused_and_unpaused_on_restore(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=4))
    api.create(_scaled_object(ns))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert result.details["scaledObject"] == "bot-scaler"
    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert so["metadata"]["annotations"][KEDA_PAUSED_REPLICAS] == "0"
    assert get(api, ns)["spec"]["replicas"] == 0
    disabled = parse_disabled(get(api, ns)["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.keda_scaled_object == "bot-scaler"
    assert disabled.keda_previous_paused_replicas is None

    executor.restore(ref(ns), by="test")

    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert KEDA_PAUSED_REPLICAS not in (so["metadata"].get("annotations") or {})
    assert get(api, ns)["spec"]["replicas"] == 4


def test_a_previous_keda_pause_value_is_put_back(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=2))
    api.create(_scaled_object(ns, {KEDA_PAUSED_REPLICAS: "2", "owner": "team-a"}))

    executor.scale_to_zero(ref(ns), record(ns))
    executor.restore(ref(ns), by="test")

    annotations = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")["metadata"][
        "annotations"
    ]
    assert annotations == {KEDA_PAUSED_REPLICAS: "2", "owner": "team-a"}


@pytest.mark.emulator_only("injects 500 answers")
def test_an_interrupted_keda_pause_is_completed_by_the_repeated_decision(
    api: ApiEmulator, ns: str, executor: ActionExecutor, sleeps: Sleeps
) -> None:
    api.create(workload(ns))
    api.create(_scaled_object(ns))
    api.inject(method="PATCH", path_regex="/scaledobjects/bot-scaler$", status=500, times=10)

    with pytest.raises(Transient, match="patch ScaledObject"):
        executor.scale_to_zero(ref(ns), record(ns))
    api.clear_faults()
    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert KEDA_PAUSED_REPLICAS not in (so["metadata"].get("annotations") or {})

    again = executor.scale_to_zero(ref(ns), record(ns))

    assert again.outcome is ExecutionOutcome.UNCHANGED
    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert so["metadata"]["annotations"][KEDA_PAUSED_REPLICAS] == "0"


def test_an_idle_keda_agent_at_zero_is_still_paused(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=0))  # KEDA scaled it to zero while idle
    api.create(_scaled_object(ns))

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert so["metadata"]["annotations"][KEDA_PAUSED_REPLICAS] == "0"
    disabled = parse_disabled(get(api, ns)["metadata"]["annotations"])
    assert disabled is not None
    assert disabled.replicas == 0

    executor.restore(ref(ns), by="test")

    so = fetch(api, "keda.sh/v1alpha1", "ScaledObject", ns, "bot-scaler")
    assert KEDA_PAUSED_REPLICAS not in (so["metadata"].get("annotations") or {})


@pytest.mark.emulator_only("injects 404 and 403 answers")
def test_a_cluster_without_keda_or_hpa_apis_is_scaled_all_the_same(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    # What a cluster without KEDA's CRD (404) and a restricted HPA list (403) answers
    api.inject(method="GET", path_regex=f"/namespaces/{ns}/scaledobjects$", status=404)
    api.inject(method="GET", path_regex=f"/namespaces/{ns}/horizontalpodautoscalers$", status=403)

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert "scaledObject" not in result.details
    assert get(api, ns)["spec"]["replicas"] == 0
