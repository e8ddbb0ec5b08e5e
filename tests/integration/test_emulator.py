"""The API emulator behaves like a Kubernetes API server where agentmedic relies on it.

Every test talks to the emulator over HTTP with the official ``kubernetes`` client (or raw
``httpx`` where the client hides the wire, e.g. bookmarks), so what passes here is what the
operator and the actions layer will see. One emulator serves the module; each test works in
its own namespace.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import kopf
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from agentmedic.api.crd import all_kinds
from agentmedic_sandbox.emulator import ApiEmulator, ApiError

GROUP, VERSION, PLURAL = "agentmedic.io", "v1alpha1", "agentpolicies"


# --- fixtures and builders ------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[ApiEmulator]:
    with ApiEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def api_client(emulator: ApiEmulator) -> Iterator[client.ApiClient]:
    with client.ApiClient(emulator.client_configuration()) as api:
        yield api


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def deployment(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    containers: int = 1,
    env: int = 0,
    replicas: int | None = None,
) -> dict[str, Any]:
    """A Deployment with ``containers`` containers named c0..cN, each with ``env`` env vars."""
    labels = labels or {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": f"c{i}",
                        "image": f"registry.example/agent-{i}:1",
                        "env": [{"name": f"VAR_{i}_{j}", "value": f"v{j}"} for j in range(env)],
                        "ports": [{"containerPort": 8000 + i}],
                    }
                    for i in range(containers)
                ]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentPolicy",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "support-bot"}}, **spec},
    }


def configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": {"k": "v"},
    }


def error_body(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def env_of(dep: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {
        c["name"]: [(e["name"], e.get("value", "")) for e in c.get("env", [])]
        for c in dep["spec"]["template"]["spec"]["containers"]
    }


def collect(
    stream: Iterator[dict[str, Any]], until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Events from a watch stream up to and including the first one ``until`` accepts."""
    events = []
    for event in stream:
        events.append(event)
        if until(event):
            break
    return events


def rv_of(event: dict[str, Any]) -> str:
    return str(event["raw_object"]["metadata"]["resourceVersion"])


# --- identity, versions, concurrency --------------------------------------------------------


def test_create_assigns_uid_timestamp_resource_version_and_generation_one(
    apps: client.AppsV1Api, ns: str
) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("bot"))
    meta = created.metadata
    assert uuid.UUID(meta.uid)
    assert meta.creation_timestamp is not None
    assert int(meta.resource_version) > 0
    assert meta.generation == 1
    assert created.spec.replicas == 1, "the API server defaults replicas to 1"
    fetched = apps.read_namespaced_deployment("bot", ns)
    assert fetched.metadata.uid == meta.uid
    assert fetched.metadata.resource_version == meta.resource_version


