"""The API emulator against a real API server, on the points where they were found to differ.

Every test runs on both servers (ids ``emulated`` and ``real``). The first part shows the
differences that were fixed in the emulator: both servers now answer alike. The second part
pins the differences that remain (``test_emulator_differs_...``): each asserts the
emulator's behaviour and the real server's side by side, so a change on either side shows,
and tests/README.md links each from its list of known differences.
"""

from __future__ import annotations

import itertools
import json
import ssl
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from agentmedic_sandbox.emulator import ApiEmulator, ApiError
from tests.integration.conftest import agent_policy_crd
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    RealServer,
    create_namespace,
    drop_namespace,
    is_real,
    wait_for,
)

_names = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator() as emulator:
        yield emulator


@pytest.fixture
def ns(server: KubeServer) -> Iterator[str]:
    name = create_namespace(server, f"c{next(_names)}-{_RUN}")
    yield name
    drop_namespace(server, name)


def deployment(namespace: str, name: str = "bot", **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "ghcr.io/acme/agent:1"}]},
            },
            **spec,
        },
    }


def job(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "opt", "image": "ghcr.io/acme/optimizer:2"}],
                }
            },
        },
    }


def refused(call: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        call(*args, **kwargs)
    return err.value


# --------------------------------------------------------------------------- fixed: replicas


@pytest.mark.parametrize("replicas", [2**31, 10**12])
def test_replicas_beyond_int32_cannot_be_decoded_on_create(
    server: KubeServer, ns: str, replicas: int
) -> None:
    error = refused(server.create, deployment(ns, replicas=replicas))

    assert (error.code, error.reason) == (400, "BadRequest")
    assert error.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
        f"number {replicas} into Go struct field DeploymentSpec.spec.replicas of type int32"
    )


@pytest.mark.parametrize(
    ("patch_type", "patch"),
    [
        ("merge", {"spec": {"replicas": 2**31}}),
        ("json", [{"op": "replace", "path": "/spec/replicas", "value": 10**12}]),
    ],
    ids=["merge", "json"],
)
def test_replicas_beyond_int32_in_a_json_or_merge_patch_are_an_invalid_patch(
    server: KubeServer, ns: str, patch_type: str, patch: Any
) -> None:
    server.create(deployment(ns))

    error = refused(server.patch, "apps/v1", "Deployment", ns, "bot", patch, patch_type=patch_type)

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message.startswith(' "" is invalid: patch: Invalid value: ')
    assert "Go struct field DeploymentSpec.spec.replicas of type int32" in error.message
    assert [c["field"] for c in (error.details or {})["causes"]] == ["patch"]
    assert server.get("apps/v1", "Deployment", ns, "bot")["spec"]["replicas"] == 1  # type: ignore[index]


def test_a_strategic_merge_patch_wraps_replicas_beyond_int32_to_a_negative_count(
    server: KubeServer, ns: str
) -> None:
    """Strategic merge converts maps to Go structs without range checks: 2^31 is -2^31."""
    server.create(deployment(ns))

    error = refused(
        server.patch,
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        {"spec": {"replicas": 2**31}},
        patch_type="strategic",
    )

    assert error.code == 422
    assert error.message == (
        'Deployment.apps "bot" is invalid: spec.replicas: Invalid value: -2147483648: '
        "must be greater than or equal to 0"
    )


def test_a_scale_patch_beyond_int32_is_an_invalid_patch(server: KubeServer, ns: str) -> None:
    server.create(deployment(ns))

    error = refused(
        server.patch,
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        {"spec": {"replicas": 2**31}},
        subresource="scale",
    )

    assert error.code == 422
    assert "Go struct field ScaleSpec.spec.replicas of type int32" in error.message


# --------------------------------------------------------------------------- fixed: env values


def test_an_empty_env_value_is_left_out_of_what_the_server_sends_back(
    server: KubeServer, ns: str
) -> None:
    body = deployment(ns)
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_MODEL", "value": ""},
        {"name": "LOG_LEVEL", "value": "info"},
    ]

    created = server.create(body)
    patched = server.patch(
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/env/1/value", "value": ""}],
        patch_type="json",
    )

    assert created["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "OPENAI_MODEL"},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "OPENAI_MODEL"},
        {"name": "LOG_LEVEL"},
    ]
    # So a JSON patch cannot `test` an empty value: the path does not exist.
    error = refused(
        server.patch,
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        [{"op": "test", "path": "/spec/template/spec/containers/0/env/0/value", "value": ""}],
        patch_type="json",
    )
    assert error.code == 422


# --------------------------------------------------------------------------- fixed: selector


def test_a_deployments_selector_is_immutable(server: KubeServer, ns: str) -> None:
    server.create(deployment(ns))
    change = {
        "spec": {
            "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}},
        }
    }

    error = refused(server.patch, "apps/v1", "Deployment", ns, "bot", change)

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        'Deployment.apps "bot" is invalid: spec.selector: Invalid value: '
        '{"matchLabels":{"app":"other"}}: field is immutable'
    )
    assert (error.details or {})["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: {"matchLabels":{"app":"other"}}: field is immutable',
            "field": "spec.selector",
        }
    ]


