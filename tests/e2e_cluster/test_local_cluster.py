"""The local control plane itself (agentmedic_sandbox.cluster.LocalCluster)."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentmedic_sandbox import cluster as lc
from agentmedic_sandbox.cluster import ClusterStartError, LocalCluster
from tests.e2e_cluster.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


def _versions_env() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "tools/k8s/versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_the_python_side_looks_for_the_binaries_where_build_sh_puts_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    v = _versions_env()
    folder = f"k8s-{v['KUBERNETES_VERSION']}-etcd-{v['ETCD_VERSION']}-kwok-{v['KWOK_VERSION']}"
    monkeypatch.delenv("AGENTMEDIC_K8S_BIN", raising=False)
    monkeypatch.delenv("AGENTMEDIC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert lc.k8s_bin_dir() == Path.home() / ".cache/agentmedic" / folder / "bin"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lc.k8s_bin_dir() == tmp_path / "xdg/agentmedic" / folder / "bin"
    monkeypatch.setenv("AGENTMEDIC_CACHE", str(tmp_path / "cache"))
    assert lc.k8s_bin_dir() == tmp_path / "cache" / folder / "bin"
    monkeypatch.setenv("AGENTMEDIC_K8S_BIN", str(tmp_path / "mine"))
    assert lc.k8s_bin_dir() == tmp_path / "mine"
    assert not lc.k8s_binaries_built()
    # build.sh derives the same folder from the same variables
    script = (ROOT / "tools/k8s/build.sh").read_text()
    assert 'cache_root="${AGENTMEDIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentmedic}"' in script
    assert 'k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"' in script


def test_a_process_that_dies_at_start_up_is_named_with_the_end_of_its_log(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in lc.BINARIES:
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho '{name}: cannot listen: address in use' >&2\nexit 3\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    cluster = LocalCluster(bin_dir, workdir=tmp_path / "work")

    with pytest.raises(ClusterStartError) as caught:
        cluster.start()

    message = str(caught.value)
    assert "etcd exited with status 3" in message
    assert "etcd: cannot listen: address in use" in message
    assert cluster.logs() == {}  # stopped: nothing left running


def test_missing_binaries_are_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ClusterStartError, match=r"kube-apiserver.*make k8s"):
        LocalCluster(tmp_path, workdir=tmp_path / "work").start()


def test_a_token_of_a_service_account_without_roles_is_refused_until_a_role_is_bound(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    local_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "reader", "namespace": ns},
    }
    local_cluster.apply(sa)
    token = local_cluster.service_account_token(ns, "reader", seconds=600)
    kubeconfig = local_cluster.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig")
    assert token not in local_cluster.kubeconfig_path.read_text()

    def list_pods() -> int:
        with httpx.Client(verify=local_cluster.ssl_context(admin=False)) as http:
            return http.get(
                f"{local_cluster.url}/api/v1/namespaces/{ns}/pods",
                headers={"Authorization": f"Bearer {token}"},
            ).status_code

    assert list_pods() == 403
    local_cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        }
    )
    local_cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        }
    )
    eventually(lambda: list_pods() == 200, timeout=30, interval=0.2, what="the RoleBinding")

    import kubernetes.config

    api = kubernetes.config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    import kubernetes.client

    pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(ns)
    assert pods.items == []


def _pods(cluster: LocalCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    items = cluster.request(
        "GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector}
    )["items"]
    return list(items)


def test_a_deployment_gets_pods_that_kwok_reports_running(local_cluster: LocalCluster) -> None:
    ns = f"kwok-{uuid.uuid4().hex[:6]}"
    local_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    local_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        }
    )

    def running() -> list[dict[str, Any]]:
        pods = _pods(local_cluster, ns, "app=web")
        ok = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        return ok if len(ok) == 2 else []

    pods = eventually(running, timeout=60, interval=0.3, what="two Running pods")
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0"}
    deployment = local_cluster.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    eventually(
        lambda: (
            local_cluster.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")[
                "status"
            ].get("readyReplicas")
            == 2
        ),
        timeout=60,
        interval=0.3,
        what="the Deployment's readyReplicas",
    )
    assert deployment["metadata"]["generation"] == 1