def test_every_write_bumps_resource_version_and_a_no_op_patch_does_not(
    core: client.CoreV1Api, ns: str, emulator: ApiEmulator
) -> None:
    first = core.create_namespaced_config_map(ns, configmap("cm"))
    second = core.patch_namespaced_config_map("cm", ns, {"data": {"k": "w"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    emulator.clear_requests()
    third = core.patch_namespaced_config_map("cm", ns, {"data": {"k": "w"}})
    assert third.metadata.resource_version == second.metadata.resource_version
    assert [r.verb for r in emulator.write_requests()] == ["patch"], "still a request"


def test_put_with_a_stale_resource_version_is_rejected_with_409(
    core: client.CoreV1Api, ns: str
) -> None:
    stale = core.create_namespaced_config_map(ns, configmap("cm"))
    core.patch_namespaced_config_map("cm", ns, {"data": {"k": "newer"}})
    stale.data = {"k": "lost update"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cm", ns, stale)
    assert err.value.status == 409
    assert error_body(err.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("cm", ns).data == {"k": "newer"}


def test_put_with_the_current_resource_version_replaces_the_object(
    core: client.CoreV1Api, ns: str
) -> None:
    current = core.create_namespaced_config_map(ns, configmap("cm"))
    current.data = {"other": "x"}
    replaced = core.replace_namespaced_config_map("cm", ns, current)
    assert replaced.data == {"other": "x"}
    assert replaced.metadata.uid == current.metadata.uid


def test_patch_carrying_a_stale_resource_version_is_rejected_with_409(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "p", {"spec": {"interval": "1m"}}
    )
    stale = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "spec": {"interval": "2m"},
    }
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p", stale)
    assert err.value.status == 409


def test_put_of_a_custom_resource_without_resource_version_is_invalid(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p"))
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p", policy("p"))
    assert err.value.status == 422
    assert "metadata.resourceVersion" in error_body(err.value)["message"]


def test_create_of_an_existing_name_is_409_already_exists(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("cm"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, configmap("cm"))
    assert err.value.status == 409
    assert error_body(err.value)["reason"] == "AlreadyExists"


def test_generate_name_gives_each_object_its_own_name(core: client.CoreV1Api, ns: str) -> None:
    body = {
        "metadata": {"generateName": "agentmedic-event-"},
        "involvedObject": {"name": "x", "namespace": ns},
        "reason": "Scaled",
        "message": "m",
    }
    names = {core.create_namespaced_event(ns, body).metadata.name for _ in range(5)}
    assert len(names) == 5
    assert all(
        n.startswith("agentmedic-event-") and len(n) == len("agentmedic-event-") + 5 for n in names
    )


def test_invalid_names_and_label_values_are_refused_with_422(
    core: client.CoreV1Api, ns: str
) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, configmap("Not_A_Name"))
    assert err.value.status == 422
    assert "metadata.name" in error_body(err.value)["message"]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, configmap("cm", labels={"app": "has space"}))
    assert "metadata.labels" in error_body(err.value)["message"]


# --- PATCH semantics ------------------------------------------------------------------------


def test_json_patch_whose_test_op_fails_is_rejected_with_422_and_changes_nothing(
    api_client: client.ApiClient, apps: client.AppsV1Api, ns: str
) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("bot"))
    apps.patch_namespaced_deployment("bot", ns, {"metadata": {"labels": {"touched": "yes"}}})
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": created.metadata.resource_version,
        },
        {"op": "replace", "path": "/spec/replicas", "value": 0},
    ]
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("bot", ns, ops)
    assert err.value.status == 422
    assert apps.read_namespaced_deployment("bot", ns).spec.replicas == 1


def test_json_patch_applies_add_remove_replace_move_copy_and_escaped_pointers(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_config_map(
        ns,
        {
            "metadata": {"name": "cm", "annotations": {"agentmedic.io/previous": "3"}},
            "data": {"a": "1", "b": "2", "c": "3"},
        },
    )
    ops = [
        {"op": "add", "path": "/data/d", "value": "4"},
        {"op": "remove", "path": "/data/a"},
        {"op": "replace", "path": "/data/b", "value": "two"},
        {"op": "move", "from": "/data/c", "path": "/data/moved"},
        {"op": "copy", "from": "/data/d", "path": "/data/copied"},
        {"op": "replace", "path": "/metadata/annotations/agentmedic.io~1previous", "value": "0"},
        {"op": "test", "path": "/data/moved", "value": "3"},
    ]
    patched = core.patch_namespaced_config_map("cm", ns, ops)
    assert patched.data == {"b": "two", "d": "4", "moved": "3", "copied": "4"}
    assert patched.metadata.annotations == {"agentmedic.io/previous": "0"}
    # `~0` escapes a tilde; kopf's peering objects take free-form keys.
    custom = client.CustomObjectsApi(core.api_client)
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": ns},
            "status": {},
        },
    )
    peering = custom.patch_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        ns,
        [
            {"op": "add", "path": "/status", "value": {"a~b/c": 1}},
            {"op": "replace", "path": "/status/a~0b~1c", "value": 2},
        ],
        _content_type="application/json-patch+json",
    )
    assert peering["status"] == {"a~b/c": 2}


def test_json_patch_on_a_missing_path_is_422(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("cm"))
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "cm", ns, [{"op": "replace", "path": "/data/nope", "value": "x"}]
        )
    assert err.value.status == 422


def test_strategic_merge_of_one_env_var_keeps_every_other_container_and_env_entry(
    apps: client.AppsV1Api, ns: str
) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("bot", containers=3, env=8))
    before = env_of(apps.api_client.sanitize_for_serialization(created))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c1", "env": [{"name": "VAR_1_4", "value": "gpt-4o-mini"}]},
                    ]
                }
            }
        }
    }
    patched = apps.api_client.sanitize_for_serialization(
        apps.patch_namespaced_deployment("bot", ns, patch)
    )
    after = env_of(patched)
    assert list(after) == ["c0", "c1", "c2"]
    assert after["c0"] == before["c0"]
    assert after["c2"] == before["c2"]
    expected = [(n, "gpt-4o-mini" if n == "VAR_1_4" else v) for n, v in before["c1"]]
    assert after["c1"] == expected
    assert [c["image"] for c in patched["spec"]["template"]["spec"]["containers"]] == [
        f"registry.example/agent-{i}:1" for i in range(3)
    ]
    assert patched["metadata"]["generation"] == 2