def test_a_deployment_keeps_accepting_its_unchanged_selector(server: KubeServer, ns: str) -> None:
    server.create(deployment(ns))
    same = {"spec": {"selector": {"matchLabels": {"app": "bot"}}, "replicas": 2}}

    assert server.patch("apps/v1", "Deployment", ns, "bot", same)["spec"]["replicas"] == 2


# --------------------------------------------------------------------------- fixed: Job names


def test_a_job_name_longer_than_a_label_value_is_invalid(server: KubeServer, ns: str) -> None:
    name = "prompt-optimization-" + "x" * 50  # 70 characters

    error = refused(server.create, job(ns, name))

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        f'Job.batch "{name}" is invalid: spec.template.labels: Invalid value: "{name}": '
        "must be no more than 63 bytes"
    )


def test_a_job_name_of_63_characters_is_accepted(server: KubeServer, ns: str) -> None:
    name = "j" * 63

    assert server.create(job(ns, name))["metadata"]["name"] == name


# --------------------------------------------------------------------------- fixed: Events


def _event(namespace: str, involved_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "bot.1", "namespace": namespace},
        "involvedObject": {"kind": "Deployment", "name": "bot", "namespace": involved_namespace},
        "reason": "ScaledToZero",
        "message": "scaled to zero",
        "type": "Normal",
    }


def test_an_event_about_an_object_in_another_namespace_is_invalid(
    server: KubeServer, ns: str
) -> None:
    error = refused(server.create, _event(ns, "elsewhere"))

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        'Event "bot.1" is invalid: involvedObject.namespace: Invalid value: "elsewhere": '
        "does not match event.namespace"
    )
    assert (error.details or {})["causes"][0]["field"] == "involvedObject.namespace"


def test_an_event_in_the_namespace_of_its_object_is_accepted(server: KubeServer, ns: str) -> None:
    assert server.create(_event(ns, ns))["involvedObject"]["namespace"] == ns


# --------------------------------------------------------------------------- fixed: causes


def test_a_status_cause_carries_its_field_beside_the_message(server: KubeServer, ns: str) -> None:
    error = refused(server.create, deployment(ns, replicas=-1))

    assert error.code == 422
    assert (error.details or {})["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -1: must be greater than or equal to 0",
            "field": "spec.replicas",
        }
    ]


# ============================================================ remaining differences, pinned


def test_emulator_differs_by_running_no_controllers(server: KubeServer, ns: str) -> None:
    """A real Deployment gets a ReplicaSet and Running pods (kwok); the emulator's none."""
    server.create(deployment(ns, replicas=2))

    if is_real(server):

        def running() -> list[dict[str, Any]] | None:
            pods = server.list("v1", "Pod", ns, label_selector="app=bot")
            up = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            return up if len(up) == 2 else None

        wait_for(running, "two Running pods", timeout=60)
        assert len(server.list("apps/v1", "ReplicaSet", ns)) == 1
    else:
        assert server.list("apps/v1", "ReplicaSet", ns) == []
        assert server.list("v1", "Pod", ns) == []
        assert "status" not in server.get("apps/v1", "Deployment", ns, "bot")  # type: ignore[operator]


def test_emulator_differs_by_creating_a_missing_namespace(server: KubeServer) -> None:
    missing = f"never-created-{uuid.uuid4().hex[:8]}"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": missing},
    }

    if is_real(server):
        error = refused(server.create, config_map)
        assert (error.code, error.message) == (404, f'namespaces "{missing}" not found')
    else:
        server.create(config_map)
        assert server.get("v1", "Namespace", None, missing) is not None
        drop_namespace(server, missing)


def test_emulator_differs_by_defaulting_only_replicas(server: KubeServer, ns: str) -> None:
    body = deployment(ns)
    del body["spec"]["replicas"]

    spec = server.create(body)["spec"]

    assert spec["replicas"] == 1
    if is_real(server):
        assert spec["revisionHistoryLimit"] == 10
        assert spec["strategy"]["type"] == "RollingUpdate"
        assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    else:
        assert "revisionHistoryLimit" not in spec
        assert "strategy" not in spec
        assert "imagePullPolicy" not in spec["template"]["spec"]["containers"][0]


def test_emulator_differs_by_not_validating_pod_templates(server: KubeServer, ns: str) -> None:
    body = deployment(ns)
    body["spec"]["template"]["spec"]["containers"] = []

    if is_real(server):
        error = refused(server.create, body)
        assert error.code == 422
        assert "spec.template.spec.containers: Required value" in error.message
    else:
        assert server.create(body)["spec"]["template"]["spec"]["containers"] == []


