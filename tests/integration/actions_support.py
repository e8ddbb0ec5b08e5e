"""Builders and fixtures shared by the ``test_actions_*`` integration modules.

Every test runs on two API servers (ids ``emulated`` and ``real``, see
:mod:`tests.integration.kube_servers`): each module gets ONE emulator (module scope, started
in its own thread) and shares the session's real control plane. Each test gets its own
namespace holding an AgentPolicy (the owner of the Jobs it starts: a real garbage collector
deletes dependents of an owner that does not exist) and a fresh client. On the emulator, a
check at teardown that every request the test made is covered by
:data:`agentmedic.actions.REQUIRED_PERMISSIONS` (the chart's RBAC is built from that list);
on the real server, the namespace is deleted without waiting.

Assertions read the server's state, which both servers have; what only the emulator
records (requests) is asserted under ``if isinstance(api, ApiEmulator)`` as a stronger
check there, and tests that need fault injection are marked ``emulator_only``.
"""

from __future__ import annotations

import itertools
import uuid
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
from agentmedic.actions.events import COMPONENT
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    create_namespace,
    drop_namespace,
    wait_for,
)

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
FAST_RETRY = RetryPolicy(attempts=4, base=0.001, cap=0.01)
_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]  # namespaces stay unique on a control plane shared by a session
_policy_uids: dict[str, str] = {}


@pytest.fixture(scope="module", params=SERVERS)
def api(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    """The module's API server: its own emulator, or the session's real control plane."""
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator(history_limit=2_000) as emulator:
        yield emulator


@pytest.fixture
def ns(api: KubeServer) -> Iterator[str]:
    """A fresh namespace with the test's AgentPolicy; on the emulator, every request the
    test made must be RBAC-covered at teardown."""
    name = create_namespace(api, f"t{next(_namespaces)}-{_RUN}")
    policy = api.create(agent_policy(name))
    _policy_uids[name] = policy["metadata"]["uid"]
    if isinstance(api, ApiEmulator):
        api.clear_requests()
        api.clear_faults()
    yield name
    if not isinstance(api, ApiEmulator):
        drop_namespace(api, name)
        return
    uncovered = sorted(
        {
            f"{r.method} {r.path}: needs {permission_for_request(r.method, r.path)}"
            for r in api.requests
            if r.verb != "discovery"
            and permission_for_request(r.method, r.path) not in REQUIRED_PERMISSIONS
        }
    )
    assert not uncovered, "requests not covered by REQUIRED_PERMISSIONS:\n" + "\n".join(uncovered)


def agent_policy(namespace: str, name: str = "support-policy") -> dict[str, Any]:
    """The AgentPolicy whose decisions the tests execute (no operator reads it here)."""
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "support"}},
            "rules": [
                {
                    "name": "low-success",
                    "all": [{"metric": "success_rate", "window": "10m", "op": "<", "value": 0.8}],
                    "actions": [{"scaleToZero": {}}],
                }
            ],
        },
    }


class Sleeps(list[float]):
    """A fake ``sleep`` that records the pauses instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_executor(api: KubeServer, sleeps: Sleeps | None = None) -> ActionExecutor:
    """A fresh client and executor, as an operator (re)started from scratch would have."""
    kube = Kube.from_configuration(
        api.client_configuration(),
        retry=FAST_RETRY,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    return ActionExecutor(kube, now=lambda: NOW)


@pytest.fixture
def executor(api: KubeServer, sleeps: Sleeps) -> Iterator[ActionExecutor]:
    ex = make_executor(api, sleeps)
    yield ex
    ex.kube.close()


def policy_uid(namespace: str) -> str:
    """The uid the server gave the namespace's AgentPolicy (a made-up one for a namespace
    the ``ns`` fixture did not create, as in the tests without a server)."""
    return _policy_uids.get(namespace, "5f1e8c1a-0000-4000-8000-000000000001")


def policy_ref(namespace: str, name: str = "support-policy") -> PolicyRef:
    return PolicyRef(namespace=namespace, name=name, uid=policy_uid(namespace))


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


def get(api: KubeServer, namespace: str, name: str = "bot", kind: str = "Deployment") -> Any:
    """The agent's workload as stored (it must exist)."""
    return fetch(api, "apps/v1", kind, namespace, name)


def fetch(api: KubeServer, api_version: str, kind: str, namespace: str, name: str) -> Any:
    """Any object as stored (it must exist)."""
    obj = api.get(api_version, kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} is gone"
    return obj


def events(api: KubeServer, namespace: str) -> list[dict[str, Any]]:
    """agentmedic's Events in the namespace (a real cluster's controllers write their own)."""
    return [
        e
        for e in api.list("v1", "Event", namespace)
        if (e.get("source") or {}).get("component") == COMPONENT
        or e.get("reportingComponent") == COMPONENT
    ]


def event_reasons(api: KubeServer, namespace: str, kind: str | None = None) -> list[str]:
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


# Written by the deployment controller on its own schedule, never by agentmedic.
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/",)
_AGENT_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "ConfigMap"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)


def own_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """An object's annotations but those a real cluster's controllers add."""
    return {
        k: v
        for k, v in (obj["metadata"].get("annotations") or {}).items()
        if not k.startswith(_CONTROLLER_ANNOTATIONS)
    }


_CONTROLLER_CONFIG_MAPS = frozenset({"kube-root-ca.crt"})
"""ConfigMaps a real server's controllers create in a new namespace (the root CA publisher),
at a moment of their choosing: not agentmedic's, and no part of a before/after snapshot."""


def desired_state(api: KubeServer, namespace: str, *, with_events: bool = True) -> dict[str, Any]:
    """What agentmedic may change in a namespace, by object: annotations, labels, spec and
    data, plus its Events. Equal snapshots mean it wrote nothing that changed anything, on
    either server (a real one's controllers keep writing status and their annotations)."""
    out: dict[str, Any] = {}
    for api_version, kind in _AGENT_KINDS:
        for obj in api.list(api_version, kind, namespace):
            meta = obj["metadata"]
            if kind == "ConfigMap" and meta["name"] in _CONTROLLER_CONFIG_MAPS:
                continue  # published into every namespace by a controller, when it gets to it
            out[f"{kind}/{meta['name']}"] = {
                "annotations": own_annotations(obj),
                "labels": meta.get("labels") or {},
                "spec": obj.get("spec"),
                "data": obj.get("data"),
            }
    if not with_events:
        return out
    out["events"] = sorted(
        (e["metadata"]["name"], e.get("count"), e["message"]) for e in events(api, namespace)
    )
    return out


def finish_job(api: KubeServer, namespace: str, name: str) -> None:
    """The Job completes: on the emulator by playing the job controller, on the real server
    by waiting for its controller (kwok completes the pod)."""
    if isinstance(api, ApiEmulator):
        done = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        api.patch("batch/v1", "Job", namespace, name, {"status": done}, subresource="status")
        return

    def complete() -> bool:
        job = api.get("batch/v1", "Job", namespace, name) or {}
        conditions = (job.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(complete, f"Job {namespace}/{name} to complete", timeout=60)