def test_strategic_merge_delete_directive_removes_one_entry_and_appends_new_ones(
    apps: client.AppsV1Api, ns: str
) -> None:
    apps.create_namespaced_deployment(ns, deployment("bot", containers=2, env=3))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c0",
                            "env": [
                                {"name": "VAR_0_1", "$patch": "delete"},
                                {"name": "NEW", "value": "n"},
                            ],
                            "ports": [{"containerPort": 9090}],
                        },
                    ]
                }
            }
        }
    }
    patched = apps.api_client.sanitize_for_serialization(
        apps.patch_namespaced_deployment("bot", ns, patch)
    )
    c0, c1 = patched["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in c0["env"]] == ["VAR_0_0", "VAR_0_2", "NEW"]
    assert [p["containerPort"] for p in c0["ports"]] == [8000, 9090], "ports merge by port"
    assert [e["name"] for e in c1["env"]] == ["VAR_1_0", "VAR_1_1", "VAR_1_2"]


def test_strategic_merge_directives_replace_a_list_and_merge_finalizers_as_a_set(
    apps: client.AppsV1Api, emulator: ApiEmulator, ns: str
) -> None:
    body = deployment("bot", containers=2)
    body["metadata"]["finalizers"] = ["a.example/x", "a.example/y"]
    apps.create_namespaced_deployment(ns, body)
    patch = {
        "metadata": {
            "finalizers": ["a.example/z"],
            "$deleteFromPrimitiveList/finalizers": ["a.example/x"],
        },
        "spec": {
            "template": {
                "spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}
            }
        },
    }
    patched = emulator.patch("apps/v1", "Deployment", ns, "bot", patch, patch_type="strategic")
    assert patched["metadata"]["finalizers"] == ["a.example/y", "a.example/z"]
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["only"]


def test_strategic_merge_replaces_lists_without_a_merge_key(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "svc"},
            "spec": {
                "selector": {"app": "x"},
                "ports": [{"port": 80}, {"port": 443}],
                "externalIPs": ["10.0.0.1", "10.0.0.2"],
            },
        },
    )
    patched = core.patch_namespaced_service(
        "svc", ns, {"spec": {"ports": [{"port": 80, "name": "http"}], "externalIPs": ["10.0.0.3"]}}
    )
    assert [(p.port, p.name) for p in patched.spec.ports] == [(80, "http"), (443, None)]
    assert patched.spec.external_ips == ["10.0.0.3"]


