"""The sandbox plays a prompt-optimization Job's container: the real ``agentmedic
optimize-prompt`` (a subprocess) against the loopback model, then the Job completes; the
simulated agent is faster with the shorter prompt once agentmedic stamps it."""

from __future__ import annotations

import json
from pathlib import Path

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

NS = "agents"


def test_the_runner_runs_optimize_prompt_for_a_job_and_completes_it(tmp_path: Path) -> None:
    with ApiEmulator() as emu:
        policy = emu.create(
            {
                "apiVersion": "agentmedic.io/v1alpha1",
                "kind": "AgentPolicy",
                "metadata": {"name": "latency", "namespace": NS},
                "spec": {"selector": {"matchLabels": {"a": "b"}}},
            }
        )
        emu.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "slow-bot", "namespace": NS},
                "spec": {
                    "selector": {"matchLabels": {"app": "slow-bot"}},
                    "template": {
                        "metadata": {"labels": {"app": "slow-bot"}},
                        "spec": {"containers": [{"name": "agent", "image": "a"}]},
                    },
                },
            }
        )
        emu.create(prompt_config_map(NS, "slow-bot"))
        lines: list[str] = []
        runner = PromptJobRunner(
            emu,
            [NS],
            lambda: emu.write_kubeconfig(tmp_path / "kubeconfig"),
            "sk-any",
            log=lines.append,
        )
        runner.model.start()
        try:
            emu.create(cron_job(NS, runner.base_url))
            kube = Kube.from_configuration(emu.client_configuration())
            executor = ActionExecutor(kube)
            ref = WorkloadRef("Deployment", NS, "slow-bot")
            owner = PolicyRef(NS, "latency", policy["metadata"]["uid"])
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
            assert job_finished(emu.get("batch/v1", "Job", NS, job_name) or {})
            cm = emu.get("v1", "ConfigMap", NS, "slow-bot-prompt") or {}
            result = json.loads(cm["metadata"]["annotations"][RESULT_ANNOTATION])
            assert (result["status"], result["job"]) == ("Succeeded", job_name)
            assert len(cm["data"][f"{PROMPT_KEY}.v1"]) < len(DEMO_PROMPT) / 2
            assert lines
            assert "Succeeded" in lines[-1]
            kube.close()
        finally:
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
