"""The API emulator against a real API server, on the points where they were found to differ.

Every test runs on both servers (ids ``emulated`` and ``real``). The first part shows the
differences that were fixed in the emulator: both servers now answer alike. The second part
pins the differences that remain (``test_emulator_differs_...``): each asserts the
emulator's behaviour and the real server's side by side, so a change on either side shows,
and tests/README.md links each from its list of known differences.
"""

from __future__ import annotations

import itertools
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentmedic.sandbox.emulator import ApiEmulator, ApiError
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