def test_strategic_merge_patch_is_refused_for_custom_resources_with_415(
    api_client: client.ApiClient, custom: client.CustomObjectsApi, ns: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            "p",
            {"spec": {"interval": "1m"}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415


def test_json_merge_patch_null_deletes_a_key_and_lists_are_replaced_whole(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    body = policy(
        "p",
        interval="30s",
        model={"env": {"container": "agent", "name": "MODEL"}, "tiers": ["gpt-4o", "gpt-4o-mini"]},
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "p",
        {"spec": {"interval": None, "model": {"tiers": ["gpt-4.1-nano"]}}},
    )
    assert "interval" not in patched["spec"]
    assert patched["spec"]["model"] == {
        "env": {"container": "agent", "name": "MODEL"},
        "tiers": ["gpt-4.1-nano"],
    }


# --- generation and subresources ------------------------------------------------------------


def test_generation_bumps_on_spec_changes_only(
    apps: client.AppsV1Api, emulator: ApiEmulator, ns: str
) -> None:
    apps.create_namespaced_deployment(ns, deployment("bot"))
    labelled = apps.patch_namespaced_deployment(
        "bot",
        ns,
        {"metadata": {"labels": {"x": "y"}, "annotations": {"agentmedic.io/reason": "r"}}},
    )
    assert labelled.metadata.generation == 1
    status = apps.patch_namespaced_deployment_status("bot", ns, {"status": {"replicas": 1}})
    assert status.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("bot", ns, {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2
    again = apps.patch_namespaced_deployment("bot", ns, {"spec": {"replicas": 3}})
    assert again.metadata.generation == 2


def test_status_writes_through_the_object_are_ignored_and_status_subresource_changes_only_status(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, {**policy("p"), "status": {"observedGeneration": 9}}
    )
    created = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")
    assert "observedGeneration" not in created.get("status", {}), "status is dropped on create"
    via_main = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "p",
        {"spec": {"interval": "1m"}, "status": {"observedGeneration": 5}},
    )
    assert via_main["spec"]["interval"] == "1m"
    assert "observedGeneration" not in via_main.get("status", {})
    via_status = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "p",
        {"spec": {"interval": "9m"}, "status": {"observedGeneration": 2}},
    )
    assert via_status["status"]["observedGeneration"] == 2
    assert via_status["spec"]["interval"] == "1m", "a /status write leaves spec alone"
    assert via_status["metadata"]["generation"] == 2


def test_put_to_status_replaces_only_status_and_checks_resource_version(
    apps: client.AppsV1Api, ns: str
) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("bot"))
    body = apps.api_client.sanitize_for_serialization(created)
    body["status"] = {"replicas": 1, "readyReplicas": 1}
    body["spec"]["replicas"] = 7
    updated = apps.replace_namespaced_deployment_status("bot", ns, body)
    assert updated.status.ready_replicas == 1
    assert updated.spec.replicas == 1
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment_status("bot", ns, body)  # rv is now stale
    assert err.value.status == 409


@pytest.mark.parametrize("kind", ["deployment", "statefulset"])
def test_scale_subresource_reads_and_writes_spec_replicas_as_an_autoscaling_v1_scale(
    apps: client.AppsV1Api, ns: str, kind: str
) -> None:
    body = deployment("bot", replicas=3)
    if kind == "statefulset":
        body = {**body, "kind": "StatefulSet", "spec": {**body["spec"], "serviceName": "bot"}}
        apps.create_namespaced_stateful_set(ns, body)
        read, patch, replace, get = (
            apps.read_namespaced_stateful_set_scale,
            apps.patch_namespaced_stateful_set_scale,
            apps.replace_namespaced_stateful_set_scale,
            apps.read_namespaced_stateful_set,
        )
    else:
        apps.create_namespaced_deployment(ns, body)
        read, patch, replace, get = (
            apps.read_namespaced_deployment_scale,
            apps.patch_namespaced_deployment_scale,
            apps.replace_namespaced_deployment_scale,
            apps.read_namespaced_deployment,
        )
    scale = read("bot", ns)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 3
    assert scale.status.selector == "app=bot"
    assert patch("bot", ns, {"spec": {"replicas": 0}}).spec.replicas == 0
    obj = get("bot", ns)
    assert obj.spec.replicas == 0
    assert obj.metadata.generation == 2
    stale = scale  # carries the resourceVersion from before the patch
    stale.spec.replicas = 5
    with pytest.raises(ApiException) as err:
        replace("bot", ns, stale)
    assert err.value.status == 409
    fresh = read("bot", ns)
    fresh.spec.replicas = 2
    assert replace("bot", ns, fresh).spec.replicas == 2
    with pytest.raises(ApiException) as err:
        patch("bot", ns, {"spec": {"replicas": -1}})
    assert err.value.status == 422


def test_scale_is_not_served_for_resources_without_it(
    core: client.CoreV1Api, emulator: ApiEmulator, ns: str
) -> None:
    core.create_namespaced_config_map(ns, configmap("cm"))
    response = httpx.get(f"{emulator.url}/api/v1/namespaces/{ns}/configmaps/cm/scale")
    assert response.status_code == 404
    assert response.json()["kind"] == "Status"


# --- selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=gold", {"a", "b"}),
        ("tier==gold", {"a", "b"}),
        ("tier!=gold", {"c", "d"}),
        ("tier in (gold,silver)", {"a", "b", "c"}),
        ("tier notin (gold)", {"c", "d"}),
        ("team", {"a", "c"}),
        ("!team", {"b", "d"}),
        ("tier=gold,team=x", {"a"}),
        ("tier in (gold, silver),!team", {"b"}),
    ],
)
def test_label_selectors_on_list_follow_equality_and_set_based_semantics(
    core: client.CoreV1Api, ns: str, selector: str, expected: set[str]
) -> None:
    for name, labels in {
        "a": {"tier": "gold", "team": "x"},
        "b": {"tier": "gold"},
        "c": {"tier": "silver", "team": "y"},
        "d": {},
    }.items():
        core.create_namespaced_config_map(ns, configmap(name, labels))
    found = core.list_namespaced_config_map(ns, label_selector=selector).items
    assert {cm.metadata.name for cm in found} == expected


