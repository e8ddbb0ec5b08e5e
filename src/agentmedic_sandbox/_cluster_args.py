"""The command lines of the local control plane's processes.

Pure functions of the ports, paths and options :class:`~agentmedic_sandbox.cluster.LocalCluster`
chose; the flags follow controller-runtime's envtest where it has an opinion.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentmedic_sandbox._cluster_pki import Pki

__all__ = [
    "AUDIT_POLICY",
    "CONTROLLERS",
    "SERVICE_CIDR",
    "apiserver_args",
    "controller_manager_args",
    "etcd_args",
    "kwok_args",
    "scheduler_args",
]

SERVICE_CIDR = "10.0.0.0/24"

# The controllers a test of agentmedic meets on a real cluster; node IPAM, volumes,
# certificates and the like have nothing to act on here.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "horizontal-pod-autoscaler-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
# Metadata of every request (enough to find a 403 and who got it) and the bodies of writes
# (what the benchmark classifies), except of Secrets and tokens: no secret in a log.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:apiserver"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "serviceaccounts/token"]
  - group: "authentication.k8s.io"
- level: Request
  verbs: ["create", "update", "patch"]
- level: Metadata
"""


def etcd_args(data_dir: Path, client_url: str, peer_port: int) -> list[str]:
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        "--name=agentmedic",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=agentmedic={peer}",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def apiserver_args(
    workdir: Path,
    port: int,
    etcd_url: str,
    pki: Pki,
    audit: tuple[Path, Path] | None,
) -> list[str]:
    """``audit``: the policy file and the log file, or None for no audit log."""
    args = [
        "--advertise-address=127.0.0.1",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca}",
        f"--etcd-servers={etcd_url}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--endpoint-reconciler-type=none",
        "--v=1",
    ]
    if audit is not None:
        policy, log = audit
        args += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={log}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
            "--audit-log-batch-buffer-size=100000",
        ]
    return args


def _component_args(kubeconfig: Path, port: int, cert_dir: Path) -> list[str]:
    """What kube-controller-manager and kube-scheduler share: the admin kubeconfig for
    everything, a loopback port of their own, no leader election."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
    ]


def controller_manager_args(
    kubeconfig: Path, workdir: Path, port: int, pki: Pki, hpa_sync_seconds: int
) -> list[str]:
    return [
        *_component_args(kubeconfig, port, workdir / "controller-manager-certs"),
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca}",
        "--use-service-account-credentials=false",
        f"--horizontal-pod-autoscaler-sync-period={hpa_sync_seconds}s",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ]


def scheduler_args(kubeconfig: Path, workdir: Path, port: int) -> list[str]:
    return [*_component_args(kubeconfig, port, workdir / "scheduler-certs"), "--v=1"]


def kwok_args(kubeconfig: Path, stages: Path, node_annotation: str, port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={node_annotation}=fake",
        "--cidr=10.244.0.0/16",
        "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{port}",
    ]
