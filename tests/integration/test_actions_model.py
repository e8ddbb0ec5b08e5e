"""switchModel and its restore on both API servers: env vars and ConfigMap keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmedic.actions import (
    ActionExecutor,
    EventReason,
    ExecutionOutcome,
    Transient,
    parse_downgraded,
)
from agentmedic.actions import record as rec
from agentmedic.api.types import ConfigMapKeyRef, EnvRef, ModelSpec
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import (
    container,
    desired_state,
    events,
    fetch,
    get,
    make_executor,
    record,
    ref,
    workload,
    writes,
)
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps

TIERS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"]
ENV_SPEC = ModelSpec(env=EnvRef(container="agent", name="OPENAI_MODEL"), tiers=TIERS)
CM_SPEC = ModelSpec(config_map_key=ConfigMapKeyRef(name="bot-config", key="model"), tiers=TIERS)


def _three_containers() -> list[dict[str, Any]]:
    """A proxy, the agent and a log shipper, each with many env vars."""
    agent_env = {f"AGENT_SETTING_{i:02d}": f"value-{i}" for i in range(12)}
    agent_env["OPENAI_MODEL"] = "gpt-4o"
    agent_env["OPENAI_BASE_URL"] = "https://llm-gateway.internal/v1"
    return [
        container("proxy", {f"PROXY_{i}": str(i) for i in range(8)}, image="envoy:1.30"),
        container("agent", agent_env),
        container(
            "shipper",
            {"OPENAI_MODEL": "not-this-one", **{f"SHIP_{i}": "x" for i in range(6)}},
            image="vector:0.40",
        ),
    ]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def test_switching_the_model_changes_only_that_env_var_in_that_container(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, containers=_three_containers()))
    before = _containers(get(api, ns))

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    after = _containers(get(api, ns))
    assert [c["name"] for c in after] == ["proxy", "agent", "shipper"]
    assert after[0] == before[0]
    assert after[2] == before[2]  # the other container's OPENAI_MODEL is untouched
    expected = [
        {**e, "value": "gpt-4o-mini"} if e["name"] == "OPENAI_MODEL" else e
        for e in before[1]["env"]
    ]
    assert after[1]["env"] == expected
    assert {k: v for k, v in after[1].items() if k != "env"} == {
        k: v for k, v in before[1].items() if k != "env"
    }


def test_the_previous_model_and_its_location_are_recorded(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns, rule="budget.soft"))

    annotations = get(api, ns)["metadata"]["annotations"]
    down = json.loads(annotations[rec.DOWNGRADED])
    assert down["model"] == "gpt-4o"
    assert down["to"] == "gpt-4o-mini"
    assert down["source"] == {"env": {"container": "agent", "name": "OPENAI_MODEL"}}
    assert down["rule"] == "budget.soft"
    assert annotations[rec.RULE] == "budget.soft"
    reasons = {e["reason"] for e in events(api, ns)}
    assert reasons == {EventReason.MODEL_SWITCHED}


def test_current_model_reads_the_env_value(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    [info] = executor.list_workloads(ns, "app=bot", ENV_SPEC)

    assert info.model == "gpt-4o"
    assert executor.current_model(info, ENV_SPEC) == "gpt-4o"
    assert executor.current_model(get(api, ns), ENV_SPEC) == "gpt-4o"


def test_stepping_down_twice_keeps_the_original_model_for_restore(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns, episode="e1"))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4.1-nano", record(ns, episode="e2"))

    down = parse_downgraded(get(api, ns)["metadata"]["annotations"])
    assert down is not None
    assert (down.model, down.to, down.episode) == ("gpt-4o", "gpt-4.1-nano", "e2")

    result = executor.restore(ref(ns), by="auto-recovery", replicas=False)

    assert result.outcome is ExecutionOutcome.APPLIED
    env = {e["name"]: e["value"] for e in _containers(get(api, ns))[0]["env"]}
    assert env["OPENAI_MODEL"] == "gpt-4o"


def test_repeating_the_same_switch_writes_nothing(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))
    before = desired_state(api, ns)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    again = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))

    assert again.outcome is ExecutionOutcome.UNCHANGED
    assert desired_state(api, ns) == before
    if isinstance(api, ApiEmulator):
        assert writes(api, except_events=False) == []


def test_restore_puts_back_the_model_after_an_operator_restart(api: KubeServer, ns: str) -> None:
    api.create(workload(ns, containers=_three_containers()))
    original = _containers(get(api, ns))
    first = make_executor(api)
    first.switch_model(ref(ns), ENV_SPEC, "gpt-4.1-nano", record(ns))
    first.kube.close()

    fresh = make_executor(api)
    result = fresh.restore(ref(ns), by="cli:alice")
    fresh.kube.close()

    assert result.outcome is ExecutionOutcome.APPLIED
    assert "model → gpt-4o" in result.message
    assert _containers(get(api, ns)) == original
    assert rec.DOWNGRADED not in get(api, ns)["metadata"]["annotations"]


def test_restore_leaves_a_model_someone_changed_since(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "o3"}
    ]
    api.patch("apps/v1", "Deployment", ns, "bot", patch, patch_type="json")

    result = executor.restore(ref(ns), by="test")

    env = {e["name"]: e["value"] for e in _containers(get(api, ns))[0]["env"]}
    assert env["OPENAI_MODEL"] == "o3"
    assert "model left at o3" in result.message


def test_a_concurrent_template_edit_is_kept_and_the_switch_retried(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, containers=_three_containers()))
    original_get = executor.kube.get_workload
    calls = {"n": 0}

    def get_then_someone_adds_a_container(kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj = original_get(kind, namespace, name)
        calls["n"] += 1
        if calls["n"] == 1:  # a person inserts a container in front: the indexes shift
            patch = [
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0",
                    "value": container("init-proxy", {"A": "1"}),
                }
            ]
            api.patch("apps/v1", "Deployment", ns, "bot", patch, patch_type="json")
        return obj

    executor.kube.get_workload = get_then_someone_adds_a_container  # type: ignore[method-assign]

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    containers = _containers(get(api, ns))
    assert [c["name"] for c in containers] == ["init-proxy", "proxy", "agent", "shipper"]
    agent_env = {e["name"]: e["value"] for e in containers[2]["env"]}
    assert agent_env["OPENAI_MODEL"] == "gpt-4o-mini"
    proxy_env = {e["name"]: e["value"] for e in containers[1]["env"]}
    assert "OPENAI_MODEL" not in proxy_env


def test_a_missing_container_is_refused_with_the_field_to_fix(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, containers=[container("worker", {"OPENAI_MODEL": "gpt-4o"})]))
    before = desired_state(api, ns, with_events=False)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.REFUSED
    assert "spec.model.env.container" in result.message
    assert "worker" in result.message
    assert desired_state(api, ns, with_events=False) == before
    if isinstance(api, ApiEmulator):
        assert writes(api) == []
    assert {e["type"] for e in events(api, ns)} == {"Warning"}


def test_an_env_var_set_by_value_from_is_refused(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    agent = {
        "name": "agent",
        "image": "a",
        "env": [
            {
                "name": "OPENAI_MODEL",
                "valueFrom": {"configMapKeyRef": {"name": "bot-config", "key": "model"}},
            }
        ],
    }
    api.create(workload(ns, containers=[agent]))

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.REFUSED
    assert "valueFrom" in result.message


def test_dry_run_switch_writes_only_would_events(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    before = desired_state(api, ns, with_events=False)
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns, dry_run=True))

    assert result.outcome is ExecutionOutcome.DRY_RUN
    assert desired_state(api, ns, with_events=False) == before
    if isinstance(api, ApiEmulator):
        assert writes(api) == []
    assert {e["reason"] for e in events(api, ns)} == {EventReason.WOULD_SWITCH_MODEL}
    assert all(e["message"].startswith("would ") for e in events(api, ns))


# --------------------------------------------------------------------------- ConfigMap


def _config_map(namespace: str, model: str = "gpt-4o", name: str = "bot-config") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"model": model, "temperature": "0.2"},
    }


def test_a_config_map_model_is_switched_and_the_pods_are_restarted(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(_config_map(ns))

    result = executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    cm = fetch(api, "v1", "ConfigMap", ns, "bot-config")
    assert cm["data"] == {"model": "gpt-4o-mini", "temperature": "0.2"}
    obj = get(api, ns)
    template_annotations = obj["spec"]["template"]["metadata"]["annotations"]
    assert template_annotations[rec.MODEL_TEMPLATE_ANNOTATION] == "gpt-4o-mini"
    down = parse_downgraded(obj["metadata"]["annotations"])
    assert down is not None
    assert down.config_map_key == ("bot-config", "model")
    assert down.model == "gpt-4o"
    [info] = executor.list_workloads(ns, "app=bot", CM_SPEC)
    assert info.model == "gpt-4o-mini"


def test_a_config_map_model_is_restored(api: KubeServer, ns: str, executor: ActionExecutor) -> None:
    api.create(workload(ns))
    api.create(_config_map(ns))
    executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))

    result = executor.restore(ref(ns), by="test")

    assert result.outcome is ExecutionOutcome.APPLIED
    cm = fetch(api, "v1", "ConfigMap", ns, "bot-config")
    assert cm["data"] == {"model": "gpt-4o", "temperature": "0.2"}
    obj = get(api, ns)
    assert obj["spec"]["template"]["metadata"]["annotations"][rec.MODEL_TEMPLATE_ANNOTATION] == (
        "gpt-4o"
    )
    assert rec.DOWNGRADED not in obj["metadata"]["annotations"]


@pytest.mark.emulator_only("injects 500 answers to the ConfigMap patch")
def test_an_interrupted_config_map_switch_is_finished_by_the_repeated_decision(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.create(_config_map(ns))
    api.inject(method="PATCH", path_regex="/configmaps/bot-config$", status=500, times=10)
    with pytest.raises(Transient, match="patch ConfigMap"):
        executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))
    api.clear_faults()
    assert parse_downgraded(get(api, ns)["metadata"]["annotations"]) is not None

    result = executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert fetch(api, "v1", "ConfigMap", ns, "bot-config")["data"]["model"] == "gpt-4o-mini"
    down = parse_downgraded(get(api, ns)["metadata"]["annotations"])
    assert down is not None
    assert down.model == "gpt-4o"


PER_AGENT_CM = ModelSpec(
    config_map_key=ConfigMapKeyRef(name="{{workload}}-config", key="model"), tiers=TIERS
)


def test_with_the_workload_in_its_name_each_agent_has_its_own_config_map(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    for name in ("bot", "helper"):
        api.create(workload(ns, name, labels={"team": "t"}))
        api.create(_config_map(ns, name=f"{name}-config"))

    result = executor.switch_model(ref(ns, "bot"), PER_AGENT_CM, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert fetch(api, "v1", "ConfigMap", ns, "bot-config")["data"]["model"] == "gpt-4o-mini"
    assert fetch(api, "v1", "ConfigMap", ns, "helper-config")["data"]["model"] == "gpt-4o"
    down = parse_downgraded(get(api, ns, "bot")["metadata"]["annotations"])
    assert down is not None
    assert down.config_map_key == ("bot-config", "model")
    models = {i.name: i.model for i in executor.list_workloads(ns, "team=t", PER_AGENT_CM)}
    assert models == {"bot": "gpt-4o-mini", "helper": "gpt-4o"}
    helper = {"metadata": {"namespace": ns, "name": "helper"}}
    assert executor.current_model(helper, PER_AGENT_CM) == "gpt-4o"

    assert executor.restore(ref(ns, "bot"), by="test").outcome is ExecutionOutcome.APPLIED
    assert fetch(api, "v1", "ConfigMap", ns, "bot-config")["data"]["model"] == "gpt-4o"


def test_a_missing_config_map_is_refused_with_the_field_to_fix(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    result = executor.switch_model(ref(ns), CM_SPEC, "gpt-4o-mini", record(ns))

    assert result.outcome is ExecutionOutcome.REFUSED
    assert "spec.model.configMapKey.name" in result.message


def test_a_dry_run_refusal_also_speaks_in_the_conditional(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, containers=[container("worker", {"OPENAI_MODEL": "gpt-4o"})]))

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns, dry_run=True))

    assert result.outcome is ExecutionOutcome.REFUSED
    assert result.message.startswith("would refuse: ")
    assert all(e["message"].startswith("would ") for e in events(api, ns))


def test_stepping_back_up_to_the_original_model_clears_the_record(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4.1-nano", record(ns, episode="e1"))
    executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns, episode="e2"))
    assert parse_downgraded(get(api, ns)["metadata"]["annotations"]) is not None

    result = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o", record(ns, episode="e3"))

    assert result.outcome is ExecutionOutcome.APPLIED
    obj = get(api, ns)
    assert {e["name"]: e["value"] for e in _containers(obj)[0]["env"]}["OPENAI_MODEL"] == "gpt-4o"
    assert rec.DOWNGRADED not in obj["metadata"]["annotations"]
    assert rec.LAST_RESTORE in obj["metadata"]["annotations"]


def test_an_episode_that_switched_already_does_not_step_down_again(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    # A restart between acting and persisting the engine's memory decides the same
    # episode again, now one tier below the model it switched to: the workload's record
    # says this episode acted, so the second step is not taken.
    api.create(workload(ns))
    first = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4o-mini", record(ns))
    assert first.outcome is ExecutionOutcome.APPLIED
    before = desired_state(api, ns)

    again = executor.switch_model(ref(ns), ENV_SPEC, "gpt-4.1-nano", record(ns))

    assert again.outcome is ExecutionOutcome.UNCHANGED
    assert "by this episode already" in again.message
    assert desired_state(api, ns) == before
    env = {e["name"]: e["value"] for e in _containers(get(api, ns))[0]["env"]}
    assert env["OPENAI_MODEL"] == "gpt-4o-mini"
    other = executor.switch_model(
        ref(ns), ENV_SPEC, "gpt-4.1-nano", record(ns, episode="another-episode")
    )
    assert other.outcome is ExecutionOutcome.APPLIED