def test_a_malformed_label_selector_is_a_400(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(ns, label_selector="tier in gold")
    assert err.value.status == 400


def test_field_selectors_filter_by_name_namespace_and_involved_object(
    core: client.CoreV1Api, ns: str
) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(ns, configmap(name))
        core.create_namespaced_event(
            ns,
            {
                "metadata": {"generateName": "e-"},
                "involvedObject": {"kind": "Deployment", "name": f"bot-{name}", "namespace": ns},
                "reason": "ScaledToZero",
                "message": "m",
                "type": "Normal",
            },
        )
    by_name = core.list_namespaced_config_map(ns, field_selector="metadata.name=b").items
    assert [cm.metadata.name for cm in by_name] == ["b"]
    everywhere = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={ns},metadata.name!=a"
    ).items
    assert [cm.metadata.name for cm in everywhere] == ["b"]
    events = core.list_namespaced_event(
        ns, field_selector="involvedObject.kind=Deployment,involvedObject.name=bot-a"
    ).items
    assert [e.involved_object.name for e in events] == ["bot-a"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(ns, field_selector="data.k=v")
    assert err.value.status == 400


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api, ns: str) -> None:
    for i in range(5):
        core.create_namespaced_config_map(ns, configmap(f"cm-{i}"))
    first = core.list_namespaced_config_map(ns, limit=2)
    assert [c.metadata.name for c in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3
    names = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert names == [f"cm-{i}" for i in range(5)]


# --- watches --------------------------------------------------------------------------------


def test_watch_from_a_resource_version_sends_only_later_events(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_config_map(ns, configmap("early"))
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map(ns, configmap("late"))
    last = core.patch_namespaced_config_map("early", ns, {"data": {"k": "changed"}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )
    events = collect(stream, lambda e: rv_of(e) == last.metadata.resource_version)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "late"),
        ("MODIFIED", "early"),
    ]


def test_watch_without_a_resource_version_starts_with_every_object_as_added(
    core: client.CoreV1Api, ns: str
) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(ns, configmap(name))
    stream = watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=5)
    events = collect(stream, lambda e: e["object"].metadata.name == "b")
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_watch_with_selectors_sees_objects_enter_and_leave_as_added_and_deleted(
    core: client.CoreV1Api, ns: str
) -> None:
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map(ns, configmap("cm", {"agentmedic.io/managed": "false"}))
    core.patch_namespaced_config_map(
        "cm", ns, {"metadata": {"labels": {"agentmedic.io/managed": "true"}}}
    )
    core.patch_namespaced_config_map("cm", ns, {"data": {"k": "2"}})
    core.create_namespaced_config_map(ns, configmap("other", {"agentmedic.io/managed": "true"}))
    last = core.patch_namespaced_config_map(
        "cm", ns, {"metadata": {"labels": {"agentmedic.io/managed": "false"}}}
    )
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="agentmedic.io/managed=true",
        field_selector="metadata.name=cm",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )
    events = collect(stream, lambda e: rv_of(e) == last.metadata.resource_version)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert {e["object"].metadata.name for e in events} == {"cm"}


def test_watch_ends_by_itself_after_timeout_seconds(core: client.CoreV1Api, ns: str) -> None:
    started = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1))
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 3


def test_watch_from_a_resource_version_older_than_the_event_window_gets_410_gone() -> None:
    with ApiEmulator(event_window=3, install_crd=False) as emu:
        first = emu.create({**configmap("cm"), "metadata": {"name": "cm", "namespace": "default"}})
        for i in range(5):
            emu.patch("v1", "ConfigMap", "default", "cm", {"data": {"k": str(i)}})
        url = f"{emu.url}/api/v1/namespaces/default/configmaps"
        params = {"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"]}
        with httpx.stream("GET", url, params=params, timeout=5) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["type"] for line in lines] == ["ERROR"]
    assert lines[0]["object"]["code"] == 410


