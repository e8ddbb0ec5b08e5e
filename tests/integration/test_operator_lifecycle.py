"""The operator's handling of a policy's life: invalid specs, a metrics outage, a person's
restore request, and deletion (keep or restore). The real operator (kopf) runs against both
API servers (ids ``emulated`` and ``real``: the emulator, and the session's real control
plane), each test in its own namespace; the metrics backend is absent (a closed loopback
port).
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentmedic.actions.record import DISABLED, POLICY, POLICY_DELETED, RESTORE_REQUEST
from agentmedic.api.durations import TIME_COMPRESSION_ENV
from agentmedic.operator.main import OperatorThread, kube_configuration
from agentmedic.operator.settings import OperatorSettings, load_settings
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    RealServer,
    create_namespace,
    drop_namespace,
    operator_configuration,
)

API = "agentmedic.io/v1alpha1"
_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _deployment(
    ns: str, name: str, replicas: int = 2, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"team": "a", "app": name},
            "annotations": annotations or {},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }


def _policy(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "selector": {"matchLabels": {"team": "a"}},
        "interval": "1s",
        "rules": [
            {
                "name": "low-success",
                "all": [{"metric": "success_rate", "window": "30s", "op": "<", "value": 0.8}],
                "for": "2s",
                "actions": [{"scaleToZero": {}}, {"notify": {"channels": ["slack"]}}],
            }
        ],
        "notifications": {
            "channels": [
                {"name": "slack", "slack": {"webhookSecretRef": {"name": "hook", "key": "url"}}}
            ]
        },
    }
    body.update(spec)
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def _disabled_record(ns: str, policy: str, uid: str) -> dict[str, str]:
    record = {
        "replicas": 3,
        "policy": f"{ns}/{policy}",
        "policyUid": uid,
        "rule": "low-success",
        "episode": f"{uid}:{ns}/gone-bot:low-success:1700000000",
        "reason": "success_rate below 0.8",
        "evidence": "success_rate[30s] = 0.4 < 0.8",
        "at": "2026-11-27T12:00:00Z",
    }
    return {DISABLED: json.dumps(record), POLICY: f"{ns}/{policy}"}


@dataclass
class Cluster:
    api: KubeServer
    receivers: NotificationReceivers
    ns: str


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    # The emulator admits policies with the CRD it renders at start: compressed, as the
    # operator validates them (the real server's CRD is installed compressed by conftest).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TIME_COMPRESSION_ENV, "10")
        with ApiEmulator() as emu:
            yield emu


@pytest.fixture
def cluster(server: KubeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A namespace of the test's own, with the Slack webhook Secret, and the receivers."""
    # The policies' 1s interval is below the 10s minimum: run them time-compressed.
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")
    ns = create_namespace(server, f"agents-{next(_namespaces)}-{_RUN}")
    with NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        server.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": ns},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        yield Cluster(server, receivers, ns)
    drop_namespace(server, ns)


def _settings(ns: str) -> OperatorSettings:
    return load_settings(
        flags={
            "prometheus_url": f"http://127.0.0.1:{_closed_port()}",
            "namespaces": [ns],
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
        },
        environ={},
    )


def _operator(c: Cluster, prometheus_url: str) -> OperatorThread:
    settings = load_settings(
        flags={
            "prometheus_url": prometheus_url,
            "namespaces": [c.ns],
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
        },
        environ={},
    )
    op = OperatorThread(settings, operator_configuration(c.api))
    op.start()
    return op


def _condition(c: Cluster, name: str, kind: str) -> dict[str, Any] | None:
    obj = c.api.get(API, "AgentPolicy", c.ns, name) or {}
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def test_a_ratio_threshold_outside_zero_to_one_is_refused_as_validate_refuses_it(
    cluster: Cluster,
) -> None:
    # `value: 70` on success_rate < always holds: every agent would be disabled. The
    # schema accepts it; the operator refuses it with validate's finding and its fix.
    api, ns = cluster.api, cluster.ns
    api.create(_deployment(ns, "bot-1"))
    broken = _policy(ns, "percent")
    broken["spec"]["rules"][0]["all"][0]["value"] = 70
    api.create(broken)
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:
        ready = _wait(lambda: _condition(cluster, "percent", "Ready"), "Ready on the policy")
        assert ready["status"] == "False"
        assert ready["reason"] == "InvalidSpec"
        assert "spec.rules[0].all[0].value" in ready["message"]
        assert "0.7" in ready["message"]
        assert api.get("apps/v1", "Deployment", ns, "bot-1")["spec"]["replicas"] == 2
    finally:
        op.stop()


