"""The sandbox plays a prompt-optimization Job's container: the real ``agentmedic
optimize-prompt`` (a subprocess) against the loopback model, then the Job completes; the
simulated agent is faster with the shorter prompt once agentmedic stamps it."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmedic.actions import ActionExecutor, ExecutionOutcome, Kube
from agentmedic.actions.jobs import job_finished
from agentmedic.actions.record import ActionRecord, PolicyRef, WorkloadRef
from agentmedic.api.prompt import RESULT_ANNOTATION, PromptSpec
from agentmedic.api.types import PromptOptimizationAction
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.prompt_jobs import (
    DEMO_PROMPT,
    MIN_FACTOR,
    PROMPT_KEY,
    PromptJobRunner,
    cron_job,
    latency_factor,
    prompt_config_map,
)
from tests.integration import actions_support as support
from tests.integration.kube_servers import (
    KubeServer,
    create_namespace,
    drop_namespace,
    wait_for,
)

api = support.api
_names = itertools.count(1)


@pytest.fixture
def namespace(api: KubeServer) -> Iterator[str]:
    name = create_namespace(api, f"sbx{next(_names)}-{uuid.uuid4().hex[:6]}")
    yield name
    if not isinstance(api, ApiEmulator):
        drop_namespace(api, name)


def test_the_runner_runs_optimize_prompt_for_a_job_and_completes_it(
    api: KubeServer, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    policy = api.create(
        {
            "apiVersion": "agentmedic.io/v1alpha1",
            "kind": "AgentPolicy",
            "metadata": {"name": "latency", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"a": "b"}}},
        }
    )
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "slow-bot", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "slow-bot"}},
                "template": {
                    "metadata": {"labels": {"app": "slow-bot"}},
                    "spec": {"containers": [{"name": "agent", "image": "a"}]},
                },
            },
        }
    )
    api.create(prompt_config_map(ns, "slow-bot"))
    lines: list[str] = []
    real = not isinstance(api, ApiEmulator)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    runner = PromptJobRunner(api, [ns], lambda: kubeconfig, "sk-any", real=real, log=lines.append)
    runner.model.start()
    kube = Kube.from_configuration(api.client_configuration())
    try:
        api.create(cron_job(ns, runner.base_url))
        executor = ActionExecutor(kube)
        ref = WorkloadRef("Deployment", ns, "slow-bot")
        owner = PolicyRef(ns, "latency", policy["metadata"]["uid"])
        record = ActionRecord(owner, "latency-spike", "e1", "p95 above 8s")
        spec = PromptSpec.model_validate(
            {"configMapKey": {"name": "{{workload}}-prompt", "key": PROMPT_KEY}}
        )
        action = PromptOptimizationAction(from_cron_job="prompt-optimizer")
        started = executor.start_prompt_job(ref, owner, action, record, {}, spec)
        assert started.outcome is ExecutionOutcome.APPLIED
        job_name = started.details["job"]

        runner.run_pending()
        runner.run_pending()  # a Job is run once

        assert runner.results == {job_name: 0}
        wait_for(
            lambda: job_finished(api.get("batch/v1", "Job", ns, job_name) or {}),
            f"Job {job_name} to finish",
            timeout=60,
        )
        cm = api.get("v1", "ConfigMap", ns, "slow-bot-prompt") or {}
        result = json.loads(cm["metadata"]["annotations"][RESULT_ANNOTATION])
        assert (result["status"], result["job"]) == ("Succeeded", job_name)
        assert len(cm["data"][f"{PROMPT_KEY}.v1"]) < len(DEMO_PROMPT) / 2
        assert lines
        assert "Succeeded" in lines[-1]
    finally:
        kube.close()
        runner.model.stop()


def test_a_rolled_out_shorter_prompt_makes_the_simulated_agent_faster() -> None:
    stamped = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"agentmedic.io/prompt-version": "system-prompt.v1"}}
            }
        }
    }
    assert latency_factor({"spec": {"template": {}}}, "short") == 1.0, "nothing rolled out"
    half = DEMO_PROMPT[: len(DEMO_PROMPT) // 2]
    assert latency_factor(stamped, half) == len(half) / len(DEMO_PROMPT)
    assert latency_factor(stamped, "tiny") == MIN_FACTOR