def test_watch_sends_bookmarks_and_marks_the_end_of_initial_events() -> None:
    with ApiEmulator(bookmark_interval=0.05, install_crd=False) as emu:
        emu.create({**configmap("cm"), "metadata": {"name": "cm", "namespace": "default"}})
        url = f"{emu.url}/api/v1/namespaces/default/configmaps"
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "timeoutSeconds": "5",
        }
        seen: list[dict[str, Any]] = []
        with httpx.stream("GET", url, params=params, timeout=5) as response:
            for line in response.iter_lines():
                if line:
                    seen.append(json.loads(line))
                if len(seen) == 3:
                    break
        rv = emu.resource_version
    assert [e["type"] for e in seen] == ["ADDED", "BOOKMARK", "BOOKMARK"]
    initial_end = seen[1]["object"]["metadata"]
    assert initial_end["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert seen[2]["object"]["metadata"]["resourceVersion"] == rv


def test_a_watch_the_client_abandons_is_unregistered(emulator: ApiEmulator, ns: str) -> None:
    before = emulator.open_watches
    url = f"{emulator.url}/api/v1/namespaces/{ns}/configmaps"
    with httpx.stream("GET", url, params={"watch": "true"}, timeout=5) as response:
        assert response.status_code == 200
        assert emulator.open_watches == before + 1
    deadline = time.monotonic() + 5
    while emulator.open_watches > before and time.monotonic() < deadline:
        time.sleep(0.01)  # polled with a deadline: the server notices the hang-up async
    assert emulator.open_watches == before


# --- deletion -------------------------------------------------------------------------------


def test_delete_with_a_finalizer_marks_the_object_until_the_finalizer_is_removed(
    core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_config_map(
        ns, {**configmap("cm"), "metadata": {"name": "cm", "finalizers": ["agentmedic.io/cleanup"]}}
    )
    core.delete_namespaced_config_map("cm", ns)
    marked = core.read_namespaced_config_map("cm", ns)
    assert marked.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("cm", ns, {"metadata": {"finalizers": ["a", "b"]}})
    assert err.value.status == 422, "no new finalizers on an object being deleted"
    core.patch_namespaced_config_map("cm", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("cm", ns)
    assert err.value.status == 404


def test_deleting_an_owner_garbage_collects_its_dependents(
    custom: client.CustomObjectsApi, api_client: client.ApiClient, ns: str
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p"))
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentPolicy",
        "name": "p",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    batch = client.BatchV1Api(api_client)
    job = {
        "metadata": {"name": "optimize", "ownerReferences": [ref]},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "o", "image": "i"}]}
            }
        },
    }
    batch.create_namespaced_job(ns, job)
    batch.create_namespaced_job(ns, {**job, "metadata": {"name": "unowned"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")
    assert [j.metadata.name for j in batch.list_namespaced_job(ns).items] == ["unowned"]


def test_delete_collection_deletes_only_the_selected_objects(
    core: client.CoreV1Api, ns: str
) -> None:
    for name, labels in (("a", {"run": "1"}), ("b", {"run": "1"}), ("c", {"run": "2"})):
        core.create_namespaced_config_map(ns, configmap(name, labels))
    core.delete_collection_namespaced_config_map(ns, label_selector="run=1")
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["c"]


def test_delete_of_a_missing_object_is_404(apps: client.AppsV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        apps.delete_namespaced_deployment("ghost", ns)
    assert err.value.status == 404
    assert error_body(err.value)["message"] == 'deployments.apps "ghost" not found'


# --- AgentPolicy validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"interval": "5 minutes"}, "spec.interval"),
        (
            {"rules": [{"name": "r", "all": [{"metric": "error_rate", "op": "=>", "value": 1}]}]},
            "spec.rules[0].all[0].op",
        ),
        ({"guardrails": {"maxDisabledPercent": 150}}, "spec.guardrails.maxDisabledPercent"),
        ({"interval": 30}, "spec.interval"),
    ],
)
def test_an_invalid_agent_policy_is_refused_with_422_naming_the_field(
    custom: client.CustomObjectsApi, ns: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p", **spec))
    assert err.value.status == 422
    body = error_body(err.value)
    assert body["reason"] == "Invalid"
    assert f"{field}:" in body["message"]
    assert [c["field"] for c in body["details"]["causes"]] == [field]


def test_a_policy_breaking_a_cel_rule_of_the_crd_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    both = {"metric": "error_rate", "query": "up{ {{agents}} }", "op": ">", "value": 1}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, policy("p", rules=[{"name": "r", "all": [both]}])
        )
    assert err.value.status == 422
    body = error_body(err.value)
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.rules[0].all[0]"]
    assert "set exactly one of metric and query" in body["message"]


def test_a_policy_without_a_selector_is_refused_and_unknown_fields_are_pruned(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, {**policy("p"), "spec": {"interval": "1m"}}
        )
    assert "spec.selector: Required value" in error_body(err.value)["message"]
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, {**policy("p"), "spec": {**policy("p")["spec"], "bogus": 1}}
    )
    assert "bogus" not in created["spec"]


def test_an_update_that_breaks_a_policy_is_refused_and_leaves_it_unchanged(
    custom: client.CustomObjectsApi, ns: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy("p", interval="1m"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "p", {"spec": {"budget": {"limitUSD": -5}}}
        )
    assert err.value.status == 422
    assert "spec.budget" in error_body(err.value)["message"]
    current = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")
    assert "budget" not in current["spec"]


# --- discovery ------------------------------------------------------------------------------


def test_discovery_serves_the_groups_and_subresources_agentmedic_and_kopf_use(
    api_client: client.ApiClient,
) -> None:
    groups = {
        g.name: [v.version for v in g.versions]
        for g in client.ApisApi(api_client).get_api_versions().groups
    }
    for group, version in [
        ("apps", "v1"),
        ("batch", "v1"),
        ("autoscaling", "v2"),
        ("keda.sh", "v1alpha1"),
        ("events.k8s.io", "v1"),
        ("coordination.k8s.io", "v1"),
        ("kopf.dev", "v1"),
        (GROUP, VERSION),
    ]:
        assert version in groups[group]
    core_names = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"namespaces", "pods", "configmaps", "secrets", "events", "services"} <= core_names
    apps_resources = {r.name: r for r in client.AppsV1Api(api_client).get_api_resources().resources}
    assert apps_resources["deployments/scale"].kind == "Scale"
    assert "statefulsets/scale" in apps_resources
    ours = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION).resources
    plurals = {k.plural for k in all_kinds()}
    assert {r.name for r in ours} == plurals | {f"{p}/status" for p in plurals}


def test_a_crd_created_through_the_api_is_served_and_deleting_it_stops_serving(
    api_client: client.ApiClient, custom: client.CustomObjectsApi, ns: str
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(crd)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3},
    }
    assert custom.create_namespaced_custom_object("example.com", "v1", ns, "widgets", widget)[
        "spec"
    ] == {"size": 3}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            "example.com",
            "v1",
            ns,
            "widgets",
            {**widget, "metadata": {"name": "x"}, "spec": {"size": "big"}},
        )
    assert err.value.status == 422
    extensions.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object("example.com", "v1", ns, "widgets")
    assert err.value.status == 404


