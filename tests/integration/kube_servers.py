"""One conformance suite, two API servers: what the tests may call on either.

:class:`KubeServer` is the direct access the integration tests use to seed and inspect a
cluster. :class:`~agentmedic_sandbox.emulator.ApiEmulator` satisfies it as it is;
:class:`RealServer` is a thin adapter over
:class:`~agentmedic_sandbox.cluster.LocalCluster` (kube-apiserver with etcd,
controller-manager, scheduler and kwok on loopback) speaking HTTP with the cluster's admin
credentials. Both raise :class:`~agentmedic_sandbox.emulator.ApiError` (``.code``,
``.reason``, ``.message``) for an error ``Status``, so a test asserts one thing for both.

What only the emulator has (``inject`` faults, the ``requests`` history, an injected
clock) is not part of the protocol: tests that need it are marked ``emulator_only`` with
the reason, and run on the emulator alone.
"""

from __future__ import annotations

import builtins
import json
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import yaml

from agentmedic_sandbox.emulator import ApiEmulator, ApiError

if TYPE_CHECKING:
    import kopf
    import kubernetes.client

__all__ = [
    "EMULATED",
    "REAL",
    "SERVERS",
    "KubeServer",
    "RealServer",
    "create_namespace",
    "drop_namespace",
    "is_real",
    "operator_configuration",
    "wait_for",
]

EMULATED = "emulated"
REAL = "real"
SERVERS = [EMULATED, REAL]

_PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}

T = TypeVar("T")


class KubeServer(Protocol):
    """The calls tests make on an API server, whichever it is."""

    @property
    def url(self) -> str: ...

    def client_configuration(self) -> kubernetes.client.Configuration: ...

    def kubeconfig_dict(self) -> dict[str, Any]: ...

    def write_kubeconfig(self, path: str | Path) -> Path: ...

    def login_kopf(self) -> kopf.ConnectionInfo: ...

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]: ...

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
    ) -> dict[str, Any] | None: ...


def is_real(server: object) -> bool:
    """True for the real control plane (controllers run, writes settle asynchronously)."""
    return not isinstance(server, ApiEmulator)


