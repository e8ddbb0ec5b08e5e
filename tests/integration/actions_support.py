"""Builders and fixtures shared by the ``test_actions_*`` integration modules.

Each module gets ONE emulator (module scope, started in its own thread); each test gets
its own namespace, a fresh client, and a check at teardown that every request it made is
covered by :data:`agentmedic.actions.REQUIRED_PERMISSIONS` (the chart's RBAC is built
from that list, so a call missing from it would fail in a real cluster).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agentmedic.actions import (
    REQUIRED_PERMISSIONS,
    ActionExecutor,
    ActionRecord,
    Kube,
    PolicyRef,
    RetryPolicy,
    WorkloadRef,
    permission_for_request,
)
from agentmedic.sandbox.emulator import ApiEmulator

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
FAST_RETRY = RetryPolicy(attempts=4, base=0.001, cap=0.01)
_namespaces = itertools.count(1)


@pytest.fixture(scope="module")
def api() -> Iterator[ApiEmulator]:
    with ApiEmulator(history_limit=2_000) as emulator:
        yield emulator


@pytest.fixture
def ns(api: ApiEmulator) -> Iterator[str]:
    """A fresh namespace per test; at teardown, every request must be RBAC-covered."""
    api.clear_requests()
    api.clear_faults()
    yield f"t{next(_namespaces)}"
    uncovered = sorted(
        {
            f"{r.method} {r.path}: needs {permission_for_request(r.method, r.path)}"
            for r in api.requests
            if r.verb != "discovery"
            and permission_for_request(r.method, r.path) not in REQUIRED_PERMISSIONS
        }
    )
    assert not uncovered, "requests not covered by REQUIRED_PERMISSIONS:\n" + "\n".join(uncovered)


class Sleeps(list[float]):
    """A fake ``sleep`` that records the pauses instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_executor(api: ApiEmulator, sleeps: Sleeps | None = None) -> ActionExecutor:
    """A fresh client and executor, as an operator (re)started from scratch would have."""
    kube = Kube.from_configuration(
        api.client_configuration(),
        retry=FAST_RETRY,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    return ActionExecutor(kube, now=lambda: NOW)


@pytest.fixture
def executor(api: ApiEmulator, sleeps: Sleeps) -> Iterator[ActionExecutor]:
    ex = make_executor(api, sleeps)
    yield ex
    ex.kube.close()


POLICY_UID = "5f1e8c1a-0000-4000-8000-000000000001"


def policy_ref(namespace: str, name: str = "support-policy") -> PolicyRef:
    return PolicyRef(namespace=namespace, name=name, uid=POLICY_UID)


def record(
    namespace: str,
    *,
    rule: str = "low-success",
    episode: str = "support-policy/bot/low-success/2025-03-14T09:00:00Z",
    dry_run: bool = False,
) -> ActionRecord:
    return ActionRecord(
        policy=policy_ref(namespace),
        rule=rule,
        episode=episode,
        reason="success rate below 80% for 10m",
        evidence="success_rate 0.62 < 0.8 over 15m (412 executions)",
        at=NOW,
        dry_run=dry_run,
    )


def container(
    name: str, env: dict[str, str], image: str = "ghcr.io/acme/agent:1.4"
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def workload(
    namespace: str,
    name: str = "bot",
    *,
    kind: str = "Deployment",
    replicas: int = 3,
    containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment or StatefulSet manifest for an agent."""
    selector = {"app": name}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "support", **selector, **(labels or {})},
    }
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": selector},
            "spec": {
                "containers": containers
                or [container("agent", {"OPENAI_MODEL": "gpt-4o", "LOG_LEVEL": "info"})]
            },
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def ref(namespace: str, name: str = "bot", kind: str = "Deployment") -> WorkloadRef:
    return WorkloadRef("StatefulSet" if kind == "StatefulSet" else "Deployment", namespace, name)


def get(api: ApiEmulator, namespace: str, name: str = "bot", kind: str = "Deployment") -> Any:
    """The agent's workload as stored (it must exist)."""
    return fetch(api, "apps/v1", kind, namespace, name)


def fetch(api: ApiEmulator, api_version: str, kind: str, namespace: str, name: str) -> Any:
    """Any object as stored (it must exist)."""
    obj = api.get(api_version, kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} is gone"
    return obj


def events(api: ApiEmulator, namespace: str) -> list[dict[str, Any]]:
    return api.list("v1", "Event", namespace)


def event_reasons(api: ApiEmulator, namespace: str, kind: str | None = None) -> list[str]:
    return sorted(
        e["reason"]
        for e in events(api, namespace)
        if kind is None or e["involvedObject"]["kind"] == kind
    )


def writes(api: ApiEmulator, *, except_events: bool = True) -> list[str]:
    """The write requests recorded, as ``METHOD path`` (Events left out by default)."""
    return [
        f"{r.method} {r.path}"
        for r in api.write_requests()
        if not (except_events and r.path.endswith("/events"))
    ]