def test_emulator_differs_by_letting_a_jobs_template_change(server: KubeServer, ns: str) -> None:
    server.create(job(ns, "optimize"))
    change = {"spec": {"template": {"spec": {"activeDeadlineSeconds": 60}}}}

    if is_real(server):
        error = refused(server.patch, "batch/v1", "Job", ns, "optimize", change)
        assert error.code == 422
        assert "field is immutable" in error.message
    else:
        patched = server.patch("batch/v1", "Job", ns, "optimize", change)
        assert patched["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 60


def test_emulator_differs_by_collecting_garbage_inside_the_delete(
    server: KubeServer, ns: str
) -> None:
    owner = server.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": ns}}
    )
    server.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "namespace": ns,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
    )

    server.delete("v1", "ConfigMap", ns, "owner")

    if is_real(server):  # the garbage collector removes it moments later
        wait_for(
            lambda: server.get("v1", "ConfigMap", ns, "dependent") is None,
            "the garbage collector to delete the dependent",
        )
    else:
        assert server.get("v1", "ConfigMap", ns, "dependent") is None


def test_emulator_differs_by_keeping_core_and_events_k8s_io_events_apart(
    server: KubeServer, ns: str
) -> None:
    server.create(_event(ns, ns))

    through_events_api = server.list("events.k8s.io/v1", "Event", ns)

    if is_real(server):
        assert [e["metadata"]["name"] for e in through_events_api] == ["bot.1"]
        assert through_events_api[0]["regarding"]["name"] == "bot"
    else:
        assert through_events_api == []


def test_emulator_differs_by_not_validating_hpas(server: KubeServer, ns: str) -> None:
    """Scaling to zero needs an Object or External metric to wake up from; the emulator
    checks nothing of an HPA's spec."""
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bot", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bot"},
            "minReplicas": 0,
            "maxReplicas": 10,
        },
    }

    if is_real(server):
        error = refused(server.create, hpa)
        assert error.code == 422
        assert error.message.endswith(
            "spec.metrics: Forbidden: must specify at least one Object or External metric to "
            "support scaling to zero replicas"
        )
    else:
        assert server.create(hpa)["spec"]["minReplicas"] == 0


def test_emulator_differs_by_keeping_unknown_fields_of_built_in_kinds(
    server: KubeServer, ns: str
) -> None:
    """A real server drops a field its Go types lack (and with ``fieldValidation=Strict``
    refuses it); the emulator has no schemas of built-in kinds, so it stores it."""
    body = deployment(ns)
    body["spec"]["replicass"] = 2
    url = f"{server.url}/apis/apps/v1/namespaces/{ns}/deployments"

    strict = _raw(server, "POST", f"{url}?fieldValidation=Strict", body)
    created = server.create({**body, "metadata": {"name": "default-validation", "namespace": ns}})

    if is_real(server):
        assert strict.status_code == 400
        assert 'unknown field "spec.replicass"' in strict.json()["message"]
        assert "replicass" not in created["spec"]
    else:
        assert strict.status_code == 201
        assert strict.json()["spec"]["replicass"] == 2
        assert created["spec"]["replicass"] == 2


def test_emulator_differs_by_not_serving_server_side_apply(server: KubeServer, ns: str) -> None:
    server.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": ns}}
    )
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps/applied?fieldManager=test"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": ns},
        "data": {"a": "1"},
    }

    answer = _raw(server, "PATCH", url, body, content_type="application/apply-patch+yaml")

    if is_real(server):
        assert answer.status_code == 200
        assert answer.json()["data"] == {"a": "1"}
        assert "test" in [m["manager"] for m in answer.json()["metadata"]["managedFields"]]
    else:
        assert answer.status_code == 415


def test_emulator_differs_by_allowing_every_request(server: KubeServer) -> None:
    """No authentication or RBAC on the emulator; a real server refuses an anonymous list."""
    verify: Any = False
    if isinstance(server, RealServer):
        verify = ssl.create_default_context(cafile=server.client_configuration().ssl_ca_cert)
    answer = httpx.get(f"{server.url}/api/v1/secrets", verify=verify)

    assert answer.status_code == (403 if is_real(server) else 200)


def test_emulator_differs_by_not_enforcing_the_cel_cost_budget(server: KubeServer) -> None:
    """CEL rules over an unbounded list are refused by a real server for their estimated
    cost; the emulator does not estimate costs. (The generated CRD bounds its lists, so the
    real server accepts it: see the test below.)"""
    crd = agent_policy_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["rules"]["maxItems"]
    crd["metadata"]["name"] = "agentpolicies.conformance.agentmedic.io"
    crd["spec"]["group"] = "conformance.agentmedic.io"

    if is_real(server):
        assert isinstance(server, RealServer)
        error = refused(server.request_dry_run_create, crd)
        assert error.code == 422
        assert "estimated rule cost exceeds budget" in error.message
    else:
        assert server.create(crd)["metadata"]["name"] == crd["metadata"]["name"]