def wait_for(
    predicate: Callable[[], T | None], what: str, *, timeout: float = 30.0, poll: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


class _Resource:
    def __init__(self, path: str, plural: str, namespaced: bool) -> None:
        self.path = path  # /api/v1 or /apis/<group>/<version>
        self.plural = plural
        self.namespaced = namespaced
        self.status = False
        self.scale = False

    def url(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        parts = [self.path]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if sub is not None:
            parts.append(sub)
        return "/".join(parts)


class RealServer:
    """:class:`KubeServer` over a running control plane, with its admin credentials."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        config = cluster.client_configuration()
        self._config = config
        headers = {"Accept": "application/json"}
        token = (config.api_key or {}).get("authorization") or (config.api_key or {}).get(
            "BearerToken"
        )
        if token:
            prefix = (config.api_key_prefix or {}).get("authorization", "")
            headers["Authorization"] = f"{prefix} {token}".strip()
        verify: ssl.SSLContext | bool = False
        if config.verify_ssl:
            verify = ssl.create_default_context(cafile=config.ssl_ca_cert)
            if config.cert_file:
                verify.load_cert_chain(config.cert_file, config.key_file)
        self._http = httpx.Client(
            base_url=config.host, headers=headers, verify=verify, timeout=30.0
        )
        self._resources: dict[tuple[str, str], _Resource] = {}
        self._operator_configuration: kubernetes.client.Configuration | None = None

    # --- configuration ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.cluster.url)

    def client_configuration(self) -> kubernetes.client.Configuration:
        return self.cluster.client_configuration()  # type: ignore[no-any-return]

    def kubeconfig_dict(self) -> dict[str, Any]:
        return self.cluster.kubeconfig_dict()  # type: ignore[no-any-return]

    def write_kubeconfig(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig_dict(), sort_keys=False))
        return target

    def login_kopf(self) -> kopf.ConnectionInfo:
        import kopf

        config = self._config
        token = self._http.headers.get("Authorization", "").removeprefix("Bearer ") or None
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert or None,
            insecure=not config.verify_ssl,
            token=token,
            certificate_path=config.cert_file or None,
            private_key_path=config.key_file or None,
            default_namespace="default",
        )

    def close(self) -> None:
        self._http.close()

    # --- HTTP ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": params}
        if body is not None:
            kwargs["json"] = body
            kwargs["headers"] = {"Content-Type": content_type}
        response = self._http.request(method, url, **kwargs)
        # 429 with Retry-After is the server's "try again" (a CRD's storage initialising,
        # priority and fairness); clients retry it, and so does the adapter, within bounds.
        deadline = time.monotonic() + 30.0
        while response.status_code == 429 and time.monotonic() < deadline:
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
            response = self._http.request(method, url, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = {"message": response.text}
        if response.status_code >= 400:
            raise ApiError(
                response.status_code,
                str(data.get("message", "")),
                reason=data.get("reason"),
                details=data.get("details"),
            )
        if not isinstance(data, dict):
            raise ApiError(500, f"unexpected answer to {method} {url}: {data!r}")
        return data

    def resource(self, api_version: str, kind: str) -> _Resource:
        """The served resource for ``kind`` (discovery, cached; refreshed on a miss)."""
        key = (api_version, kind)
        if key not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self._request("GET", path)
            except ApiError as exc:
                raise ApiError(404, f"no API {api_version} is served: {exc.message}") from exc
            subresources = set()
            for entry in listing.get("resources", []):
                if "/" in entry["name"]:
                    subresources.add(entry["name"])
            for entry in listing.get("resources", []):
                if "/" not in entry["name"]:
                    res = _Resource(path, entry["name"], bool(entry["namespaced"]))
                    res.status = f"{res.plural}/status" in subresources
                    res.scale = f"{res.plural}/scale" in subresources
                    self._resources[(api_version, entry["kind"])] = res
        if key not in self._resources:
            raise ApiError(404, f"the server does not serve {kind} in {api_version}")
        return self._resources[key]

    def forget_discovery(self) -> None:
        """Drop cached discovery (after a CRD appears)."""
        self._resources.clear()

    # --- direct access ------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST ``obj``; a ``status`` given is then written through ``/status`` (to seed
        fixtures, as the emulator's ``create`` keeps it)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        namespace = (obj.get("metadata") or {}).get("namespace")
        created = self._request("POST", res.url(namespace), body=obj)
        if "status" in obj and res.status:
            created = self._request(
                "PATCH",
                res.url(namespace, created["metadata"]["name"], "status"),
                body={"status": obj["status"]},
                content_type=_PATCH_TYPES["merge"],
            )
        return created

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` or replace the object of that name (no three-way merge)."""
        meta = obj.get("metadata") or {}
        existing = self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if existing is None:
            return self.create(obj)
        res = self.resource(obj["apiVersion"], obj["kind"])
        body = {
            **obj,
            "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]},
        }
        return self._request("PUT", res.url(meta.get("namespace"), meta["name"]), body=body)

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        try:
            return self._request("GET", res.url(namespace, name))
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Objects of a kind, sorted by namespace and name, each with apiVersion and kind
        (a real list leaves them out of its items)."""
        res = self.resource(api_version, kind)
        params = {"labelSelector": label_selector} if label_selector else None
        items = self._request("GET", res.url(namespace), params=params).get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return sorted(
            items,
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        res = self.resource(api_version, kind)
        return self._request(
            "PATCH",
            res.url(namespace, name, subresource),
            body=patch,
            content_type=_PATCH_TYPES[patch_type],
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
    ) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        try:
            return self._request(
                "DELETE",
                res.url(namespace, name),
                body={"propagationPolicy": propagation_policy},
            )
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def raw(
        self, method: str, url: str, body: Any, *, content_type: str = "application/json"
    ) -> httpx.Response:
        """One request with the admin's credentials, its answer as it came."""
        return self._http.request(
            method, url, content=json.dumps(body), headers={"Content-Type": content_type}
        )

    def send_get(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> httpx.Response:
        """A GET with the admin's credentials and extra headers, its answer as it came."""
        return self._http.get(url, headers=headers, timeout=timeout)

    def request_dry_run_create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST ``obj`` with ``dryRun=All``: validated and admitted, never stored."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        namespace = (obj.get("metadata") or {}).get("namespace")
        return self._request("POST", res.url(namespace), body=obj, params={"dryRun": "All"})

    # --- the operator's identity ------------------------------------------------------------

    def operator_configuration(self) -> kubernetes.client.Configuration:
        """A client configuration as the operator has in a cluster: a ServiceAccount token
        whose ClusterRole grants exactly the permissions agentmedic declares (the lists the
        chart's RBAC is checked against), so a missing one shows as a 403 here.

        The token sits under ``api_key["authorization"]``: the operator's kopf login and watch
        cache read only that key, while the kubernetes client agentmedic installs (37.x here)
        loads kubeconfigs and in-cluster credentials under ``"BearerToken"`` (a defect
        pinned by the strict xfail ``test_the_operator_authenticates_with_a_token_kubeconfig``).
        """
        if self._operator_configuration is None:
            import kubernetes.client

            from agentmedic.actions.permissions import REQUIRED_PERMISSIONS as ACTIONS
            from agentmedic.operator.permissions import REQUIRED_PERMISSIONS as OPERATOR

            verbs: dict[tuple[str, str], set[str]] = {}
            for group, resource, verb in {*ACTIONS, *OPERATOR}:
                verbs.setdefault((group, resource), set()).add(verb)
            rules = [
                {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
                for (group, resource), v in sorted(verbs.items())
            ]
            name, namespace = "agentmedic", "agentmedic-system"
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace},
                }
            )
            self.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": name},
                    "rules": rules,
                }
            )
            self.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": name,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
                }
            )
            token = self.cluster.service_account_token(namespace, name)
            config = kubernetes.client.Configuration()
            config.host = self._config.host
            config.ssl_ca_cert = self._config.ssl_ca_cert
            config.verify_ssl = True
            config.api_key = {"authorization": token}
            config.api_key_prefix = {"authorization": "Bearer"}
            self._operator_configuration = config
        return self._operator_configuration

    # --- cluster set-up -------------------------------------------------------------------

    def install_crd(self, crd: dict[str, Any], *, timeout: float = 60.0) -> None:
        """Apply a CRD, wait until it is Established and its resource is served."""
        self.apply(crd)
        name = crd["metadata"]["name"]

        def established() -> bool:
            obj = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
            conditions = ((obj or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, f"CRD {name} to be Established", timeout=timeout)
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]

        def served() -> bool:
            self.forget_discovery()
            try:
                for version in versions:
                    self.resource(f"{group}/{version}", kind)
            except ApiError:
                return False
            return True

        wait_for(served, f"{kind} to be served", timeout=timeout)
        # Served is not yet ready: until its watch cache is filled the resource answers 429
        # "storage is (re)initializing", which this list waits out.
        for version in versions:
            self.list(f"{group}/{version}", kind)


