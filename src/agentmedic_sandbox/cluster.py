"""A real Kubernetes control plane on loopback, for tests, the demo and the benchmarks.

:class:`LocalCluster` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok from the binaries ``tools/k8s/build.sh`` builds, the way controller-runtime's
envtest starts its control plane: loopback only, free ports, a throw-away data folder,
certificates generated for this one run. kwok plays the kubelet for fake nodes, so
ReplicaSets, Jobs and the scheduler act on pods that never run a container.

    with LocalCluster() as cluster:
        apps = kubernetes.client.AppsV1Api(
            kubernetes.client.ApiClient(cluster.client_configuration())
        )

Each process logs to ``<workdir>/<name>.log``; a process that dies during start-up raises
:class:`ClusterStartError` quoting the end of its log. ``stop()`` ends only the processes
this object started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import httpx
import yaml

from agentmedic_sandbox._cluster_args import (
    AUDIT_POLICY,
    SERVICE_CIDR,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kwok_args,
    scheduler_args,
)
from agentmedic_sandbox._lifecycle import Lifecycle

if TYPE_CHECKING:
    from agentmedic_sandbox._cluster_pki import Pki

# Must match tools/k8s/versions.env (a test checks it): the cache folder's name carries them.
KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.7"
KWOK_VERSION = "v0.8.0"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FIELD_MANAGER = "agentmedic-local-cluster"

KWOK_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)


class ClusterStartError(RuntimeError):
    """A control-plane process did not come up; the message quotes the end of its log."""


def k8s_cache_dir() -> Path:
    """The folder ``tools/k8s/build.sh`` builds into (without the trailing ``bin``)."""
    root = os.environ.get("AGENTMEDIC_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "agentmedic")
    return Path(root) / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}"


def k8s_bin_dir() -> Path:
    """``AGENTMEDIC_K8S_BIN`` if set, else the bin folder ``tools/k8s/build.sh`` fills."""
    override = os.environ.get("AGENTMEDIC_K8S_BIN")
    return Path(override) if override else k8s_cache_dir() / "bin"


def k8s_binaries_built(bin_dir: Path | None = None) -> bool:
    folder = bin_dir or k8s_bin_dir()
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    folder = bin_dir or k8s_bin_dir()
    return [name for name in BINARIES if not os.access(folder / name, os.X_OK)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the test's terminal reaches us, not them
        )

    def exited(self) -> int | None:
        return self.popen.poll()

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        self._log_file.close()


class RequestOptions(TypedDict, total=False):
    """The options of :meth:`LocalCluster.request`, all optional."""

    params: Mapping[str, str] | None
    """Query parameters."""
    headers: Mapping[str, str] | None
    """Headers besides ``Accept: application/json``."""
    content_type: str
    """The body's content type; ``application/json`` by default."""