def test_the_generated_agent_policy_crd_is_accepted(
    server: KubeServer, request: pytest.FixtureRequest
) -> None:
    crd = agent_policy_crd()
    crd["metadata"]["name"] = "agentpolicies.accepted.agentmedic.io"
    crd["spec"]["group"] = "accepted.agentmedic.io"

    if isinstance(server, RealServer):
        server.request_dry_run_create(crd)
    else:
        server.create(crd)


def _raw(
    server: KubeServer,
    method: str,
    url: str,
    body: Any,
    *,
    content_type: str = "application/json",
) -> httpx.Response:
    """A request with the admin's credentials, for what the protocol does not cover."""
    if isinstance(server, RealServer):
        return server.raw(method, url, body, content_type=content_type)
    return httpx.request(method, url, json=body, headers={"Content-Type": content_type})


def _get(server: KubeServer, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET with the admin's credentials and extra headers (watches, Tables, OpenAPI)."""
    if isinstance(server, RealServer):
        return server.send_get(url, headers=headers)
    return httpx.get(url, headers=headers, timeout=30.0)


def _config_map(namespace: str, name: str, **meta: Any) -> dict[str, Any]:
    """A ConfigMap labelled ``pin`` (a real namespace also holds ``kube-root-ca.crt``; the
    list and watch tests select by the label)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"pin": "1"}, **meta},
    }


def _watch_events(server: KubeServer, url: str) -> list[dict[str, Any]]:
    """The events of a watch that ends by its own ``timeoutSeconds``."""
    answer = _get(server, url)
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def _release(server: KubeServer, namespace: str, name: str) -> None:
    """Drop a ConfigMap's finalizers so it (and its namespace) can go."""
    if server.get("v1", "ConfigMap", namespace, name) is not None:
        server.patch("v1", "ConfigMap", namespace, name, {"metadata": {"finalizers": None}})


_HOLD = "pins.agentmedic.io/hold"


# --------------------------------------------------------------- pinned: lists and watches


def test_emulator_differs_by_ignoring_a_lists_resource_version(server: KubeServer, ns: str) -> None:
    """A real list at ``resourceVersion`` with ``resourceVersionMatch=Exact`` shows that
    revision; the emulator always lists the latest state."""
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=pin"
    server.create(_config_map(ns, "a"))
    then = _get(server, url).json()["metadata"]["resourceVersion"]
    server.create(_config_map(ns, "b"))

    answer = _get(server, f"{url}&resourceVersion={then}&resourceVersionMatch=Exact")

    names = [item["metadata"]["name"] for item in answer.json()["items"]]
    assert names == (["a"] if is_real(server) else ["a", "b"])


def test_emulator_differs_by_continuing_a_list_in_the_current_state(
    server: KubeServer, ns: str
) -> None:
    """A real ``continue`` reads the snapshot of the first page; the emulator's resumes
    after the last name in the current state, so an object created since shows up."""
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=pin"
    server.create(_config_map(ns, "a"))
    server.create(_config_map(ns, "c"))
    first = _get(server, f"{url}&limit=1").json()
    server.create(_config_map(ns, "b"))

    token = first["metadata"]["continue"]
    rest = _get(server, f"{url}&limit=10&continue={token}").json()

    names = [item["metadata"]["name"] for item in rest["items"]]
    assert [item["metadata"]["name"] for item in first["items"]] == ["a"]
    assert names == (["c"] if is_real(server) else ["b", "c"])


def test_emulator_differs_by_serving_a_too_new_resource_version(
    server: KubeServer, ns: str
) -> None:
    """A ``resourceVersion`` newer than the newest: a real list waits about 3 s, then answers
    504 "Too large resource version", and a real watch sends nothing older than it; the
    emulator lists the latest state and watches from now."""
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=pin"
    future = int(_get(server, url).json()["metadata"]["resourceVersion"]) + 1_000_000

    listed = _get(server, f"{url}&resourceVersion={future}&resourceVersionMatch=NotOlderThan")
    with ThreadPoolExecutor(1) as pool:
        watch = pool.submit(
            _watch_events, server, f"{url}&watch=true&resourceVersion={future}&timeoutSeconds=1"
        )
        if isinstance(server, ApiEmulator):  # the change must come after the watch starts
            wait_for(lambda: server.open_watches, "the watch to start", timeout=5)
        server.create(_config_map(ns, "late"))
        events = watch.result(timeout=10)

    if is_real(server):
        assert listed.status_code == 504
        assert "Too large resource version" in listed.json()["message"]
        assert events == []
    else:
        assert listed.status_code == 200
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "late")]


def test_emulator_differs_by_sending_no_bookmark_before_a_watch_times_out(
    server: KubeServer, ns: str
) -> None:
    """A real server sends a BOOKMARK about 2 s before a watch's ``timeoutSeconds``; the
    emulator only every ``bookmark_interval`` (60 s by default)."""
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=pin"
    newest = _get(server, url).json()["metadata"]["resourceVersion"]

    events = _watch_events(
        server,
        f"{url}&watch=true&allowWatchBookmarks=true&resourceVersion={newest}&timeoutSeconds=3",
    )

    if is_real(server):
        assert events
        assert {e["type"] for e in events} == {"BOOKMARK"}
    else:
        assert events == []


