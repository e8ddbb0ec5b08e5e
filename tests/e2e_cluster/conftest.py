"""A real cluster for the e2e suite: the local control plane, or one ``KUBECONFIG`` names.

Without ``KUBECONFIG`` the suite runs against its own session ``local_cluster`` (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback, see
tests/conftest.py), which skips only when its binaries are not built (``make k8s``).

With ``KUBECONFIG`` the suite runs when it names a kubeconfig whose current (or
``AGENTMEDIC_E2E_CONTEXT``) context is reachable and looks like a disposable local cluster
(kind, k3d/k3s, minikube, Docker/Rancher Desktop, or an API server on loopback). Any other
cluster is skipped unless ``AGENTMEDIC_E2E_ANY_CLUSTER=1``: ``make test`` must never touch a
production cluster just because a developer's shell points at one. Everything happens in
a fresh namespace that is deleted afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest

from agentmedic.actions import ActionError, ActionExecutor, Kube, RetryPolicy
from tests.conftest import run_local_cluster

if TYPE_CHECKING:
    from agentmedic_sandbox.cluster import LocalCluster

LOCAL_CONTEXT_PREFIXES = ("kind-", "k3d-", "k3s", "minikube", "docker-desktop", "rancher-desktop")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _skip(reason: str) -> NoReturn:
    pytest.skip(f"e2e_cluster: {reason}; see tests/e2e_cluster/README.md")


def uses_local_cluster() -> bool:
    return not os.environ.get("KUBECONFIG")


@pytest.fixture(scope="session")
def local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """This suite's own local control plane, apart from the integration tests' one: these
    tests install the AgentPolicy CRD as generated, the integration tests one rendered for
    time-compressed policies, and each must hold whichever ran before on the worker."""
    yield from run_local_cluster(request, tmp_path_factory, "e2e-local-cluster")


@pytest.fixture(scope="session")
def cluster_configuration(request: pytest.FixtureRequest) -> Any:
    """A ``kubernetes.client.Configuration`` for a reachable, disposable cluster."""
    import kubernetes.client
    import kubernetes.config
    from kubernetes.config.config_exception import ConfigException

    path = os.environ.get("KUBECONFIG")
    if not path:
        return request.getfixturevalue("local_cluster").client_configuration()
    context = os.environ.get("AGENTMEDIC_E2E_CONTEXT") or None
    try:
        # config_file=None: the library reads KUBECONFIG itself, including a list of files
        contexts, current = kubernetes.config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        _skip(f"cannot read KUBECONFIG {path}: {exc}")
    chosen = next((c for c in contexts if c["name"] == context), None) if context else current
    if chosen is None:
        _skip(f"context {context!r} not in {path}")
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        context=chosen["name"], client_configuration=configuration
    )
    host = urlsplit(configuration.host).hostname or ""
    local = chosen["name"].startswith(LOCAL_CONTEXT_PREFIXES) or host in LOCAL_HOSTS
    if not local and os.environ.get("AGENTMEDIC_E2E_ANY_CLUSTER") != "1":
        _skip(
            f"context {chosen['name']!r} ({configuration.host}) does not look like a local "
            "kind/k3s cluster; set AGENTMEDIC_E2E_ANY_CLUSTER=1 to run against it anyway"
        )
    probe = Kube.from_configuration(configuration, retry=RetryPolicy(attempts=1), timeout=(5, 5))
    try:
        probe.request("probe the API server", "GET", "/version")
    except ActionError as exc:
        _skip(f"cluster {configuration.host} is not reachable ({exc.message})")
    finally:
        probe.close()
    return configuration


@pytest.fixture(scope="session")
def namespace(cluster_configuration: Any) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) at the end of the session."""
    name = f"agentmedic-e2e-{uuid.uuid4().hex[:8]}"
    kube = Kube.from_configuration(cluster_configuration)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kube.request("create the test namespace", "POST", "/api/v1/namespaces", body=body)
    try:
        yield name
    finally:
        kube.request("delete the test namespace", "DELETE", f"/api/v1/namespaces/{name}")
        kube.close()


@pytest.fixture
def executor(cluster_configuration: Any) -> Iterator[ActionExecutor]:
    kube = Kube.from_configuration(
        cluster_configuration, retry=RetryPolicy(attempts=5, base=0.2, cap=2.0)
    )
    yield ActionExecutor(kube)
    kube.close()


def eventually(
    check: Callable[[], Any], *, timeout: float = 90.0, interval: float = 1.0, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or check.__name__}")
        time.sleep(interval)  # polling a real cluster's controllers: there is no event to await


KEDA_CRD_STAND_IN: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "names": {
            "kind": "ScaledObject",
            "listKind": "ScaledObjectList",
            "plural": "scaledobjects",
            "singular": "scaledobject",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def install_keda_crd_stand_in(executor: ActionExecutor) -> None:
    """KEDA's ScaledObject kind (group, version, names; spec kept as given), without KEDA."""
    kube = executor.kube
    kube.request(
        "install a stand-in for KEDA's CRD",
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        body=KEDA_CRD_STAND_IN,
    )

    def established() -> bool:
        crd = kube.request(
            "read the CRD",
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh",
        )
        conditions = (crd or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually(established, timeout=30, interval=0.2, what="KEDA's CRD stand-in")
    # discovery lags behind Established for a moment
    eventually(
        lambda: _served(kube, "/apis/keda.sh/v1alpha1"),
        timeout=30,
        interval=0.2,
        what="keda.sh/v1alpha1 in discovery",
    )


def _served(kube: Kube, path: str) -> bool:
    try:
        kube.request("discovery", "GET", path)
    except ActionError:
        return False
    return True
