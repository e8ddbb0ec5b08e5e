"""The operator's handling of a policy's life: invalid specs, a metrics outage, a person's
restore request, and deletion (keep or restore). The real operator (kopf) runs against the
API emulator; the metrics backend is either absent (a closed loopback port) or a real
Prometheus fed by backfill.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentmedic.actions.record import DISABLED, POLICY, POLICY_DELETED, RESTORE_REQUEST
from agentmedic.api.durations import TIME_COMPRESSION_ENV
from agentmedic.operator.main import OperatorThread
from agentmedic.operator.settings import load_settings
from agentmedic.sandbox.emulator import ApiEmulator
from agentmedic.sandbox.receivers import NotificationReceivers, ReceiverKind

NS = "agents"
API = "agentmedic.io/v1alpha1"


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
    name: str, replicas: int = 2, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
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


def _policy(name: str, **spec: Any) -> dict[str, Any]:
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
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


def _disabled_record(policy: str, uid: str) -> dict[str, str]:
    record = {
        "replicas": 3,
        "policy": f"{NS}/{policy}",
        "policyUid": uid,
        "rule": "low-success",
        "episode": f"{uid}:{NS}/gone-bot:low-success:1700000000",
        "reason": "success_rate below 0.8",
        "evidence": "success_rate[30s] = 0.4 < 0.8",
        "at": "2026-11-27T12:00:00Z",
    }
    return {DISABLED: json.dumps(record), POLICY: f"{NS}/{policy}"}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ApiEmulator, NotificationReceivers]]:
    # The policies' 1s interval is below the 10s minimum: run them time-compressed.
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")
    with ApiEmulator() as emu, NotificationReceivers() as receivers:
        url = receivers.url_for(ReceiverKind.SLACK)
        emu.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": NS},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            }
        )
        yield emu, receivers


def _operator(emu: ApiEmulator, prometheus_url: str) -> OperatorThread:
    settings = load_settings(
        flags={
            "prometheus_url": prometheus_url,
            "namespaces": [NS],
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
        },
        environ={},
    )
    op = OperatorThread(settings, emu.client_configuration())
    op.start()
    return op


def _condition(emu: ApiEmulator, name: str, kind: str) -> dict[str, Any] | None:
    obj = emu.get(API, "AgentPolicy", NS, name) or {}
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def test_invalid_policy_gets_ready_false_with_the_message_and_others_carry_on(
    cluster: tuple[ApiEmulator, NotificationReceivers],
) -> None:
    emu, _ = cluster
    emu.create(_deployment("bot-1"))
    broken = _policy("broken")
    broken["spec"]["rules"][0]["actions"][1]["notify"]["channels"] = ["pager"]
    emu.create(broken)
    emu.create(_policy("fine"))
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")
    try:
        ready = _wait(lambda: _condition(emu, "broken", "Ready"), "Ready on the broken policy")
        assert ready["status"] == "False"
        assert ready["reason"] == "InvalidSpec"
        assert "spec.rules[0].actions[1].notify.channels[0]" in ready["message"]
        assert "'pager' is not defined" in ready["message"]
        fine = _wait(lambda: _condition(emu, "fine", "Ready"), "Ready on the valid policy")
        assert fine["status"] == "True"
        events = [e for e in emu.list("v1", "Event", NS) if e["involvedObject"]["name"] == "broken"]
        assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)
        # Fixing the spec is what brings it back.
        emu.patch(
            API,
            "AgentPolicy",
            NS,
            "broken",
            {"spec": {"rules": [_policy("x")["spec"]["rules"][0]]}},
        )
        _wait(
            lambda: (_condition(emu, "broken", "Ready") or {}).get("status") == "True",
            "the fixed policy to become Ready",
        )
    finally:
        op.stop()


def test_unavailable_metrics_change_nothing_say_why_and_notify_when_it_lasts(
    cluster: tuple[ApiEmulator, NotificationReceivers],
) -> None:
    emu, receivers = cluster
    emu.create(_deployment("bot-1"))
    emu.create(_policy("p", noData={"mode": "notify", "after": "3s", "channels": ["slack"]}))
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")
    try:
        cond = _wait(
            lambda: (
                (c := _condition(emu, "p", "MetricsAvailable")) and c["status"] == "False" and c
            ),
            "MetricsAvailable=False",
        )
        assert cond["reason"] == "Unreachable"
        assert "Unreachable" in cond["message"]
        assert "no remediation" in cond["message"]
        messages = receivers.wait_for(1, kind=ReceiverKind.SLACK, within=20)
        assert "metrics backend unavailable" in messages[0].json()["text"]
        deployment = emu.get("apps/v1", "Deployment", NS, "bot-1")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        assert DISABLED not in deployment["metadata"]["annotations"]
    finally:
        op.stop()


def test_a_person_asks_for_a_restore_with_an_annotation(
    cluster: tuple[ApiEmulator, NotificationReceivers],
) -> None:
    emu, _ = cluster
    policy = emu.create(_policy("p"))
    annotations = {**_disabled_record("p", policy["metadata"]["uid"]), RESTORE_REQUEST: "true"}
    emu.create(_deployment("gone-bot", replicas=0, annotations=annotations))
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")
    try:

        def restored() -> dict[str, Any] | None:
            d = emu.get("apps/v1", "Deployment", NS, "gone-bot")
            return d if d and d["spec"]["replicas"] == 3 else None

        deployment = _wait(restored, "the recorded 3 replicas to come back")
        annotations = deployment["metadata"]["annotations"]
        assert DISABLED not in annotations
        assert RESTORE_REQUEST not in annotations
        assert "annotation" in annotations["agentmedic.io/last-restore"]
    finally:
        op.stop()


def test_an_agent_scaled_back_up_by_hand_while_disabled_counts_as_a_persons_restore(
    cluster: tuple[ApiEmulator, NotificationReceivers],
) -> None:
    """kubectl scale on a disabled agent: the record goes (the person's count stays), so its
    rules are watched again. One still at 0 keeps its record."""
    emu, _ = cluster
    policy = emu.create(_policy("p"))
    uid = policy["metadata"]["uid"]
    emu.create(_deployment("scaled-bot", replicas=2, annotations=_disabled_record("p", uid)))
    emu.create(_deployment("still-down", replicas=0, annotations=_disabled_record("p", uid)))
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")
    try:

        def cleared() -> dict[str, Any] | None:
            d = emu.get("apps/v1", "Deployment", NS, "scaled-bot")
            return d if d and DISABLED not in d["metadata"]["annotations"] else None

        deployment = _wait(cleared, "the disabled record of the scaled-up agent to go")
        assert deployment["spec"]["replicas"] == 2  # the person's count, not the recorded 3
        note = deployment["metadata"]["annotations"]["agentmedic.io/last-restore"]
        assert "scaled to 2 replica(s) by hand" in note

        def restored_events() -> list[dict[str, Any]]:
            return [
                e
                for e in emu.list("v1", "Event", NS)
                if e["involvedObject"]["name"] == "scaled-bot" and e["reason"] == "Restored"
            ]

        events = _wait(restored_events, "the Restored Event")
        assert "by hand" in events[0]["message"]
        time.sleep(3)  # a few more cycles: once only, and nothing for the agent still at 0
        assert len(restored_events()) == 1
        again = emu.get("apps/v1", "Deployment", NS, "scaled-bot")
        assert again is not None
        assert again["spec"]["replicas"] == 2
        assert DISABLED not in again["metadata"]["annotations"]
        down = emu.get("apps/v1", "Deployment", NS, "still-down")
        assert down is not None
        assert down["spec"]["replicas"] == 0
        assert DISABLED in down["metadata"]["annotations"]
    finally:
        op.stop()


def test_a_model_config_map_shared_by_the_agents_is_read_once_a_cycle(
    cluster: tuple[ApiEmulator, NotificationReceivers],
) -> None:
    emu, _ = cluster
    model = {"configMapKey": {"name": "fleet-config", "key": "model"}, "tiers": ["a", "b"]}
    emu.create(_policy("p", model=model))
    for i in range(5):
        emu.create(_deployment(f"bot-{i}"))
    emu.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "fleet-config", "namespace": NS},
            "data": {"model": "a"},
        }
    )
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")

    def cycles() -> float:
        value = op.telemetry.registry.get_sample_value(
            "agentmedic_cycles_total", {"interval": "1s"}
        )
        return value or 0.0

    def reads() -> int:
        return sum(
            1
            for r in emu.requests
            if r.method == "GET" and r.path.endswith("/configmaps/fleet-config")
        )

    try:
        _wait(lambda: cycles() >= 1, "a first cycle")
        emu.clear_requests()
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
    cluster: tuple[ApiEmulator, NotificationReceivers], on_delete: str
) -> None:
    emu, _ = cluster
    policy = emu.create(_policy("p", recovery={"mode": "manual", "onDelete": on_delete}))
    emu.create(
        _deployment(
            "gone-bot", replicas=0, annotations=_disabled_record("p", policy["metadata"]["uid"])
        )
    )
    emu.create(_deployment("other-bot"))
    op = _operator(emu, f"http://127.0.0.1:{_closed_port()}")
    try:
        _wait(lambda: _condition(emu, "p", "Ready"), "the policy to be registered")
        _wait(
            lambda: (
                "agentmedic.io/finalizer"
                in (emu.get(API, "AgentPolicy", NS, "p") or {})
                .get("metadata", {})
                .get("finalizers", [])
            ),
            "the operator's finalizer",
        )
        emu.delete(API, "AgentPolicy", NS, "p")
        _wait(lambda: emu.get(API, "AgentPolicy", NS, "p") is None, "the policy to be gone")
        deployment = emu.get("apps/v1", "Deployment", NS, "gone-bot")
        assert deployment is not None
        annotations = deployment["metadata"]["annotations"]
        if on_delete == "keep":
            assert deployment["spec"]["replicas"] == 0
            assert DISABLED in annotations
            assert annotations[POLICY_DELETED].startswith(f"{NS}/p at ")
        else:
            assert deployment["spec"]["replicas"] == 3
            assert DISABLED not in annotations
        other = emu.get("apps/v1", "Deployment", NS, "other-bot")
        assert other is not None
        assert POLICY_DELETED not in other["metadata"]["annotations"]
        assert other["spec"]["replicas"] == 2
    finally:
        op.stop()
