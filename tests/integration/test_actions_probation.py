"""The probation record on both API servers: written with the change, read back by the
operator's parser, removed by the restore that undoes the change."""

from __future__ import annotations

import dataclasses

from agentmedic.actions import ActionExecutor, ActionKind, ActionRequest, ExecutionOutcome
from agentmedic.actions import record as rec
from agentmedic.actions.probation import ProbationChange, parse_probation, write_probation
from agentmedic.api.types import ConfigMapKeyRef, EnvRef, ModelSpec
from agentmedic.engine.inputs import ProbationRecord
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import NOW, get, record, ref, workload, writes
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps

TIERS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"]
ENV_SPEC = ModelSpec(env=EnvRef(container="agent", name="OPENAI_MODEL"), tiers=TIERS)
CM_SPEC = ModelSpec(config_map_key=ConfigMapKeyRef(name="bot-config", key="model"), tiers=TIERS)
BASELINE = {
    "success_rate": 0.97,
    "error_rate": 0.03,
    "latency_p95_ms": 4200.0,
    "tokens_per_execution": 1800.0,
    "quality_score": 0.86,
    "executions": 412.0,
}


def _annotations(api: KubeServer, ns: str) -> dict[str, str]:
    return dict(get(api, ns)["metadata"].get("annotations") or {})


def test_a_switch_with_a_baseline_writes_the_probation_record_with_the_change(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    verified = dataclasses.replace(record(ns), baseline=BASELINE)

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", verified)

    assert result.outcome is ExecutionOutcome.APPLIED
    annotations = _annotations(api, ns)
    assert rec.DOWNGRADED in annotations
    assert parse_probation(annotations) == ProbationRecord(
        kind="switchModel",
        episode=verified.episode,
        rule="low-success",
        at=NOW,
        previous="gpt-4o",
        new="gpt-4o-mini",
        baseline=BASELINE,
    )
    restored = executor.restore(ref(ns), by="probation (the change regressed)")
    assert restored.outcome is ExecutionOutcome.APPLIED
    after = _annotations(api, ns)
    assert rec.PROBATION not in after
    assert rec.DOWNGRADED not in after


def test_a_config_map_switch_writes_it_too_and_a_switch_without_baseline_does_not(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bot-config", "namespace": ns},
            "data": {"model": "gpt-4o"},
        }
    )
    executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))
    assert rec.PROBATION not in _annotations(api, ns)  # the policy does not verify
    executor.restore(ref(ns), by="test")
    second = dataclasses.replace(record(ns, episode="p/bot/r/2"), baseline=BASELINE)
    executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", second)
    found = parse_probation(_annotations(api, ns))
    assert found is not None
    assert (found.previous, found.new, found.episode) == ("gpt-4o", "gpt-4o-mini", "p/bot/r/2")


def test_write_probation_records_a_prompt_rollout_alone_once(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    prompt = dataclasses.replace(record(ns, rule="slow"), baseline={"latency_p95_ms": 9100.0})
    change = ProbationChange("prompt", prompt, "v3", "v4")
    write_probation(
        executor.context,
        ref(ns),
        dataclasses.replace(change, record=dataclasses.replace(prompt, dry_run=True)),
    )
    assert rec.PROBATION not in _annotations(api, ns)  # a dry run writes nothing

    write_probation(executor.context, ref(ns), change)
    if isinstance(api, ApiEmulator):  # a real server's controllers write on their own
        api.clear_requests()
    write_probation(executor.context, ref(ns), change)  # the same record again: no write

    if isinstance(api, ApiEmulator):
        assert writes(api) == []
    found = parse_probation(_annotations(api, ns))
    assert found is not None
    assert (found.kind, found.previous, found.new) == ("prompt", "v3", "v4")
    assert found.baseline["latency_p95_ms"] == 9100.0
    assert found.baseline["quality_score"] is None  # not measured: no data, never 0
    assert found.at == NOW


def test_a_revert_marks_the_record_which_then_outlives_the_restore(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    switched = dataclasses.replace(record(ns), baseline=BASELINE)
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", switched)
    revert = ActionRequest(
        kind=ActionKind.RESTORE,
        workload=ref(ns),
        record=record(ns),
        agent=f"{ns}/bot",
        model_spec=ENV_SPEC,
        restore_replicas=False,
        restored_by="probation (the change regressed)",
        reverts=True,
    )

    result = executor.execute(revert)

    assert result.outcome is ExecutionOutcome.APPLIED
    annotations = _annotations(api, ns)
    assert rec.DOWNGRADED not in annotations
    found = parse_probation(annotations)
    assert found is not None
    assert (found.new, found.reverted_at) == ("gpt-4o-mini", NOW)
    container = get(api, ns)["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]}["OPENAI_MODEL"] == "gpt-4o"
    assert executor.execute(revert).outcome is ExecutionOutcome.UNCHANGED  # idempotent