def test_invalid_policy_gets_ready_false_with_the_message_and_others_carry_on(
    cluster: Cluster,
) -> None:
    api, ns = cluster.api, cluster.ns
    api.create(_deployment(ns, "bot-1"))
    broken = _policy(ns, "broken")
    broken["spec"]["rules"][0]["actions"][1]["notify"]["channels"] = ["pager"]
    api.create(broken)
    api.create(_policy(ns, "fine"))
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:
        ready = _wait(lambda: _condition(cluster, "broken", "Ready"), "Ready on the broken policy")
        assert ready["status"] == "False"
        assert ready["reason"] == "InvalidSpec"
        assert "spec.rules[0].actions[1].notify.channels[0]" in ready["message"]
        assert "'pager' is not defined" in ready["message"]
        fine = _wait(lambda: _condition(cluster, "fine", "Ready"), "Ready on the valid policy")
        assert fine["status"] == "True"
        events = [e for e in api.list("v1", "Event", ns) if e["involvedObject"]["name"] == "broken"]
        assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)
        # Fixing the spec is what brings it back.
        api.patch(
            API,
            "AgentPolicy",
            ns,
            "broken",
            {"spec": {"rules": [_policy(ns, "x")["spec"]["rules"][0]]}},
        )
        _wait(
            lambda: (_condition(cluster, "broken", "Ready") or {}).get("status") == "True",
            "the fixed policy to become Ready",
        )
    finally:
        op.stop()


def test_unavailable_metrics_change_nothing_say_why_and_notify_when_it_lasts(
    cluster: Cluster,
) -> None:
    api, ns, receivers = cluster.api, cluster.ns, cluster.receivers
    api.create(_deployment(ns, "bot-1"))
    api.create(_policy(ns, "p", noData={"mode": "notify", "after": "3s", "channels": ["slack"]}))
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:
        cond = _wait(
            lambda: (
                (c := _condition(cluster, "p", "MetricsAvailable")) and c["status"] == "False" and c
            ),
            "MetricsAvailable=False",
        )
        assert cond["reason"] == "Unreachable"
        assert "Unreachable" in cond["message"]
        assert "no remediation" in cond["message"]
        messages = receivers.wait_for(1, kind=ReceiverKind.SLACK, within=20)
        assert "metrics backend unavailable" in messages[0].json()["text"]
        deployment = api.get("apps/v1", "Deployment", ns, "bot-1")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        assert DISABLED not in deployment["metadata"]["annotations"]
    finally:
        op.stop()


def test_a_person_asks_for_a_restore_with_an_annotation(
    cluster: Cluster,
) -> None:
    api, ns = cluster.api, cluster.ns
    policy = api.create(_policy(ns, "p"))
    annotations = {**_disabled_record(ns, "p", policy["metadata"]["uid"]), RESTORE_REQUEST: "true"}
    api.create(_deployment(ns, "gone-bot", replicas=0, annotations=annotations))
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:

        def restored() -> dict[str, Any] | None:
            d = api.get("apps/v1", "Deployment", ns, "gone-bot")
            return d if d and d["spec"]["replicas"] == 3 else None

        deployment = _wait(restored, "the recorded 3 replicas to come back")
        annotations = deployment["metadata"]["annotations"]
        assert DISABLED not in annotations
        assert RESTORE_REQUEST not in annotations
        assert "annotation" in annotations["agentmedic.io/last-restore"]
    finally:
        op.stop()


def test_an_agent_scaled_back_up_by_hand_while_disabled_counts_as_a_persons_restore(
    cluster: Cluster,
) -> None:
    """kubectl scale on a disabled agent: the record goes (the person's count stays), so its
    rules are watched again. One still at 0 keeps its record."""
    api, ns = cluster.api, cluster.ns
    policy = api.create(_policy(ns, "p"))
    uid = policy["metadata"]["uid"]
    api.create(
        _deployment(ns, "scaled-bot", replicas=2, annotations=_disabled_record(ns, "p", uid))
    )
    api.create(
        _deployment(ns, "still-down", replicas=0, annotations=_disabled_record(ns, "p", uid))
    )
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:

        def cleared() -> dict[str, Any] | None:
            d = api.get("apps/v1", "Deployment", ns, "scaled-bot")
            return d if d and DISABLED not in d["metadata"]["annotations"] else None

        deployment = _wait(cleared, "the disabled record of the scaled-up agent to go")
        assert deployment["spec"]["replicas"] == 2  # the person's count, not the recorded 3
        note = deployment["metadata"]["annotations"]["agentmedic.io/last-restore"]
        assert "scaled to 2 replica(s) by hand" in note

        def restored_events() -> list[dict[str, Any]]:
            return [
                e
                for e in api.list("v1", "Event", ns)
                if e["involvedObject"]["name"] == "scaled-bot" and e["reason"] == "Restored"
            ]

        events = _wait(restored_events, "the Restored Event")
        assert "by hand" in events[0]["message"]
        time.sleep(3)  # a few more cycles: once only, and nothing for the agent still at 0
        assert len(restored_events()) == 1
        again = api.get("apps/v1", "Deployment", ns, "scaled-bot")
        assert again is not None
        assert again["spec"]["replicas"] == 2
        assert DISABLED not in again["metadata"]["annotations"]
        down = api.get("apps/v1", "Deployment", ns, "still-down")
        assert down is not None
        assert down["spec"]["replicas"] == 0
        assert DISABLED in down["metadata"]["annotations"]
    finally:
        op.stop()


