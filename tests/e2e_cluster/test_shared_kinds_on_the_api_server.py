"""NotificationChannel, ClusterNotificationChannel, MetricsBackend and ClusterMetricsBackend
as kube-apiserver enforces them: the examples are admitted as generated (their CEL rules
within the cost budget), the one-of rules refuse what validation refuses naming the field,
a policy's channelRef is admitted, and the printer columns come back as kubectl reads them.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentmedic.api.crd import crd_manifest
from agentmedic.api.shared import SHARED_MODELS
from agentmedic_sandbox.cluster import LocalCluster

pytestmark = pytest.mark.e2e_cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("shared-channels.yaml", "multi-tenant-metrics.yaml")
PLURALS = {k: crd_manifest(k)["spec"]["names"]["plural"] for k in SHARED_MODELS}
GROUP_PATH = "/apis/agentmedic.io/v1alpha1"


@pytest.fixture(scope="module")
def crd_installed(local_cluster: LocalCluster) -> LocalCluster:
    for kind in ("AgentPolicy", *SHARED_MODELS):
        local_cluster.install_crd(crd_manifest(kind))
    return local_cluster


@pytest.fixture(scope="module")
def namespace(crd_installed: LocalCluster) -> Iterator[str]:
    name = f"shared-{uuid.uuid4().hex[:6]}"
    crd_installed.ensure_namespace(name)
    yield name
    crd_installed.request("DELETE", f"/api/v1/namespaces/{name}")


def _path(doc: dict[str, Any], namespace: str) -> str:
    kind = doc["kind"]
    plural = "agentpolicies" if kind == "AgentPolicy" else PLURALS[kind]
    if kind.startswith("Cluster"):
        return f"{GROUP_PATH}/{plural}"
    return f"{GROUP_PATH}/namespaces/{namespace}/{plural}"


def _create(cluster: LocalCluster, doc: dict[str, Any], namespace: str) -> httpx.Response:
    doc = copy.deepcopy(doc)
    if not doc["kind"].startswith("Cluster"):
        doc["metadata"]["namespace"] = namespace
    else:
        doc["metadata"]["name"] += f"-{namespace}"
    return cluster._raw(  # the answer itself, refusals included
        "POST", _path(doc, namespace), doc, params={"fieldValidation": "Strict"}
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_examples_are_admitted_as_generated(
    crd_installed: LocalCluster, namespace: str, example: str
) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "crds/examples" / example).read_text()) if d]
    for doc in docs:
        answer = _create(crd_installed, doc, namespace)
        assert answer.status_code == 201, answer.text[:500]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {
                "kind": "MetricsBackend",
                "spec": {
                    "url": "https://mimir",
                    "caSecretRef": {"name": "a", "key": "b"},
                    "caConfigMapRef": {"name": "a", "key": "b"},
                },
            },
            "set at most one of caSecretRef and caConfigMapRef",
        ),
        (
            {"kind": "ClusterNotificationChannel", "spec": {"maxPerHour": 3}},
            "set exactly one of slack, pagerduty, webhook and alertmanager",
        ),
        (
            {
                "kind": "AgentPolicy",
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "notifications": {
                        "channels": [
                            {
                                "name": "x",
                                "channelRef": {"name": "team"},
                                "slack": {"webhookSecretRef": {"name": "a", "key": "b"}},
                            }
                        ]
                    },
                },
            },
            "set exactly one of slack, pagerduty, webhook, alertmanager and channelRef",
        ),
        (
            {"kind": "MetricsBackend", "spec": {"url": "https://mimir", "timeout": "10m"}},
            "must be between 1s and 2m",
        ),
    ],
    ids=["two-cas", "channel-without-kind", "ref-and-inline", "timeout-too-long"],
)
def test_the_api_server_refuses_what_validation_refuses(
    crd_installed: LocalCluster, namespace: str, doc: dict[str, Any], message: str
) -> None:
    doc = {"apiVersion": "agentmedic.io/v1alpha1", "metadata": {"name": "broken"}, **doc}
    answer = _create(crd_installed, doc, namespace)
    assert answer.status_code == 422, answer.text[:500]
    assert message in answer.text


def test_kubectl_get_metricsbackends_shows_url_and_tenant(
    crd_installed: LocalCluster, namespace: str
) -> None:
    doc = {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "MetricsBackend",
        "metadata": {"name": "shown"},
        "spec": {"url": "https://mimir.example/prometheus", "tenant": "team-a"},
    }
    assert _create(crd_installed, doc, namespace).status_code == 201
    table = crd_installed.request(
        "GET",
        f"{GROUP_PATH}/namespaces/{namespace}/metricsbackends",
        params={"fieldSelector": "metadata.name=shown"},
        headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
    )
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "URL",
        "Tenant",
        "Ready",
        "Age",
    ]
    [row] = table["rows"]
    assert row["cells"][:3] == ["shown", "https://mimir.example/prometheus", "team-a"]
