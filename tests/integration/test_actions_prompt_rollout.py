"""A prompt-optimization Job's outcome on both API servers: the candidate that
``agentmedic optimize-prompt`` wrote is rolled out once and undone by ``agentmedic
restore``; a rejected candidate or a Job without a result is reported once and changes
nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmedic.actions import ActionExecutor, ActionKind, ActionRequest, ExecutionOutcome
from agentmedic.actions.probation import parse_probation
from agentmedic.actions.prompt_record import (
    PROMPT,
    PROMPT_JOB,
    PROMPT_TEMPLATE_ANNOTATION,
    parse_prompt,
)
from agentmedic.actions.prompt_rollout import settle_prompt_job
from agentmedic.actions.restore import restore
from agentmedic.api.prompt import PromptSpec
from agentmedic.api.types import PromptOptimizationAction
from agentmedic.cli.main import main
from agentmedic.kube import Kube
from agentmedic.optimize import ModelSettings, OptimizeSettings, optimize
from agentmedic_sandbox.model_server import ModelServer, Reply
from tests.integration import actions_support as support
from tests.integration.actions_support import (
    event_reasons,
    fetch,
    finish_job,
    get,
    policy_ref,
    record,
    ref,
    workload,
)
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps

PROMPT_SPEC = PromptSpec.model_validate(
    {"configMapKey": {"name": "{{workload}}-prompt", "key": "system"}}
)
ORIGINAL = (
    "You help {customer} with orders.\nExample: where is my parcel?\nExample: a refund.\n"
    "Be brief.\nBe brief.\nNever share card numbers. [required]\n"
)
JOB = PromptOptimizationAction(
    job_template={
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"containers": [{"name": "optimizer", "image": "agentmedic:test"}]}
            },
        }
    }
)


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def _setup(api: KubeServer, namespace: str) -> None:
    api.create(workload(namespace))
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bot-prompt", "namespace": namespace},
            "data": {"system": ORIGINAL},
        }
    )


def _start_job(
    api: KubeServer,
    executor: ActionExecutor,
    namespace: str,
    episode: str,
    baseline: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    rec = dataclasses.replace(
        record(namespace, rule="latency-spike", episode=episode), baseline=baseline
    )
    result = executor.start_prompt_job(
        ref(namespace), policy_ref(namespace), JOB, rec, {"p95": 9000}, PROMPT_SPEC
    )
    assert result.outcome is ExecutionOutcome.APPLIED, result.message
    return fetch(api, "batch/v1", "Job", namespace, result.details["job"])


def _run_job(
    api: KubeServer,
    executor: ActionExecutor,
    namespace: str,
    model: ModelServer,
    episode: str,
    baseline: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """Start the Job, do what its container does (optimize-prompt, with the env the Job
    carries), let it complete; the Job as stored."""
    job = _start_job(api, executor, namespace, episode, baseline)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = OptimizeSettings(
        namespace=env["AGENTMEDIC_NAMESPACE"],
        config_map=env["AGENTMEDIC_PROMPT_CONFIGMAP"],
        key=env["AGENTMEDIC_PROMPT_KEY"],
        job=env["AGENTMEDIC_JOB"],
        model=ModelSettings(base_url=model.base_url, model="m", api_key="sk-x"),
        termination_log=None,
    )
    kube = Kube.from_configuration(api.client_configuration())
    try:
        optimize(kube, settings, sleep=lambda s: None)
    finally:
        kube.close()
    finish_job(api, namespace, job["metadata"]["name"])
    return fetch(api, "batch/v1", "Job", namespace, job["metadata"]["name"])


def _data(api: KubeServer, namespace: str) -> dict[str, str]:
    return dict(fetch(api, "v1", "ConfigMap", namespace, "bot-prompt")["data"])


def _settle(executor: ActionExecutor, namespace: str, job: dict[str, Any]) -> Any:
    return settle_prompt_job(
        executor.context, ref(namespace), policy_ref(namespace), PROMPT_SPEC, job
    )


def test_a_succeeded_job_is_rolled_out_once_and_restore_undoes_it(
    api: KubeServer,
    ns: str,
    executor: ActionExecutor,
    model: ModelServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _setup(api, ns)
    job = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t1")

    result = _settle(executor, ns, job)

    assert result.outcome is ExecutionOutcome.APPLIED, result.message
    data = _data(api, ns)
    assert data["system"] == data["system.v1"] != ORIGINAL
    assert data["system.before-v1"] == ORIGINAL
    obj = get(api, ns)
    annotations = obj["metadata"]["annotations"]
    rolled = parse_prompt(annotations)
    assert rolled is not None
    assert (rolled.version, rolled.previous, rolled.job) == (
        "system.v1",
        "system.before-v1",
        job["metadata"]["name"],
    )
    assert json.loads(annotations[PROMPT_JOB])["status"] == "Succeeded"
    assert annotations["agentmedic.io/episode"] == "support-policy/bot/latency-spike/t1"
    template = obj["spec"]["template"]["metadata"]["annotations"]
    assert template[PROMPT_TEMPLATE_ANNOTATION] == "system.v1"
    assert "PromptRolledOut" in event_reasons(api, ns, "Deployment")
    assert "agentmedic restore deployment/bot" in result.message

    # Once: the same Job again changes nothing.
    assert _settle(executor, ns, job) is None

    # `agentmedic restore` puts the text back and clears the record, keeping the Job mark.
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    code = main(["restore", "deployment/bot", "-n", ns, "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "prompt → the text of system.before-v1" in out
    data = _data(api, ns)
    assert data["system"] == ORIGINAL
    obj = get(api, ns)
    annotations = obj["metadata"]["annotations"]
    assert PROMPT not in annotations
    assert PROMPT_JOB in annotations, "the Job stays handled: it is not rolled out again"
    template = obj["spec"]["template"]["metadata"]["annotations"]
    assert template[PROMPT_TEMPLATE_ANNOTATION] == "system.before-v1"
    assert _settle(executor, ns, job) is None


def test_with_verify_the_rolled_out_prompt_goes_on_probation_against_the_jobs_baseline(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    """The baseline measured when the episode started the Job rides on the Job
    (agentmedic.io/baseline) and becomes the probation record of the prompt it produced,
    written in the same patch as the rollout record: the engine judges the new prompt."""
    _setup(api, ns)
    baseline: dict[str, float | None] = {
        "success_rate": 0.97,
        "error_rate": 0.03,
        "latency_p95_ms": 9200.0,
        "tokens_per_execution": 1800.0,
        "quality_score": None,
        "executions": 240.0,
    }
    job = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t9", baseline)
    assert json.loads(job["metadata"]["annotations"]["agentmedic.io/baseline"]) == baseline

    result = _settle(executor, ns, job)

    assert result.outcome is ExecutionOutcome.APPLIED, result.message
    annotations = get(api, ns)["metadata"]["annotations"]
    on_probation = parse_probation(annotations)
    assert on_probation is not None
    assert (on_probation.kind, on_probation.previous, on_probation.new) == (
        "prompt",
        "system.before-v1",
        "system.v1",
    )
    assert on_probation.baseline["latency_p95_ms"] == 9200.0
    assert on_probation.baseline["executions"] == 240.0


def test_a_prompt_that_regressed_is_reverted_and_its_rejection_kept(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    """The engine's revert of a regressed prompt (a restore of the prompt alone, marked as
    a revert) puts the text the rollout replaced back and keeps the probation record,
    marked reverted; the model and the replicas are left as they are."""
    _setup(api, ns)
    episode = "support-policy/bot/latency-spike/t7"
    baseline: dict[str, float | None] = {"quality_score": 0.9, "executions": 200.0}
    job = _run_job(api, executor, ns, model, episode, baseline)
    assert _settle(executor, ns, job).outcome is ExecutionOutcome.APPLIED
    assert _data(api, ns)["system"] != ORIGINAL
    replicas = get(api, ns)["spec"]["replicas"]

    revert = ActionRequest(
        kind=ActionKind.RESTORE,
        workload=ref(ns),
        record=record(ns, rule="latency-spike", episode=episode),
        agent=f"{ns}/bot",
        restore_replicas=False,
        restore_model=False,
        restore_prompt=True,
        restored_by="probation (the change regressed)",
        reverts=True,
    )
    result = executor.execute(revert)

    assert result.outcome is ExecutionOutcome.APPLIED, result.message
    assert _data(api, ns)["system"] == ORIGINAL
    obj = get(api, ns)
    assert obj["spec"]["replicas"] == replicas
    annotations = obj["metadata"]["annotations"]
    assert PROMPT not in annotations
    kept = parse_probation(annotations)
    assert kept is not None
    assert kept.reverted_at is not None
    assert (kept.kind, kept.new) == ("prompt", "system.v1")


def test_without_verify_a_rolled_out_prompt_is_not_on_probation(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    _setup(api, ns)
    job = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t8")
    assert "agentmedic.io/baseline" not in job["metadata"]["annotations"]
    assert _settle(executor, ns, job).outcome is ExecutionOutcome.APPLIED
    assert parse_probation(get(api, ns)["metadata"]["annotations"]) is None


def test_a_second_rollout_keeps_the_first_text_for_restore(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    _setup(api, ns)
    first = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t1")
    assert _settle(executor, ns, first).outcome is ExecutionOutcome.APPLIED
    # The next episode's optimizer shortens the live (already shortened) prompt again.
    model.script.append(Reply(answer="You help {customer}.\nNever share card numbers. [required]"))
    second = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t2")
    assert _settle(executor, ns, second).outcome is ExecutionOutcome.APPLIED

    data = _data(api, ns)
    assert data["system"] == data["system.v2"]
    assert "system.before-v2" not in data
    rolled = parse_prompt(get(api, ns)["metadata"]["annotations"])
    assert rolled is not None
    assert (rolled.version, rolled.previous) == ("system.v2", "system.before-v1")

    restored = restore(executor.context, ref(ns), "test")
    assert restored.outcome is ExecutionOutcome.APPLIED, restored.message
    assert _data(api, ns)["system"] == ORIGINAL


def test_restore_leaves_a_prompt_someone_changed_since(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    _setup(api, ns)
    job = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t1")
    assert _settle(executor, ns, job).outcome is ExecutionOutcome.APPLIED
    api.patch("v1", "ConfigMap", ns, "bot-prompt", {"data": {"system": "edited by a person"}})

    restored = restore(executor.context, ref(ns), "test")

    assert "prompt left as it is" in restored.message
    assert _data(api, ns)["system"] == "edited by a person"
    assert PROMPT not in get(api, ns)["metadata"]["annotations"]


def test_a_rejected_candidate_is_reported_once_and_changes_nothing(
    api: KubeServer, ns: str, executor: ActionExecutor, model: ModelServer
) -> None:
    _setup(api, ns)
    model.script.append(Reply(answer="Help with orders. Never share card numbers. [required]"))
    job = _run_job(api, executor, ns, model, "support-policy/bot/latency-spike/t1")

    result = _settle(executor, ns, job)

    assert result.outcome is ExecutionOutcome.FAILED
    assert "Rejected" in result.message
    assert "{customer}" in result.message
    assert _data(api, ns) == {"system": ORIGINAL}
    annotations = get(api, ns)["metadata"]["annotations"]
    assert PROMPT not in annotations
    assert json.loads(annotations[PROMPT_JOB])["status"] == "Rejected"
    assert _settle(executor, ns, job) is None
    reasons = event_reasons(api, ns, "Deployment")
    assert reasons.count("PromptJobNotRolledOut") == 1
    assert "PromptRolledOut" not in reasons


def test_a_job_that_completes_without_a_result_is_not_rolled_out(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    _setup(api, ns)
    job = _start_job(api, executor, ns, "support-policy/bot/latency-spike/t1")
    finish_job(api, ns, job["metadata"]["name"])
    job = fetch(api, "batch/v1", "Job", ns, job["metadata"]["name"])

    result = _settle(executor, ns, job)

    assert result.outcome is ExecutionOutcome.FAILED
    assert "completed without a Succeeded result" in result.message
    assert _data(api, ns) == {"system": ORIGINAL}
    assert _settle(executor, ns, job) is None


def test_without_spec_prompt_a_completed_job_is_noted_not_failed(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    _setup(api, ns)
    job = _start_job(api, executor, ns, "support-policy/bot/latency-spike/t1")
    finish_job(api, ns, job["metadata"]["name"])
    job = fetch(api, "batch/v1", "Job", ns, job["metadata"]["name"])

    result = settle_prompt_job(executor.context, ref(ns), policy_ref(ns), None, job)

    assert result.outcome is ExecutionOutcome.UNCHANGED
    assert "sets no spec.prompt" in result.message
    assert _data(api, ns) == {"system": ORIGINAL}
    annotations = get(api, ns)["metadata"]["annotations"]
    assert json.loads(annotations[PROMPT_JOB])["status"] == "Completed"
    assert settle_prompt_job(executor.context, ref(ns), policy_ref(ns), None, job) is None
