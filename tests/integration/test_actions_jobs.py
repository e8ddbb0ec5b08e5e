"""promptOptimization Jobs on both API servers: shape, idempotency, one per agent."""

from __future__ import annotations

import json
from typing import Any

from agentmedic.actions import ActionExecutor, EventReason, ExecutionOutcome, job_name
from agentmedic.actions.jobs import INSTANTIATE_ANNOTATION
from agentmedic.actions.record import episode_hash
from agentmedic.api.types import PromptOptimizationAction
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import (
    events,
    fetch,
    finish_job,
    policy_ref,
    policy_uid,
    record,
    ref,
    workload,
)
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps

EVIDENCE = {"latency_p95_ms": 12_400.0, "window": "10m", "threshold": 8000}


def _cron_job(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "prompt-optimizer", "namespace": namespace},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "metadata": {
                    "labels": {"app": "prompt-optimizer"},
                    "annotations": {"team": "ml-platform"},
                },
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "metadata": {"labels": {"app": "prompt-optimizer"}},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [
                                {
                                    "name": "optimizer",
                                    "image": "ghcr.io/acme/optimizer:2",
                                    "env": [{"name": "MODE", "value": "nightly"}],
                                },
                                {"name": "uploader", "image": "ghcr.io/acme/uploader:1"},
                            ],
                        },
                    },
                },
            },
        },
    }


FROM_CRON = PromptOptimizationAction(
    from_cron_job="prompt-optimizer", ttl_seconds_after_finished=3600
)
INLINE = PromptOptimizationAction(
    job_template={
        "metadata": {"labels": {"kind": "inline"}},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "opt", "image": "ghcr.io/acme/optimizer:2"}]}
            }
        },
    }
)

# A Job that stays unfinished on both servers: suspended, the real job controller starts no
# pod (kwok would complete one within a second); the emulator runs nothing anyway.
SUSPENDED = PromptOptimizationAction(
    job_template={
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"containers": [{"name": "opt", "image": "ghcr.io/acme/optimizer:2"}]}
            },
        }
    }
)


def _jobs(api: KubeServer, namespace: str) -> list[dict[str, Any]]:
    return api.list("batch/v1", "Job", namespace)


def test_a_job_from_a_cron_job_has_the_kubectl_create_job_from_shape(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, labels={"agentmedic.io/agent": "support-bot"}))
    api.create(_cron_job(ns))
    rec = record(ns, rule="latency-spike")

    result = executor.start_prompt_job(ref(ns), policy_ref(ns), FROM_CRON, rec, EVIDENCE)

    assert result.outcome is ExecutionOutcome.APPLIED
    [job] = _jobs(api, ns)
    meta = job["metadata"]
    assert meta["name"] == job_name("support-bot", rec.episode) == result.details["job"]
    assert len(meta["name"]) <= 63
    assert meta["annotations"] == {
        INSTANTIATE_ANNOTATION: "manual",
        "team": "ml-platform",
        "agentmedic.io/rule": "latency-spike",
        "agentmedic.io/episode": rec.episode,
    }
    assert meta["labels"] == {
        "app": "prompt-optimizer",
        "agentmedic.io/policy": "support-policy",
        "agentmedic.io/agent": "support-bot",
        "agentmedic.io/episode-hash": episode_hash(rec.episode),
    }
    [owner] = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "name": "support-policy",
        "uid": policy_uid(ns),
        "controller": True,
    }
    spec = job["spec"]
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["backoffLimit"] == 1
    pod = spec["template"]
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    assert pod["metadata"]["labels"]["agentmedic.io/agent"] == "support-bot"
    for c in pod["spec"]["containers"]:
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["AGENTMEDIC_AGENT"] == "support-bot"
        assert env["AGENTMEDIC_RULE"] == "latency-spike"
        assert env["AGENTMEDIC_NAMESPACE"] == ns
        assert json.loads(env["AGENTMEDIC_EVIDENCE"]) == EVIDENCE
    optimizer_env = pod["spec"]["containers"][0]["env"]
    assert optimizer_env[0] == {"name": "MODE", "value": "nightly"}
    # the CronJob itself is untouched
    cron = fetch(api, "batch/v1", "CronJob", ns, "prompt-optimizer")
    assert "AGENTMEDIC_AGENT" not in json.dumps(cron)