def test_dry_run_writes_answer_as_if_applied_but_store_nothing(
    apps: client.AppsV1Api, emulator: ApiEmulator, ns: str
) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("bot"))
    answer = apps.patch_namespaced_deployment("bot", ns, {"spec": {"replicas": 0}}, dry_run="All")
    assert answer.spec.replicas == 0
    stored = emulator.get("apps/v1", "Deployment", ns, "bot")
    assert stored is not None
    assert stored["spec"]["replicas"] == 1
    assert stored["metadata"]["resourceVersion"] == created.metadata.resource_version
    apps.delete_namespaced_deployment("bot", ns, dry_run="All")
    assert emulator.get("apps/v1", "Deployment", ns, "bot") is not None


def test_deleting_a_namespace_deletes_what_it_contains(
    core: client.CoreV1Api, emulator: ApiEmulator, ns: str
) -> None:
    core.create_namespaced_config_map(ns, configmap("cm"))
    core.delete_namespace(ns)
    assert emulator.list("v1", "ConfigMap", ns) == []
    with pytest.raises(ApiException) as err:
        core.read_namespace(ns)
    assert err.value.status == 404


# --- faults and history ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 429, 500])
def test_an_injected_fault_fails_the_next_matching_requests_then_clears(
    apps: client.AppsV1Api, emulator: ApiEmulator, ns: str, status: int
) -> None:
    apps.create_namespaced_deployment(ns, deployment("bot"))
    emulator.inject(
        method="PATCH", path_regex=rf"/namespaces/{ns}/deployments/bot$", status=status, times=2
    )
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            apps.patch_namespaced_deployment("bot", ns, {"spec": {"replicas": 0}})
        assert err.value.status == status
    assert apps.read_namespaced_deployment("bot", ns).spec.replicas == 1, "nothing applied"
    assert apps.patch_namespaced_deployment("bot", ns, {"spec": {"replicas": 0}}).spec.replicas == 0
    injected = [r for r in emulator.requests if r.injected]
    assert [(r.method, r.status) for r in injected[-2:]] == [("PATCH", status)] * 2


def test_an_injected_delay_slows_the_request_and_a_custom_body_is_served(
    core: client.CoreV1Api, emulator: ApiEmulator, ns: str
) -> None:
    core.create_namespaced_config_map(ns, configmap("cm"))
    emulator.inject(
        method="GET", path_regex=rf"/namespaces/{ns}/configmaps/cm$", status=200, delay=0.3
    )
    started = time.monotonic()
    assert core.read_namespaced_config_map("cm", ns).data == {"k": "v"}
    assert time.monotonic() - started >= 0.3
    emulator.inject(
        method="*",
        path_regex=rf"/namespaces/{ns}/configmaps/cm$",
        status=503,
        body={"kind": "Status", "code": 503, "message": "etcd is down"},
    )
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("cm", ns)
    assert err.value.status == 503
    assert error_body(err.value)["message"] == "etcd is down"


def test_request_history_is_bounded_clearable_and_tells_writes_from_reads() -> None:
    with (
        ApiEmulator(history_limit=5, install_crd=False) as emu,
        client.ApiClient(emu.client_configuration()) as api,
    ):
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map("default", configmap("cm"))
        for _ in range(10):
            core.read_namespaced_config_map("cm", "default")
        assert len(emu.requests) == 5
        assert emu.write_requests() == [], "the create has been pushed out"
        emu.clear_requests()
        core.list_namespaced_config_map("default", label_selector="a=b")
        core.patch_namespaced_config_map("cm", "default", {"data": {"k": "2"}})
        recorded = emu.requests
    assert [(r.method, r.verb, r.status) for r in recorded] == [
        ("GET", "list", 200),
        ("PATCH", "patch", 200),
    ]
    assert recorded[0].query == {"labelSelector": "a=b"}
    assert recorded[1].content_type == "application/strategic-merge-patch+json"
    assert recorded[1].body == {"data": {"k": "2"}}
    assert [r.is_write for r in recorded] == [False, True]


# --- direct access --------------------------------------------------------------------------