def test_emulator_differs_by_not_checking_resource_version_match_of_initial_events(
    server: KubeServer, ns: str
) -> None:
    """``sendInitialEvents`` needs ``resourceVersionMatch=NotOlderThan`` on a real server."""
    server.create(_config_map(ns, "a"))
    url = (
        f"{server.url}/api/v1/namespaces/{ns}/configmaps"
        "?labelSelector=pin&watch=true&allowWatchBookmarks=true&sendInitialEvents=true&timeoutSeconds=1"
    )

    answer = _get(server, url)

    if is_real(server):
        assert answer.status_code == 422
        assert "resourceVersionMatch" in answer.json()["message"]
    else:
        assert answer.status_code == 200
        types = [json.loads(line)["type"] for line in answer.text.splitlines() if line.strip()]
        assert types == ["ADDED", "BOOKMARK"]


# ------------------------------------------------------------ pinned: deletion and owners


def test_emulator_differs_by_deleting_a_foreground_owner_at_once(
    server: KubeServer, ns: str
) -> None:
    """A real ``Foreground`` delete keeps the owner with a ``foregroundDeletion`` finalizer
    while a ``blockOwnerDeletion`` dependent remains; the emulator removes the owner at once
    and deletes the dependent as in ``Background``."""
    owner = server.create(_config_map(ns, "owner"))
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    server.create(_config_map(ns, "dependent", ownerReferences=[reference], finalizers=[_HOLD]))
    try:
        answer = server.delete("v1", "ConfigMap", ns, "owner", propagation_policy="Foreground")

        if is_real(server):
            assert answer is not None
            assert "foregroundDeletion" in answer["metadata"]["finalizers"]
            wait_for(
                lambda: (
                    (server.get("v1", "ConfigMap", ns, "dependent") or {})
                    .get("metadata", {})
                    .get("deletionTimestamp")
                ),
                "the garbage collector to delete the dependent",
                timeout=10,
            )
            still = server.get("v1", "ConfigMap", ns, "owner")
            assert still is not None
            assert "foregroundDeletion" in still["metadata"]["finalizers"]
        else:
            assert answer is not None
            assert "finalizers" not in answer["metadata"]
            assert server.get("v1", "ConfigMap", ns, "owner") is None
            dependent = server.get("v1", "ConfigMap", ns, "dependent")
            assert dependent is not None
            assert dependent["metadata"]["deletionTimestamp"]
    finally:
        _release(server, ns, "dependent")


def test_emulator_differs_by_honouring_an_owner_in_another_namespace(
    server: KubeServer, ns: str
) -> None:
    """A real garbage collector looks for a namespaced owner in the dependent's namespace,
    finds none and deletes the dependent; the emulator keeps it while the owner lives."""
    other = create_namespace(server, f"{ns}-owner")
    try:
        owner = server.create(_config_map(other, "owner"))
        reference = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": owner["metadata"]["uid"],
        }
        server.create(_config_map(ns, "dependent", ownerReferences=[reference]))

        if is_real(server):
            wait_for(
                lambda: server.get("v1", "ConfigMap", ns, "dependent") is None,
                "the garbage collector to delete the dependent of an absent owner",
                timeout=10,
            )
            assert server.get("v1", "ConfigMap", other, "owner") is not None
        else:
            assert server.get("v1", "ConfigMap", ns, "dependent") is not None
            server.delete("v1", "ConfigMap", other, "owner")
            assert server.get("v1", "ConfigMap", ns, "dependent") is None
    finally:
        drop_namespace(server, other)


def test_emulator_differs_by_removing_a_namespaces_contents_at_once(server: KubeServer) -> None:
    """A real namespace is Terminating while the namespace controller deletes its contents,
    and stays until their finalizers are done; the emulator removes everything inside the
    DELETE, finalizers or not."""
    name = create_namespace(server, f"c{next(_names)}-{_RUN}-gone")
    server.create(_config_map(name, "held", finalizers=[_HOLD]))
    try:
        answer = server.delete("v1", "Namespace", None, name)

        if is_real(server):
            assert answer is not None
            assert answer["status"]["phase"] == "Terminating"
            # The finalizer holds the ConfigMap, and the ConfigMap the namespace.
            assert server.get("v1", "ConfigMap", name, "held") is not None
            namespace = server.get("v1", "Namespace", None, name)
            assert namespace is not None
            assert namespace["status"]["phase"] == "Terminating"
        else:
            assert server.get("v1", "Namespace", None, name) is None
            assert server.get("v1", "ConfigMap", name, "held") is None
    finally:
        _release(server, name, "held")