def test_an_inline_template_gets_never_as_restart_policy(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    result = executor.start_prompt_job(ref(ns), policy_ref(ns), INLINE, record(ns), EVIDENCE)

    assert result.outcome is ExecutionOutcome.APPLIED
    [job] = _jobs(api, ns)
    assert INSTANTIATE_ANNOTATION not in (job["metadata"].get("annotations") or {})
    assert job["metadata"]["labels"]["kind"] == "inline"
    assert job["metadata"]["labels"]["agentmedic.io/agent"] == "bot"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86_400
    assert {e["reason"] for e in events(api, ns)} == {EventReason.PROMPT_JOB_STARTED}


def test_repeating_the_same_episode_creates_no_second_job(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.start_prompt_job(ref(ns), policy_ref(ns), INLINE, record(ns), EVIDENCE)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    again = executor.start_prompt_job(ref(ns), policy_ref(ns), INLINE, record(ns), EVIDENCE)

    assert again.outcome is ExecutionOutcome.UNCHANGED
    assert len(_jobs(api, ns)) == 1
    if isinstance(api, ApiEmulator):  # not even an attempt to create
        assert [r for r in api.write_requests() if r.path.endswith("/jobs")] == []


def test_already_exists_on_create_counts_as_done(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    # A Job of this episode that the agent label does not find (a restart raced a retry)
    name = job_name("bot", record(ns).episode)
    api.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "a"}]}
                },
            },
        }
    )

    result = executor.start_prompt_job(ref(ns), policy_ref(ns), INLINE, record(ns), EVIDENCE)

    assert result.outcome is ExecutionOutcome.UNCHANGED
    assert [j["metadata"]["name"] for j in _jobs(api, ns)] == [name]
    if isinstance(api, ApiEmulator):
        creates = [r for r in api.requests if r.method == "POST" and r.path.endswith("/jobs")]
        assert [r.status for r in creates] == [409]


def test_a_running_job_of_the_agent_refuses_a_second_episode(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    first = executor.start_prompt_job(
        ref(ns), policy_ref(ns), SUSPENDED, record(ns, episode="e1"), EVIDENCE
    )

    second = executor.start_prompt_job(
        ref(ns), policy_ref(ns), SUSPENDED, record(ns, episode="e2"), EVIDENCE
    )

    assert second.outcome is ExecutionOutcome.REFUSED
    assert first.details["job"] in second.message
    assert "at most one" in second.message
    assert len(_jobs(api, ns)) == 1
    refused = [e for e in events(api, ns) if e["reason"] == EventReason.REFUSED]
    assert {e["type"] for e in refused} == {"Warning"}
    assert {e["involvedObject"]["kind"] for e in refused} == {"Deployment", "AgentPolicy"}


def test_a_finished_job_lets_the_next_episode_start(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    first = executor.start_prompt_job(
        ref(ns), policy_ref(ns), INLINE, record(ns, episode="e1"), EVIDENCE
    )
    finish_job(api, ns, first.details["job"])

    second = executor.start_prompt_job(
        ref(ns), policy_ref(ns), INLINE, record(ns, episode="e2"), EVIDENCE
    )

    assert second.outcome is ExecutionOutcome.APPLIED
    assert len(_jobs(api, ns)) == 2


def test_jobs_of_other_agents_do_not_block(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, "bot-a"))
    api.create(workload(ns, "bot-b"))

    a = executor.start_prompt_job(ref(ns, "bot-a"), policy_ref(ns), INLINE, record(ns), EVIDENCE)
    b = executor.start_prompt_job(ref(ns, "bot-b"), policy_ref(ns), INLINE, record(ns), EVIDENCE)

    assert (a.outcome, b.outcome) == (ExecutionOutcome.APPLIED, ExecutionOutcome.APPLIED)
    assert a.details["job"] != b.details["job"]


def test_a_missing_cron_job_is_refused_with_the_field_to_fix(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    result = executor.start_prompt_job(ref(ns), policy_ref(ns), FROM_CRON, record(ns), EVIDENCE)

    assert result.outcome is ExecutionOutcome.REFUSED
    assert "promptOptimization.fromCronJob" in result.message
    assert _jobs(api, ns) == []


def test_dry_run_creates_no_job_and_writes_would_events(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(_cron_job(ns))

    result = executor.start_prompt_job(
        ref(ns), policy_ref(ns), FROM_CRON, record(ns, dry_run=True), EVIDENCE
    )

    assert result.outcome is ExecutionOutcome.DRY_RUN
    assert _jobs(api, ns) == []
    assert {e["reason"] for e in events(api, ns)} == {EventReason.WOULD_START_PROMPT_JOB}
    assert all(e["message"].startswith("would ") for e in events(api, ns))


def test_a_job_for_a_vanished_workload_is_not_found(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    result = executor.start_prompt_job(
        ref(ns, "ghost"), policy_ref(ns), INLINE, record(ns), EVIDENCE
    )

    assert result.outcome is ExecutionOutcome.NOT_FOUND
    assert _jobs(api, ns) == []
    assert {e["reason"] for e in events(api, ns)} == {EventReason.WORKLOAD_NOT_FOUND}


def test_an_invalid_template_fails_with_the_api_message(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    broken = PromptOptimizationAction(job_template={"spec": {"template": {"spec": {}}}})
    if isinstance(api, ApiEmulator):  # it does not validate pod templates: play the answer
        api.inject(
            method="POST",
            path_regex=f"/namespaces/{ns}/jobs$",
            status=422,
            body={
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Invalid",
                "code": 422,
                "message": (
                    'Job.batch "x" is invalid: spec.template.spec.containers: Required value'
                ),
            },
        )

    result = executor.start_prompt_job(ref(ns), policy_ref(ns), broken, record(ns), EVIDENCE)

    assert result.outcome is ExecutionOutcome.FAILED
    assert "spec.template.spec.containers: Required value" in result.message
    assert {e["reason"] for e in events(api, ns)} == {EventReason.FAILED}