def test_direct_access_is_consistent_with_http_and_safe_across_threads(
    emulator: ApiEmulator, core: client.CoreV1Api, ns: str
) -> None:
    emulator.clear_requests()

    def create_many(offset: int) -> None:
        for i in range(50):
            emulator.create(
                configmap(f"cm-{offset + i}")
                | {"metadata": {"name": f"cm-{offset + i}", "namespace": ns}}
            )

    threads = [threading.Thread(target=create_many, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(emulator.list("v1", "ConfigMap", ns)) == 200
    assert len(core.list_namespaced_config_map(ns).items) == 200
    rvs = {cm["metadata"]["resourceVersion"] for cm in emulator.list("v1", "ConfigMap", ns)}
    assert len(rvs) == 200, "every write got its own resourceVersion"
    assert emulator.write_requests() == [], "direct access is not recorded"
    assert emulator.get("v1", "ConfigMap", ns, "missing") is None
    assert emulator.delete("v1", "ConfigMap", ns, "cm-0") is not None
    assert emulator.get("v1", "ConfigMap", ns, "cm-0") is None
    with pytest.raises(ApiError) as err:
        emulator.create(
            {**policy("bad", interval="soon"), "metadata": {"name": "bad", "namespace": ns}}
        )
    assert err.value.code == 422


def test_a_restarted_emulator_keeps_its_objects_and_its_url() -> None:
    emu = ApiEmulator(install_crd=False)
    with emu, client.ApiClient(emu.client_configuration()) as api:
        client.CoreV1Api(api).create_namespaced_config_map("default", configmap("cm"))
        url = emu.url
        emu.stop()
        emu.start()
        assert emu.url == url
        assert client.CoreV1Api(api).read_namespaced_config_map("cm", "default").data == {"k": "v"}


def test_kubeconfig_loads_into_the_kubernetes_client(emulator: ApiEmulator, tmp_path: Any) -> None:
    from kubernetes import config

    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        assert client.VersionApi(api).get_code().major == "1"


# --- kopf -----------------------------------------------------------------------------------


async def test_kopf_sees_an_agent_policy_created_and_its_handler_runs() -> None:
    async with ApiEmulator() as emu:
        registry = kopf.OperatorRegistry()
        handled: asyncio.Queue[str] = asyncio.Queue()

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return emu.login_kopf()

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.scanning.disabled = True
            settings.watching.server_timeout = 10

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
        def created(name: str, namespace: str, **_: Any) -> None:
            handled.put_nowait(f"{namespace}/{name}")

        stop = asyncio.Event()
        tasks = await kopf.spawn_tasks(
            registry=registry, clusterwide=True, standalone=True, stop_flag=stop
        )
        operator = asyncio.create_task(kopf.run_tasks(tasks, ignored={asyncio.current_task()}))
        try:
            await asyncio.to_thread(
                emu.create, {**policy("p"), "metadata": {"name": "p", "namespace": "agents"}}
            )
            assert await asyncio.wait_for(handled.get(), timeout=10) == "agents/p"
            annotated = await asyncio.wait_for(
                _watch_until_annotated(emu, "kopf.zalando.org/last-handled-configuration"),
                timeout=10,
            )
            assert annotated["metadata"]["generation"] == 1, "kopf's patch left spec alone"
        finally:
            stop.set()
            await asyncio.wait_for(operator, timeout=10)
        assert handled.empty(), "the handler ran once"


async def test_kopf_with_namespace_scanning_handles_policies_in_namespaces_that_appear_later() -> (
    None
):
    async with ApiEmulator() as emu:
        registry = kopf.OperatorRegistry()
        handled: asyncio.Queue[str] = asyncio.Queue()

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return emu.login_kopf()

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
        def created(name: str, namespace: str, **_: Any) -> None:
            handled.put_nowait(f"{namespace}/{name}")

        stop = asyncio.Event()
        tasks = await kopf.spawn_tasks(
            registry=registry, namespaces=["agents-*"], standalone=True, stop_flag=stop
        )
        operator = asyncio.create_task(kopf.run_tasks(tasks, ignored={asyncio.current_task()}))
        try:
            for namespace in ("agents-a", "elsewhere", "agents-b"):
                body = {**policy("p"), "metadata": {"name": "p", "namespace": namespace}}
                await asyncio.to_thread(emu.create, body)  # the namespace is created too
            got = {await asyncio.wait_for(handled.get(), timeout=10) for _ in range(2)}
            assert got == {"agents-a/p", "agents-b/p"}
        finally:
            stop.set()
            await asyncio.wait_for(operator, timeout=10)
        assert handled.empty(), "the policy outside the glob was not handled"


async def _watch_until_annotated(emu: ApiEmulator, key: str) -> dict[str, Any]:
    """The policy "agents/p" as soon as it carries annotation ``key`` (watched, not polled)."""
    url = f"{emu.url}/apis/{GROUP}/{VERSION}/namespaces/agents/{PLURAL}"
    params = {"watch": "true", "fieldSelector": "metadata.name=p"}
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url, params=params) as r:
        async for line in r.aiter_lines():
            obj: dict[str, Any] = json.loads(line)["object"]
            if key in obj["metadata"].get("annotations", {}):
                return obj
    raise AssertionError("the watch ended before the annotation appeared")
