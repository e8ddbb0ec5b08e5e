"""Label-selected list+watch of agent workloads, feeding a slim in-memory cache.

Why not kopf's own watch: kopf watches a resource kind in full (every Deployment in
scope) and filters labels client-side; at 10,000 workloads that is 10,000 full objects
held and every change to any of them delivered. Instead each distinct (namespace, label
selector, kind) that some policy uses gets one LIST and then one long-lived WATCH,
filtered by the API server (``labelSelector``), and the cache keeps only the fields the
operator reads (:class:`Workload`, a few hundred bytes). Cost: one watch connection per
distinct selector and kind; zero requests per evaluation cycle in steady state; memory in
proportion to the selected workloads only.

The connection is plain HTTP(S) on ``httpx.AsyncClient`` with the credentials of the
``kubernetes`` client's configuration (kubeconfig or in-cluster service account).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["KubeHttp", "Workload", "WorkloadCache", "authorization", "workload_from_object"]

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "agentmedic.io/"
AGENT_NAME_LABEL = "agentmedic.io/agent"

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
}


@dataclass(frozen=True)
class Workload:
    """What the operator keeps of an agent's Deployment or StatefulSet."""

    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    agent: str
    """The agent's name in the metrics: label agentmedic.io/agent, else the workload name."""
    replicas: int
    labels: dict[str, str]
    annotations: dict[str, str]
    """Only the agentmedic.io/* annotations."""
    env: dict[tuple[str, str], str]
    """(container, variable) → literal value, for the variables some policy reads the model from."""


def workload_from_object(obj: dict[str, Any], env_names: Iterable[str] = ()) -> Workload:
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {})
    wanted = set(env_names)
    env: dict[tuple[str, str], str] = {}
    if wanted:
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        for container in containers:
            for var in container.get("env") or []:
                if var.get("name") in wanted and "value" in var:
                    env[(container.get("name", ""), var["name"])] = str(var["value"])
    labels = dict(meta.get("labels") or {})
    replicas = spec.get("replicas")
    return Workload(
        kind=obj.get("kind", ""),
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        agent=labels.get(AGENT_NAME_LABEL, meta.get("name", "")),
        replicas=1 if replicas is None else int(replicas),
        labels=labels,
        annotations={
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if k.startswith(ANNOTATION_PREFIX)
        },
        env=env,
    )


def authorization(configuration: Any) -> str | None:
    """The ``Authorization`` header value of a kubernetes client configuration, if any.

    The kubeconfig and in-cluster loaders of kubernetes client 30+ store the token under
    ``BearerToken`` (already prefixed ``Bearer``); ``authorization`` is the older key and
    what a configuration built by hand may use. Reading only the latter sent every kopf and
    watch request of a token-authenticated operator as system:anonymous."""
    if not configuration.api_key:
        return None
    value = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(value) if value else None


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the kubeconfig says. One context, not httpx's ``verify=<path>`` plus
    ``cert=``: httpx returns early for a CA path and never loads the client certificate,
    so a kubeconfig with a private CA and a client certificate (kind, kubeadm, the local
    control plane) was answered as system:anonymous (403 on every watch)."""
    if getattr(configuration, "verify_ssl", True) is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif getattr(configuration, "ssl_ca_cert", None):
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        context = httpx.create_ssl_context()  # certifi, as httpx does by default
    if getattr(configuration, "cert_file", None):
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class KubeHttp:
    """An ``httpx.AsyncClient`` speaking to the API server with the kubernetes client's auth."""

    def __init__(self, configuration: Any) -> None:
        self._conf = configuration
        self.client = httpx.AsyncClient(
            base_url=configuration.host,
            verify=_ssl_context(configuration),
            timeout=httpx.Timeout(30.0, read=None),
            # One long-lived watch per selector and kind: httpx's default pool of 100
            # connections would starve the 101st watch (100 policies need 200 streams).
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )

    observe: Callable[[str, str], None] | None = None
    """Called with (verb, path) for every request (the operator counts them)."""

    def _headers(self) -> dict[str, str]:
        hook = getattr(self._conf, "refresh_api_key_hook", None)
        if hook is not None:
            hook(self._conf)  # in-cluster tokens rotate; the hook re-reads the mounted file
        token = authorization(self._conf)
        return {"Authorization": token} if token else {}

    async def get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        if self.observe is not None:
            self.observe("list" if params.get("labelSelector") is not None else "get", path)
        response = await self.client.get(path, params=params, headers=self._headers())
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: dict[str, str]) -> Any:
        if self.observe is not None:
            self.observe("watch", path)
        async with self.client.stream("GET", path, params=params, headers=self._headers()) as r:
            r.raise_for_status()
            yield r

    async def aclose(self) -> None:
        await self.client.aclose()