def test_emulator_differs_by_ignoring_a_pods_grace_period(server: KubeServer, ns: str) -> None:
    """A real server keeps a Pod bound to a node for its grace period (30 s by default)
    until the kubelet confirms; the emulator deletes it at once."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "graceful", "namespace": ns},
        "spec": {
            "nodeName": "pins-no-such-node",
            "automountServiceAccountToken": False,
            "containers": [{"name": "agent", "image": "ghcr.io/acme/agent:1"}],
        },
    }
    _create_retrying(server, pod)
    try:
        answer = server.delete("v1", "Pod", ns, "graceful")

        if is_real(server):
            assert answer is not None
            assert answer["metadata"]["deletionGracePeriodSeconds"] == 30
            assert server.get("v1", "Pod", ns, "graceful") is not None
        else:
            assert server.get("v1", "Pod", ns, "graceful") is None
    finally:
        if is_real(server):
            url = f"{server.url}/api/v1/namespaces/{ns}/pods/graceful"
            _raw(server, "DELETE", url, {"gracePeriodSeconds": 0})


def _create_retrying(server: KubeServer, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``, waiting out a fresh namespace's missing default ServiceAccount."""

    def attempt() -> dict[str, Any] | None:
        try:
            return server.create(obj)
        except ApiError as exc:
            if exc.code == 403 and "serviceaccount" in exc.message.lower():
                return None
            raise

    return wait_for(attempt, f"{obj['kind']} {obj['metadata']['name']} to be created", timeout=10)


def test_emulator_differs_by_answering_a_delete_with_the_object(
    server: KubeServer, ns: str
) -> None:
    """A real server answers a ConfigMap's immediate DELETE with a success ``Status``."""
    server.create(_config_map(ns, "gone"))

    answer = server.delete("v1", "ConfigMap", ns, "gone")

    assert answer is not None
    if is_real(server):
        assert (answer["kind"], answer["status"]) == ("Status", "Success")
        assert answer["details"]["name"] == "gone"
    else:
        assert answer["kind"] == "ConfigMap"
        assert answer["metadata"]["resourceVersion"]


# ---------------------------------------------------------- pinned: built-in kinds' checks


def test_emulator_differs_by_keeping_empty_fields_other_than_env_values(
    server: KubeServer, ns: str
) -> None:
    """A real server leaves every empty ``omitempty`` field out; the emulator only
    ``env[].value``."""
    created = server.create(_config_map(ns, "empty", labels={}) | {"data": {}})

    if is_real(server):
        assert "labels" not in created["metadata"]
        assert "data" not in created
    else:
        assert created["metadata"]["labels"] == {}
        assert created["data"] == {}


def test_emulator_differs_by_not_validating_finalizer_names(server: KubeServer, ns: str) -> None:
    body = _config_map(ns, "odd", finalizers=["not a finalizer!"])

    if is_real(server):
        error = refused(server.create, body)
        assert error.code == 422
        assert "metadata.finalizers[0]: Invalid value" in error.message
    else:
        assert server.create(body)["metadata"]["finalizers"] == ["not a finalizer!"]


def test_emulator_differs_by_not_matching_a_selector_with_the_template(
    server: KubeServer, ns: str
) -> None:
    body = deployment(ns)
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}

    if is_real(server):
        error = refused(server.create, body)
        assert error.code == 422
        assert "`selector` does not match template `labels`" in error.message
    else:
        assert server.create(body)["spec"]["selector"] == {"matchLabels": {"app": "other"}}


def test_emulator_differs_by_knowing_merge_keys_by_field_name(server: KubeServer, ns: str) -> None:
    """A pod template's ``schedulingGates`` merge by ``name`` on a real server (the type's
    patch metadata); the emulator's table of merge keys lacks them, so it replaces the list."""
    body = deployment(ns)
    body["spec"]["template"]["spec"]["schedulingGates"] = [{"name": "pins.agentmedic.io/a"}]
    server.create(body)

    patched = server.patch(
        "apps/v1",
        "Deployment",
        ns,
        "bot",
        {"spec": {"template": {"spec": {"schedulingGates": [{"name": "pins.agentmedic.io/b"}]}}}},
        patch_type="strategic",
    )

    gates = [g["name"] for g in patched["spec"]["template"]["spec"]["schedulingGates"]]
    if is_real(server):
        assert gates == ["pins.agentmedic.io/b", "pins.agentmedic.io/a"]
    else:
        assert gates == ["pins.agentmedic.io/b"]


# ------------------------------------------------------------------ pinned: protocol


