"""Reading agents, Secrets and state; Events; the client's failure handling; the restore CLI."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path

import pytest
import yaml

from agentmedic.actions import (
    ActionExecutor,
    ExecutionOutcome,
    Kube,
    NotFound,
    PolicyRef,
    RetryPolicy,
    Transient,
    read_agent_state,
)
from agentmedic.actions import record as rec
from agentmedic.api.types import EnvRef, LabelSelector, LabelSelectorRequirement, ModelSpec
from agentmedic.cli.main import main as cli
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import (
    Sleeps,
    desired_state,
    events,
    get,
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

SPEC = ModelSpec(
    env=EnvRef(container="agent", name="OPENAI_MODEL"), tiers=["gpt-4o", "gpt-4o-mini"]
)


def test_list_workloads_selects_on_the_server_and_slims_both_kinds(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, "bot-a", labels={"tier": "gold", "agentmedic.io/agent": "alpha"}))
    api.create(workload(ns, "bot-b", labels={"tier": "silver"}, replicas=1))
    api.create(workload(ns, "indexer", kind="StatefulSet", labels={"tier": "gold"}))
    api.create(workload(ns, "other", labels={"app.kubernetes.io/part-of": "billing"}))
    selector = LabelSelector(
        match_labels={"app.kubernetes.io/part-of": "support"},
        match_expressions=[
            LabelSelectorRequirement(key="tier", operator="In", values=["gold", "silver"])
        ],
    )
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    infos = executor.list_workloads(ns, selector, SPEC)

    assert [(i.kind, i.name, i.agent) for i in infos] == [
        ("Deployment", "bot-a", "alpha"),
        ("Deployment", "bot-b", "bot-b"),
        ("StatefulSet", "indexer", "indexer"),
    ]
    if isinstance(api, ApiEmulator):  # selected by the server, in one list per kind
        queries = [r.query.get("labelSelector") for r in api.requests]
        assert queries == [
            "app.kubernetes.io/part-of=support,tier in (gold,silver)",
            "app.kubernetes.io/part-of=support,tier in (gold,silver)",
        ]
    bot_b = infos[1]
    assert bot_b.replicas == 1
    assert bot_b.model == "gpt-4o"
    assert bot_b.env == {("agent", "OPENAI_MODEL"): "gpt-4o"}
    assert bot_b.resource_version
    assert bot_b.ref == ref(ns, "bot-b")
    assert bot_b.disabled is None


def test_workload_info_carries_the_record(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=2))
    executor.scale_to_zero(ref(ns), record(ns))

    [info] = executor.list_workloads(ns, "app=bot")

    assert info.replicas == 0
    assert info.disabled is not None
    assert info.disabled.replicas == 2


def test_a_secret_value_is_read_and_never_logged(
    api: KubeServer, ns: str, executor: ActionExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "slack-webhook", "namespace": ns},
            "data": {"url": base64.b64encode(f"{url}\n".encode()).decode()},
        }
    )
    caplog.set_level(logging.DEBUG)

    assert executor.read_secret_value(ns, "slack-webhook", "url") == url
    with pytest.raises(NotFound, match="has no key 'token'") as missing:
        executor.read_secret_value(ns, "slack-webhook", "token")
    assert "keys: url" in missing.value.message
    assert "SECRET" not in missing.value.message
    assert "SECRET" not in caplog.text


def test_agent_state_is_written_only_when_it_changes(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    state = {"rules": {"low-success": {"since": "2025-03-14T09:00:00Z", "state": "pending"}}}

    assert executor.write_agent_state(ref(ns), "support-policy", state) is True
    before = desired_state(api, ns)
    if isinstance(api, ApiEmulator):
        api.clear_requests()
    assert executor.write_agent_state(ref(ns), "support-policy", dict(state)) is False
    assert desired_state(api, ns) == before
    if isinstance(api, ApiEmulator):
        assert writes(api) == []

    [info] = executor.list_workloads(ns, "app=bot")
    assert read_agent_state(info, "support-policy") == state
    assert read_agent_state(info, "another-policy") is None
    if isinstance(api, ApiEmulator):
        api.clear_requests()
    assert (
        executor.write_agent_state(ref(ns), "support-policy", state, annotations=info.annotations)
        is False
    )
    if isinstance(api, ApiEmulator):
        assert api.requests == []  # the known annotations spared even the read

    assert executor.write_agent_state(ref(ns), "support-policy", None) is True
    assert rec.state_key("support-policy") not in get(api, ns)["metadata"]["annotations"]


def test_a_deleted_policy_is_marked_on_the_workload(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))

    executor.mark_policy_deleted(ref(ns), PolicyRef(ns, "support-policy", "u1"))

    note = get(api, ns)["metadata"]["annotations"][rec.POLICY_DELETED]
    assert note == f"{ns}/support-policy at 2025-03-14T09:26:53Z"


def test_event_messages_never_carry_credentials(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    leaky = record(ns)
    leaky = type(leaky)(
        policy=leaky.policy,
        rule=leaky.rule,
        episode=leaky.episode,
        reason="webhook https://hooks.slack.com/services/T0/B0/abcdefSECRET failed",
        evidence=(
            "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.SECRET "
            "and key sk-proj-abcdefghijklmnopSECRET"
        ),
        at=leaky.at,
    )

    executor.scale_to_zero(ref(ns), leaky)

    messages = [e["message"] for e in events(api, ns)]
    assert messages
    assert not any("SECRET" in m for m in messages)
    assert all("https://hooks.slack.com/…" in m for m in messages)


@pytest.mark.emulator_only("injects 403 answers to the Event writes")
def test_a_failing_event_write_does_not_fail_the_action(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns))
    api.inject(method="POST", path_regex=f"/namespaces/{ns}/events$", status=403, times=2)

    result = executor.scale_to_zero(ref(ns), record(ns))

    assert result.outcome is ExecutionOutcome.APPLIED
    assert get(api, ns)["spec"]["replicas"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_api_server_is_transient_after_bounded_retries() -> None:
    import kubernetes.client

    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{_closed_port()}"
    pauses = Sleeps()
    kube = Kube.from_configuration(
        config, retry=RetryPolicy(attempts=3, base=0.001, cap=0.002), sleep=pauses
    )

    with pytest.raises(Transient, match="cannot reach the API server"):
        ActionExecutor(kube).scale_to_zero(ref("agents"), record("agents"))
    assert len(pauses) == 2
    kube.close()


def test_the_restore_command_prints_what_it_put_back(
    api: KubeServer,
    ns: str,
    executor: ActionExecutor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.create(workload(ns, replicas=3))
    executor.scale_to_zero(ref(ns), record(ns))
    kubeconfig = api.write_kubeconfig(tmp_path / "config")

    assert cli(["restore", f"{ns}/bot", "--kubeconfig", str(kubeconfig), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(
        f"would restore deployment/bot in {ns}: replicas 0 → 3"
    )
    assert get(api, ns)["spec"]["replicas"] == 0

    assert cli(["restore", f"{ns}/bot", "--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"restored deployment/bot in {ns}: replicas 0 → 3")
    assert "asked by cli:" in out
    assert get(api, ns)["spec"]["replicas"] == 3

    assert cli(["restore", f"{ns}/bot", "--kubeconfig", str(kubeconfig)]) == 0
    assert "nothing to restore" in capsys.readouterr().out


def test_the_restore_command_takes_a_kubectl_reference_and_prints_json(
    api: KubeServer,
    ns: str,
    executor: ActionExecutor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.create(workload(ns, replicas=2))
    executor.scale_to_zero(ref(ns), record(ns))
    kubeconfig = str(api.write_kubeconfig(tmp_path / "config"))

    assert cli(["restore", "deploy/bot", "-n", ns, "--kubeconfig", kubeconfig, "-o", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["workload"] == {"kind": "Deployment", "namespace": ns, "name": "bot"}
    assert answer["outcome"] == "Applied"
    assert answer["message"].startswith(f"restored deployment/bot in {ns}: replicas 0 → 2")
    assert get(api, ns)["spec"]["replicas"] == 2


def test_the_status_command_shows_the_undo_that_restore_accepts(
    api: KubeServer,
    ns: str,
    executor: ActionExecutor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.create(workload(ns, replicas=3))
    executor.scale_to_zero(ref(ns), record(ns))
    kubeconfig = str(api.write_kubeconfig(tmp_path / "config"))
    undo = f"agentmedic restore deployment/bot -n {ns}"

    for output in ("json", "yaml"):
        assert cli(["status", "-n", ns, "--kubeconfig", kubeconfig, "-o", output]) == 0
        out = capsys.readouterr().out
        shown = json.loads(out) if output == "json" else yaml.safe_load(out)
        assert [w["undo"] for w in shown["remediated"]] == [undo]
    for output in ("table", "wide"):
        assert cli(["status", "-n", ns, "--kubeconfig", kubeconfig, "-o", output]) == 0
        assert any(undo in line for line in capsys.readouterr().out.splitlines())
    if isinstance(api, ApiEmulator):
        # status is a person's command with their credentials (it lists AgentPolicies),
        # not one of the operator's requests that REQUIRED_PERMISSIONS must cover.
        api.clear_requests()

    assert cli([*undo.split()[1:], "--kubeconfig", kubeconfig]) == 0
    assert get(api, ns)["spec"]["replicas"] == 3


def test_the_restore_command_fails_clearly_for_a_missing_workload(
    api: KubeServer, ns: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "config")

    code = cli(["restore", f"{ns}/ghost", "--kind", "statefulset", "--kubeconfig", str(kubeconfig)])

    assert code == 1
    assert f"statefulset/ghost in {ns}" in capsys.readouterr().err


def test_the_restore_command_rejects_a_target_without_namespace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(["restore", "support-bot"]) == 2
    assert "NAMESPACE/NAME" in capsys.readouterr().err


def test_the_restore_command_names_a_missing_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"

    # An unusable kubeconfig is an environment problem: exit 2 (docs/cli.md).
    assert cli(["restore", "agents/bot", "--kubeconfig", str(missing)]) == 2
    assert f"--kubeconfig {missing}: no such file" in capsys.readouterr().err