def operator_configuration(server: KubeServer) -> kubernetes.client.Configuration:
    """The credentials an operator under test gets: on the real server a ServiceAccount
    token bound to agentmedic's declared permissions, on the emulator its open door."""
    if isinstance(server, RealServer):
        return server.operator_configuration()
    return server.client_configuration()


def create_namespace(server: KubeServer, name: str) -> str:
    """Create a namespace (a real server needs the object before its contents)."""
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def drop_namespace(server: KubeServer, name: str) -> None:
    """Delete a namespace without waiting (a real one terminates asynchronously)."""
    server.delete("v1", "Namespace", None, name)


class WorldServer:
    """The real control plane as :class:`~agentmedic_sandbox.world.World`'s API server.

    ``start`` gives the world fresh namespaces (deleting leftovers of an earlier world and
    waiting until they are gone, since the world's names are fixed); ``stop`` deletes them
    without waiting. The operator gets the ServiceAccount identity of
    :meth:`RealServer.operator_configuration`, in a thread or, through
    :meth:`write_kubeconfig`, in an ``agentmedic run`` process.
    """

    def __init__(self, server: RealServer, namespaces: builtins.list[str]) -> None:
        self.server = server
        self.namespaces = namespaces

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        for name in self.namespaces:
            if self.server.get("v1", "Namespace", None, name) is not None:
                self.server.delete("v1", "Namespace", None, name)
                try:
                    wait_for(
                        lambda n=name: self.server.get("v1", "Namespace", None, n) is None,  # type: ignore[misc]
                        f"namespace {name} of an earlier world to go",
                        timeout=120,
                    )
                except TimeoutError as exc:
                    left = self.server.get("v1", "Namespace", None, name) or {}
                    conditions = (left.get("status") or {}).get("conditions") or []
                    why = "; ".join(
                        f"{c.get('type')}={c.get('status')}: {c.get('message', '')}"
                        for c in conditions
                        if c.get("status") == "True"
                    )
                    raise TimeoutError(f"{exc} ({why or 'no condition'})") from exc
            create_namespace(self.server, name)

    def stop(self) -> None:
        for name in self.namespaces:
            drop_namespace(self.server, name)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.server.create(obj)

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return self.server.get(api_version, kind, namespace, name)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        return self.server.list(api_version, kind, namespace, label_selector=label_selector)

    def client_configuration(self) -> kubernetes.client.Configuration:
        return self.server.operator_configuration()

    def admin_configuration(self) -> kubernetes.client.Configuration:
        """The administrator's, for what the sandbox plays that is not the operator (the
        Job controller's part in :class:`agentmedic_sandbox.prompt_jobs.PromptJobRunner`)."""
        return self.server.client_configuration()

    def write_kubeconfig(self, path: str | Path) -> Path:
        token = str(self.server.operator_configuration().api_key["authorization"])
        return Path(self.server.cluster.kubeconfig_for_token(token, Path(path)))