class _GoneError(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclass
class _Subscription:
    namespace: str
    selector: str
    kind: str
    items: dict[str, Workload] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    users: set[str] = field(default_factory=set)
    restart: bool = False


class WorkloadCache:
    """One list+watch per distinct (namespace, selector, kind); reads are in-memory."""

    def __init__(
        self,
        http: KubeHttp,
        *,
        watch_timeout_seconds: int = 300,
        on_change: Callable[[Workload | None, Workload | None], None] | None = None,
    ) -> None:
        self._http = http
        self._subs: dict[tuple[str, str, str], _Subscription] = {}
        self._env_names: set[str] = set()
        self._timeout = watch_timeout_seconds
        self._on_change = on_change
        self.requests = 0
        """LIST and WATCH requests sent since start (for the benchmark and tests)."""

    def subscribe(self, user: str, namespace: str, selector: str, env_names: Iterable[str]) -> None:
        """Make sure workloads matching ``selector`` in ``namespace`` are watched for ``user``."""
        new_env = set(env_names) - self._env_names
        if new_env:
            self._env_names |= new_env
            for sub in self._subs.values():  # they dropped those variables: list again
                self._restart(sub)
        for kind in _PATHS:
            key = (namespace, selector, kind)
            existing = self._subs.get(key)
            if existing is None:
                sub = self._subs[key] = _Subscription(namespace, selector, kind)
                sub.task = asyncio.get_running_loop().create_task(
                    self._run(sub), name=f"watch {kind} {namespace} {selector}"
                )
            else:
                sub = existing
            sub.users.add(user)

    def unsubscribe(self, user: str) -> None:
        for key, sub in list(self._subs.items()):
            sub.users.discard(user)
            if not sub.users:
                if sub.task is not None:
                    sub.task.cancel()
                del self._subs[key]

    def workloads(self, namespace: str, selector: str) -> list[Workload] | None:
        """Selected workloads, or None while a watch has not completed its first list."""
        out: list[Workload] = []
        for kind in _PATHS:
            sub = self._subs.get((namespace, selector, kind))
            if sub is None or not sub.synced.is_set():
                return None
            out.extend(sub.items.values())
        return sorted(out, key=lambda w: (w.kind, w.name))

    async def wait_synced(self) -> None:
        """Wait until every watch has listed once (wrap in asyncio.timeout)."""
        for sub in list(self._subs.values()):
            await sub.synced.wait()

    def size(self) -> int:
        return sum(len(s.items) for s in self._subs.values())

    async def aclose(self) -> None:
        tasks = [s.task for s in self._subs.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._subs.clear()

    def _restart(self, sub: _Subscription) -> None:
        if sub.task is not None:
            sub.task.cancel()
        sub.task = asyncio.get_running_loop().create_task(self._run(sub))

    async def _run(self, sub: _Subscription) -> None:
        path = _PATHS[sub.kind].format(ns=sub.namespace)
        delay = 0.5
        while True:
            try:
                version = await self._list(sub, path)
                delay = 0.5
                while True:
                    version = await self._watch(sub, path, version)
            except asyncio.CancelledError:
                raise
            except _GoneError:
                continue
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 410:
                    continue
                log.warning("watch of %s in %s failed: %s", sub.kind, sub.namespace, _describe(exc))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)
            except Exception as exc:  # any failure: back off and list again
                log.warning(
                    "watch of %s in %s (%s) failed: %s; retrying in %.1fs",
                    sub.kind,
                    sub.namespace,
                    sub.selector,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    async def _list(self, sub: _Subscription, path: str) -> str:
        self.requests += 1
        data = await self._http.get_json(path, {"labelSelector": sub.selector})
        fresh = {}
        for obj in data.get("items", []):
            obj.setdefault("kind", sub.kind)
            w = workload_from_object(obj, self._env_names)
            fresh[w.name] = w
        old = sub.items
        sub.items = fresh
        if self._on_change is not None:
            for name in old.keys() | fresh.keys():
                if old.get(name) != fresh.get(name):
                    self._on_change(old.get(name), fresh.get(name))
        sub.synced.set()
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, sub: _Subscription, path: str, version: str) -> str:
        self.requests += 1
        params = {
            "labelSelector": sub.selector,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._timeout),
        }
        async with self._http.stream(path, params) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _GoneError()
                    raise RuntimeError(obj.get("message", "watch error"))
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                obj.setdefault("kind", sub.kind)
                w = workload_from_object(obj, self._env_names)
                before = sub.items.get(w.name)
                if kind == "DELETED":
                    sub.items.pop(w.name, None)
                    after = None
                else:
                    sub.items[w.name] = w
                    after = w
                if self._on_change is not None and before != after:
                    self._on_change(before, after)
        return version


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