def test_emulator_differs_by_serving_json_and_legacy_discovery_only(
    server: KubeServer, ns: str
) -> None:
    """No Table output, protobuf, aggregated discovery or OpenAPI documents on the emulator."""
    url = f"{server.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=pin"
    table = _get(server, url, {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    proto = _get(server, url, {"Accept": "application/vnd.kubernetes.protobuf"})
    discovery = _get(
        server,
        f"{server.url}/apis",
        {"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    )
    openapi = _get(server, f"{server.url}/openapi/v3")

    if is_real(server):
        assert table.json()["kind"] == "Table"
        assert proto.headers["Content-Type"] == "application/vnd.kubernetes.protobuf"
        assert discovery.json()["kind"] == "APIGroupDiscoveryList"
        assert openapi.status_code == 200
    else:
        assert table.json()["kind"] == "ConfigMapList"
        assert proto.headers["Content-Type"].startswith("application/json")
        assert discovery.json()["kind"] == "APIGroupList"
        assert openapi.status_code == 404


# ----------------------------------------------------------- pinned: custom resources

_WIDGETS = "widgets.pins.agentmedic.io"


def _widget_crd(name: str = _WIDGETS) -> dict[str, Any]:
    plural, group = name.split(".", 1)
    spec = {
        "type": "object",
        "properties": {
            "size": {"type": "integer", "default": 3},
            "count": {"type": "integer", "multipleOf": 2},
            "port": {"x-kubernetes-int-or-string": True},
            "embedded": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "negative": {"type": "integer", "not": {"minimum": 0}},
            "either": {"type": "integer", "oneOf": [{"minimum": 5}, {"maximum": 10}]},
            "both": {"type": "integer", "allOf": [{"minimum": 5}, {"maximum": 10}]},
            "level": {
                "type": "integer",
                "x-kubernetes-validations": [
                    {
                        "rule": "self <= 10",
                        "messageExpression": "'level must be at most ten'",
                    }
                ],
            },
            "floor": {
                "type": "integer",
                "x-kubernetes-validations": [
                    {"rule": "self >= oldSelf", "message": "floor may not go down"}
                ],
            },
        },
    }
    kind = plural[:-1].capitalize()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def widgets(server: KubeServer) -> Iterator[str]:
    """The Widget CRD installed (and Established) on the server; yields its apiVersion."""
    crd = _widget_crd()
    if isinstance(server, RealServer):
        server.install_crd(crd)
    else:
        server.create(crd)
    yield "pins.agentmedic.io/v1"
    server.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, _WIDGETS)


def _widget(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pins.agentmedic.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_emulator_differs_by_not_applying_crd_defaults(
    server: KubeServer, ns: str, widgets: str
) -> None:
    spec = server.create(_widget(ns, "plain"))["spec"]

    assert spec == ({"size": 3} if is_real(server) else {})


@pytest.mark.parametrize(
    ("field", "value", "real_message"),
    [
        ("count", 3, "spec.count: Invalid value: 3: spec.count in body should be a multiple of 2"),
        ("port", True, "spec.port: Invalid value:"),
        ("embedded", {"spec": {}}, "spec.embedded.apiVersion: Required value"),
        ("negative", 1, '"spec.negative" must not validate the schema (not)'),
        ("either", 7, '"spec.either" must validate one and only one schema (oneOf)'),
        ("both", 11, "spec.both: Invalid value:"),
    ],
    ids=["multipleOf", "int-or-string", "embedded-resource", "not", "oneOf", "allOf"],
)
def test_emulator_differs_by_not_checking_every_schema_keyword(
    server: KubeServer, ns: str, widgets: str, field: str, value: Any, real_message: str
) -> None:
    body = _widget(ns, f"w-{field}", **{field: value})

    if is_real(server):
        error = refused(server.create, body)
        assert error.code == 422
        assert real_message in error.message
    else:
        assert server.create(body)["spec"][field] == value


def test_emulator_differs_by_ignoring_message_expressions(
    server: KubeServer, ns: str, widgets: str
) -> None:
    error = refused(server.create, _widget(ns, "high", level=11))

    assert error.code == 422
    if is_real(server):
        assert error.message.endswith("spec.level: Invalid value: 11: level must be at most ten")
    else:
        assert "level must be at most ten" not in error.message


def test_emulator_differs_by_skipping_transition_rules(
    server: KubeServer, ns: str, widgets: str
) -> None:
    server.create(_widget(ns, "floored", floor=5))
    lower = {"spec": {"floor": 4}}

    if is_real(server):
        error = refused(server.patch, widgets, "Widget", ns, "floored", lower)
        assert error.code == 422
        assert "floor may not go down" in error.message
    else:
        assert server.patch(widgets, "Widget", ns, "floored", lower)["spec"]["floor"] == 4


def test_emulator_differs_by_pruning_unknown_fields_without_a_warning(
    server: KubeServer, ns: str, widgets: str
) -> None:
    url = f"{server.url}/apis/pins.agentmedic.io/v1/namespaces/{ns}/widgets"

    default = _raw(server, "POST", url, _widget(ns, "warned", bogus=1))
    strict = _raw(server, "POST", f"{url}?fieldValidation=Strict", _widget(ns, "strict", bogus=1))

    assert default.status_code == 201
    assert "bogus" not in default.json()["spec"]
    if is_real(server):
        assert default.headers["Warning"] == r'299 - "unknown field \"spec.bogus\""'
        assert strict.status_code == 400
        assert 'unknown field "spec.bogus"' in strict.json()["message"]
    else:
        assert "Warning" not in default.headers
        assert strict.status_code == 201
        assert "bogus" not in strict.json()["spec"]


def test_emulator_differs_by_establishing_a_crd_at_once(server: KubeServer) -> None:
    """A real CRD becomes Established moments after its create; the emulator's create
    answers with the condition already True."""
    name = f"gadgets{_RUN}.pins.agentmedic.io"

    created = server.create(_widget_crd(name))
    try:
        conditions = {c["type"]: c["status"] for c in created["status"].get("conditions") or []}
        if is_real(server):
            assert conditions.get("Established") != "True"
        else:
            assert conditions["Established"] == "True"
    finally:
        server.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)


def test_emulator_differs_by_accepting_unique_items_in_a_crd(server: KubeServer) -> None:
    """A real server refuses ``uniqueItems: true`` in a CRD schema (its check is quadratic);
    the emulator accepts the CRD and does not check the keyword either."""
    crd = _widget_crd(f"uniques{_RUN}.pins.agentmedic.io")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["tags"] = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}

    if isinstance(server, RealServer):
        error = refused(server.request_dry_run_create, crd)
        assert error.code == 422
        assert "uniqueItems cannot be set to true" in error.message
    else:
        assert server.create(crd)["metadata"]["name"] == crd["metadata"]["name"]
        server.delete(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, crd["metadata"]["name"]
        )


def test_emulator_differs_by_not_saying_that_cel_rules_were_skipped(
    server: KubeServer, ns: str, widgets: str
) -> None:
    """Both servers skip CEL rules when a structural check fails; a real server says so in a
    cause of its own (and gives a wrong type its own reason), the emulator does not."""
    error = refused(server.create, _widget(ns, "both", size="big", level=11))

    causes = [(c["reason"], c["field"]) for c in (error.details or {})["causes"]]
    assert error.code == 422
    assert "spec.level" not in error.message
    if is_real(server):
        assert causes == [("FieldValueTypeInvalid", "spec.size"), ("FieldValueInvalid", "<nil>")]
        assert error.message.endswith(
            "some validation rules were not checked because the object was invalid; "
            "correct the existing errors to complete validation]"
        )
    else:
        assert causes == [("FieldValueInvalid", "spec.size")]


def test_emulator_differs_by_ignoring_retain_keys_and_element_order(
    server: KubeServer, ns: str
) -> None:
    """``$retainKeys`` clears a Deployment strategy's other keys and ``$setElementOrder``
    reorders a merged list on a real server; the emulator skips both directives."""
    body = deployment(ns, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})
    body["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "ghcr.io/acme/sidecar:1"}
    )
    server.create(body)
    patch = {
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "agent"}],
                    "containers": [{"name": "agent", "image": "ghcr.io/acme/agent:2"}],
                }
            },
        }
    }

    patched = server.patch("apps/v1", "Deployment", ns, "bot", patch, patch_type="strategic")

    spec = patched["spec"]
    names = [c["name"] for c in spec["template"]["spec"]["containers"]]
    assert spec["template"]["spec"]["containers"][names.index("agent")]["image"].endswith(":2")
    if is_real(server):
        assert spec["strategy"] == {"type": "Recreate"}
        assert names == ["sidecar", "agent"]
    else:
        assert spec["strategy"] == {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
        assert names == ["agent", "sidecar"]


def test_emulator_differs_by_not_ratcheting_openapi_checks(server: KubeServer, ns: str) -> None:
    """After a CRD's schema is tightened, a real server lets an object keep a value that is
    now out of bounds while another field changes; the emulator checks it again."""
    name = "ratchets.pins.agentmedic.io"
    crd = _widget_crd(name)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    api_version, kind = "pins.agentmedic.io/v1", "Ratchet"
    if isinstance(server, RealServer):
        server.install_crd(crd)
    else:
        server.create(crd)
    try:
        server.create({**_widget(ns, "kept", size=10), "apiVersion": api_version, "kind": kind})
        schema["properties"]["size"]["maximum"] = 5
        current = server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]  # type: ignore[index]
        server.apply(crd)
        too_big = {**_widget(ns, "probe", size=10), "apiVersion": api_version, "kind": kind}

        if is_real(server):
            assert isinstance(server, RealServer)

            def tightened() -> bool:
                try:
                    server.request_dry_run_create(too_big)
                except ApiError as exc:
                    return exc.code == 422
                return False

            wait_for(tightened, "the tightened schema to take effect", timeout=10)
            patched = server.patch(api_version, kind, ns, "kept", {"spec": {"count": 2}})
            assert patched["spec"] == {"size": 10, "count": 2}
        else:
            assert refused(server.create, too_big).code == 422
            error = refused(server.patch, api_version, kind, ns, "kept", {"spec": {"count": 2}})
            assert error.code == 422
            assert "spec.size" in error.message
    finally:
        server.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