class LocalCluster(Lifecycle):
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        workdir: Path | None = None,
        nodes: int = 1,
        controllers: bool = True,
        kwok: bool = True,
        audit: bool = True,
        hpa_sync_seconds: int = 3,
    ) -> None:
        self.bin_dir = bin_dir or k8s_bin_dir()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="agentmedic-k8s-"))
        self.nodes = nodes if kwok else 0
        self.controllers = controllers
        self.kwok = kwok
        self.audit = audit
        self.hpa_sync_seconds = hpa_sync_seconds
        self.url = ""
        self.kubeconfig_path = self.workdir / "admin.kubeconfig"
        self.audit_log_path = self.workdir / "audit.log"
        self.startup_seconds = 0.0
        self._processes: list[_Process] = []
        self._pki: Pki | None = None
        self._http: httpx.Client | None = None
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    # lifecycle

    def start(self) -> Self:
        needed = ["etcd", "kube-apiserver"]
        if self.controllers:
            needed += ["kube-controller-manager", "kube-scheduler"]
        if self.kwok:
            needed.append("kwok")
        missing = [n for n in missing_binaries(self.bin_dir) if n in needed]
        if missing:
            raise ClusterStartError(
                f"missing control-plane binaries in {self.bin_dir}: {', '.join(missing)} "
                "(build them with `make k8s`)"
            )
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start(self) -> None:
        from agentmedic_sandbox._cluster_pki import Pki

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = pki = Pki(self.workdir / "pki", SERVICE_CIDR)
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", etcd_args(self.workdir / "etcd", etcd_url, etcd_peer))
        self._wait("etcd", lambda: _http_ok(f"{etcd_url}/health"), timeout=30)

        self.url = f"https://127.0.0.1:{api_port}"
        audit = None
        if self.audit:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            audit = (policy, self.audit_log_path)
        self._spawn("kube-apiserver", apiserver_args(self.workdir, api_port, etcd_url, pki, audit))
        self._write_kubeconfig()
        self._wait("kube-apiserver", self._readyz, timeout=120)

        kubeconfig = self.kubeconfig_path
        if self.controllers:
            self._spawn(
                "kube-controller-manager",
                controller_manager_args(
                    kubeconfig, self.workdir, free_port(), pki, self.hpa_sync_seconds
                ),
            )
            self._spawn("kube-scheduler", scheduler_args(kubeconfig, self.workdir, free_port()))
        if self.kwok:
            stages = self.workdir / "kwok-stages.yaml"
            stages.write_text(_kwok_stages())
            self._spawn("kwok", kwok_args(kubeconfig, stages, KWOK_NODE_ANNOTATION, free_port()))
            for i in range(self.nodes):
                self.apply(_fake_node(f"kwok-node-{i}"))
        self._await_ready()

    def _await_ready(self) -> None:
        """Wait for the default namespace, its ServiceAccount and kwok's nodes."""
        self._wait("default namespace", lambda: self._exists("/api/v1/namespaces/default"), 60)
        if self.controllers:
            self._wait(
                "the default ServiceAccount (kube-controller-manager)",
                lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
                60,
            )
        if self.nodes:
            self._wait("kwok's nodes to be Ready", self._nodes_ready, 60)
            # The API server taints a new node not-ready; the node lifecycle controller,
            # which would lift it, is left out because it evicts pods whenever kwok's
            # heartbeat is late on a loaded machine. So the taint is lifted here, once.
            for i in range(self.nodes):
                self.request(
                    "PATCH",
                    f"/api/v1/nodes/kwok-node-{i}",
                    {"spec": {"taints": None}},
                    content_type="application/merge-patch+json",
                )

    @property
    def running(self) -> bool:
        return bool(self._processes)

    def stop(self) -> None:
        """Stop this cluster's processes, newest first; delete the workdir it made."""
        if self._http is not None:
            self._http.close()
            self._http = None
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._own_workdir and os.environ.get("AGENTMEDIC_KEEP_CLUSTER_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        """The process id of each process started, by name."""
        return {p.name: p.popen.pid for p in self._processes}

    def logs(self) -> dict[str, Path]:
        """The log file of each process started, by name."""
        return {p.name: p.log for p in self._processes}

    # clients

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            raise RuntimeError("the cluster has not been started")
        return self._pki

    def ssl_context(self, *, admin: bool = True) -> ssl.SSLContext:
        """Trusts this cluster's CA; presents the admin certificate when ``admin``."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if admin:
            context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def client_configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` for the admin (system:masters)."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.pki.ca)
        configuration.cert_file = str(self.pki.admin_cert)
        configuration.key_file = str(self.pki.admin_key)
        configuration.verify_ssl = True
        return configuration

    def kubeconfig_dict(self) -> dict[str, Any]:
        return _kubeconfig(
            self.url,
            self.pki.ca_pem,
            "agentmedic-admin",
            {
                "client-certificate-data": _b64(self.pki.admin_cert_pem),
                "client-key-data": _b64(self.pki.admin_key_pem),
            },
        )

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """A kubeconfig that authenticates with ``token`` only (no client certificate)."""
        path.write_text(
            yaml.safe_dump(_kubeconfig(self.url, self.pki.ca_pem, "token", {"token": token}))
        )
        path.chmod(0o600)
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A bound token for a ServiceAccount, from the TokenRequest API."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": max(seconds, 600)},
            },
        )
        return str(answer["status"]["token"])

    def request(
        self, method: str, path: str, body: Any = None, **options: Unpack[RequestOptions]
    ) -> dict[str, Any]:
        """One admin request; raises :class:`httpx.HTTPStatusError` on a 4xx/5xx answer."""
        response = self._raw(method, path, body, **options)
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"{method} {path}: {response.status_code} {response.text[:500]}",
                request=response.request,
                response=response,
            )
        return dict(response.json()) if response.content else {}

    def _raw(
        self, method: str, path: str, body: Any = None, **options: Unpack[RequestOptions]
    ) -> httpx.Response:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=30.0)
        all_headers = {"Accept": "application/json", **(options.get("headers") or {})}
        content = None
        if body is not None:
            all_headers["Content-Type"] = options.get("content_type", "application/json")
            content = body if isinstance(body, bytes | str) else json.dumps(body)
        params = dict(options.get("params") or {})
        return self._http.request(method, path, content=content, params=params, headers=all_headers)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the admin (creates or updates it)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        meta = obj["metadata"]
        plural, namespaced = self._resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            base += f"/namespaces/{meta.get('namespace') or 'default'}"
        return self.request(
            "PATCH",
            f"{base}/{plural}/{meta['name']}",
            dict(obj),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def resource_path(self, api_version: str, kind: str, namespace: str | None = None) -> str:
        """The collection path of ``kind`` (in ``namespace`` when it is namespaced)."""
        plural, namespaced = self._resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{plural}"

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key not in self._resources:
            # a CRD applied moments ago is not in discovery at once
            deadline = time.monotonic() + 30
            while True:
                path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
                response = self._raw("GET", path)
                if response.status_code == 200:
                    for r in response.json().get("resources", []):
                        if "/" not in r["name"]:
                            self._resources[(api_version, r["kind"])] = (
                                r["name"],
                                bool(r["namespaced"]),
                            )
                if key in self._resources or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        if key not in self._resources:
            raise LookupError(f"the API server serves no {kind} in {api_version}")
        return self._resources[key]

    def install_crd(self, crd: Mapping[str, Any] | None = None, *, timeout: float = 60) -> None:
        """Apply a CRD and wait until it is served; by default every CRD generated from the
        models (AgentPolicy and the kinds registered beside it), with the time compression
        in force."""
        if crd is None:
            from agentmedic.api.crd import crd_manifests

            for each in crd_manifests():
                self.install_crd(each, timeout=timeout)
            return
        self.apply(crd)
        name = crd["metadata"]["name"]
        group = crd["spec"]["group"]
        version = crd["spec"]["versions"][0]["name"]
        kind = crd["spec"]["names"]["kind"]

        def established() -> bool:
            got = self.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            )

        self._wait(f"CRD {name} to be established", established, timeout)
        self._resources.pop((f"{group}/{version}", kind), None)
        self._resource(f"{group}/{version}", kind)

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write the admin kubeconfig to ``path`` (as the emulator's method of that name)."""
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        target.chmod(0o600)
        return target

    def ensure_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``obj``; its ``status``, if any, is then written through ``/status``."""
        meta = obj["metadata"]
        path = self.resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        body = {k: v for k, v in obj.items() if k != "status"}
        created = self.request("POST", path, body)
        if obj.get("status"):
            created["status"] = obj["status"]
            created = self.request("PUT", f"{path}/{meta['name']}/status", created)
        return created

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when the server answers 404."""
        response = self._raw("GET", f"{self.resource_path(api_version, kind, namespace)}/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        answer = self.request(
            "GET", self.resource_path(api_version, kind, namespace), params=params
        )
        return list(answer.get("items", []))

    # start-up helpers

    def _spawn(self, name: str, args: list[str]) -> None:
        argv = [str(self.bin_dir / name), *args]
        self._processes.append(_Process(name, argv, self.workdir / f"{name}.log"))

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        _wait_for(self._processes, what, check, timeout)

    def _readyz(self) -> bool:
        return self._raw("GET", "/readyz").status_code == 200

    def _exists(self, path: str) -> bool:
        return self._raw("GET", path).status_code == 200

    def _nodes_ready(self) -> bool:
        nodes = self.request("GET", "/api/v1/nodes").get("items", [])
        ready = [
            n
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.nodes

    def _write_kubeconfig(self) -> None:
        self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        self.kubeconfig_path.chmod(0o600)


def _wait_for(processes: list[_Process], what: str, check: Any, timeout: float) -> None:
    """Poll ``check`` until it holds; a process that exits or the timeout ends the start."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            code = process.exited()
            if code is not None:
                raise ClusterStartError(
                    f"{process.name} exited with status {code} while waiting for {what}; "
                    f"the end of {process.log}:\n{process.tail()}"
                )
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            last = processes[-1]
            raise ClusterStartError(
                f"timed out after {timeout:.0f}s waiting for {what}; "
                f"the end of {last.log} ({last.name}):\n{last.tail()}"
            )
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _kubeconfig(url: str, ca_pem: bytes, user: str, auth: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "agentmedic-local",
                "cluster": {"server": url, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": auth}],
        "contexts": [
            {"name": "agentmedic-local", "context": {"cluster": "agentmedic-local", "user": user}}
        ],
        "current-context": "agentmedic-local",
    }


def _kwok_stages() -> str:
    folder = resources.files("agentmedic_sandbox") / "kwok_stages"
    return "\n---\n".join((folder / name).read_text() for name in KWOK_STAGES)


def _fake_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        # no taint: the tests' pods need no toleration; kwok's initialize stage gives the
        # node 1k CPUs and room for a million pods
        "spec": {},
    }