@pytest.mark.emulator_only("counts the ConfigMap reads per cycle in the request history")
def test_a_model_config_map_shared_by_the_agents_is_read_once_a_cycle(
    cluster: Cluster,
) -> None:
    api, ns = cluster.api, cluster.ns
    assert isinstance(api, ApiEmulator)
    model = {"configMapKey": {"name": "fleet-config", "key": "model"}, "tiers": ["a", "b"]}
    api.create(_policy(ns, "p", model=model))
    for i in range(5):
        api.create(_deployment(ns, f"bot-{i}"))
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "fleet-config", "namespace": ns},
            "data": {"model": "a"},
        }
    )
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")

    def cycles() -> float:
        value = op.telemetry.registry.get_sample_value(
            "agentmedic_cycles_total", {"interval": "1s"}
        )
        return value or 0.0

    def reads() -> int:
        return sum(
            1
            for r in api.requests
            if r.method == "GET" and r.path.endswith("/configmaps/fleet-config")
        )

    try:
        _wait(lambda: cycles() >= 1, "a first cycle")
        api.clear_requests()
        before = cycles()
        time.sleep(3.5)
        during = cycles() - before
        assert during >= 2
        # Five agents, one read a cycle (one more for a cycle under way at either end).
        assert 1 <= reads() <= during + 1
    finally:
        op.stop()


@pytest.mark.parametrize("on_delete", ["keep", "restore"])
def test_deleting_a_policy_keeps_or_restores_what_it_changed(
    cluster: Cluster, on_delete: str
) -> None:
    api, ns = cluster.api, cluster.ns
    policy = api.create(_policy(ns, "p", recovery={"mode": "manual", "onDelete": on_delete}))
    api.create(
        _deployment(
            ns,
            "gone-bot",
            replicas=0,
            annotations=_disabled_record(ns, "p", policy["metadata"]["uid"]),
        )
    )
    api.create(_deployment(ns, "other-bot"))
    op = _operator(cluster, f"http://127.0.0.1:{_closed_port()}")
    try:
        _wait(lambda: _condition(cluster, "p", "Ready"), "the policy to be registered")
        _wait(
            lambda: (
                "agentmedic.io/finalizer"
                in (api.get(API, "AgentPolicy", ns, "p") or {})
                .get("metadata", {})
                .get("finalizers", [])
            ),
            "the operator's finalizer",
        )
        api.delete(API, "AgentPolicy", ns, "p")
        _wait(lambda: api.get(API, "AgentPolicy", ns, "p") is None, "the policy to be gone")
        deployment = api.get("apps/v1", "Deployment", ns, "gone-bot")
        assert deployment is not None
        annotations = deployment["metadata"]["annotations"]
        if on_delete == "keep":
            assert deployment["spec"]["replicas"] == 0
            assert DISABLED in annotations
            assert annotations[POLICY_DELETED].startswith(f"{ns}/p at ")
        else:
            assert deployment["spec"]["replicas"] == 3
            assert DISABLED not in annotations
        other = api.get("apps/v1", "Deployment", ns, "other-bot")
        assert other is not None
        assert POLICY_DELETED not in other["metadata"]["annotations"]
        assert other["spec"]["replicas"] == 2
    finally:
        op.stop()


def test_the_operator_authenticates_with_a_token_kubeconfig(
    cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A ServiceAccount token in a kubeconfig, loaded as `agentmedic run --kubeconfig` loads
    it (in-cluster credentials are stored the same way by the kubernetes client)."""
    api, ns = cluster.api, cluster.ns
    if isinstance(api, RealServer):
        token = str(api.operator_configuration().api_key["authorization"])
        kubeconfig = api.cluster.kubeconfig_for_token(token, tmp_path / "kubeconfig")
    else:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.create(_deployment(ns, "bot-1"))
    api.create(_policy(ns, "p"))
    op = OperatorThread(_settings(ns), kube_configuration(str(kubeconfig)))
    op.start()
    try:
        ready = _wait(lambda: _condition(cluster, "p", "Ready"), "Ready on the policy", 20.0)
        assert ready["status"] == "True"
    finally:
        op.stop()


def test_the_operator_works_with_a_client_certificate_kubeconfig(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """kind, minikube and the local control plane hand out kubeconfigs with a client
    certificate; the operator must authenticate its watches with it, as kopf and the
    kubernetes client do."""
    api, ns = cluster.api, cluster.ns
    api.create(_deployment(ns, "bot-1"))
    api.create(_policy(ns, "p"))
    op = OperatorThread(_settings(ns), api.client_configuration())  # the admin's certificate
    op.start()
    try:
        ready = _wait(lambda: _condition(cluster, "p", "Ready"), "Ready on the policy", 20.0)
        assert ready["status"] == "True"
    finally:
        op.stop()
