"""The synchronous client: the ``kubernetes`` library's transport, wrapped.

Every call goes through :meth:`Kube.request` (or :meth:`Kube.arequest` from a coroutine),
which

- sends and returns plain JSON dicts exactly as they are on the wire (camelCase,
  annotations, env lists), using the client's configuration, authentication, TLS and
  connection pool (``ApiClient.param_serialize`` and ``call_api``);
- names the content type of every PATCH explicitly (:mod:`agentmedic.kube.patch`);
- retries transient failures by :class:`~agentmedic.kube.retry.RetryPolicy`;
- translates what is left into :mod:`agentmedic.kube.errors`.

The client is synchronous on purpose (the actions run in worker threads, several at once
through one client: ``tests/integration/test_actions_threads.py`` drives it from 40
threads against both API servers); sleeping
between retries therefore blocks only the worker thread. :meth:`Kube.arequest` runs each
attempt in a thread and sleeps on the event loop instead.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict, Unpack

import urllib3
from kubernetes import client as k8s

from agentmedic.kube import paths
from agentmedic.kube.errors import KubeError, Unavailable, error_for_status, unreachable
from agentmedic.kube.patch import MERGE_PATCH
from agentmedic.kube.retry import RetryPolicy

__all__ = ["Configuration", "Kube", "translate"]

log = logging.getLogger(__name__)

Configuration = k8s.Configuration
"""The ``kubernetes`` client's configuration (host, credentials, TLS), re-exported so that
callers need not import the client library."""

MIN_POOL = 32
"""The fewest connections a client's pool keeps, so that concurrent actions and status
writes reuse their connections."""

Guard = Callable[[], None]
"""Called before every attempt of a request; raises to stop it (a lost Lease, say)."""


class RequestOptions(TypedDict, total=False):
    """The options of :meth:`Kube.request` and :meth:`Kube.arequest`, all optional."""

    query: Mapping[str, str] | None
    """Query parameters."""
    body: Any
    """The JSON body, if any."""
    content_type: str | None
    """The body's content type (a patch type for PATCH); JSON by default."""
    request_timeout: float | tuple[float, float] | None
    """Seconds per attempt, or (connect, read); the client's by default."""
    retry: RetryPolicy | None
    """The retry policy; the client's by default."""
    guard: Guard | None
    """Called before every attempt."""


def translate(exc: k8s.ApiException, what: str) -> KubeError:
    """Turn an ``ApiException`` into this layer's error, naming what was attempted."""
    return error_for_status(
        what,
        int(exc.status or 0),
        exc.body,
        headers=exc.headers or {},
        http_reason=str(exc.reason or ""),
    )


class Kube:
    """A thin, retrying, error-translating facade over the ``kubernetes`` sync client.

    Methods return the API's JSON as dicts. ``sleep`` and ``rng`` are parameters so tests
    can observe backoff without waiting for it. Prefer :meth:`from_configuration`; an
    ``api_client`` built elsewhere should have ``configuration.retries = False``.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.api_client = api_client
        self.observe: Callable[[str, str], None] | None = None
        """Called with (method, path) before every request sent (the operator counts them)."""
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._rng = rng or random.Random()

    @classmethod
    def from_configuration(cls, configuration: k8s.Configuration, **kwargs: Any) -> Kube:
        """A client for a ``kubernetes.client.Configuration`` (kubeconfig, in-cluster, test).

        The configuration is copied with urllib3's own retries switched off: by default
        urllib3 retries connection errors and sleeps through ``Retry-After`` on 429/503 by
        itself, unbounded by and invisible to :class:`RetryPolicy`.
        """
        configuration = copy.deepcopy(configuration)
        configuration.retries = False
        # The client is shared by the worker threads of concurrent actions and status
        # writes: a pool smaller than them (5 per CPU by default) would open and drop a
        # connection per request past it.
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize or 0, MIN_POOL
        )
        return cls(k8s.ApiClient(configuration), **kwargs)

    @classmethod
    def of(cls, client: Any, **kwargs: Any) -> Kube:
        """``client`` itself when it is a :class:`Kube`; else a :class:`Kube` sharing the
        connection pool of a ``kubernetes`` ``ApiClient`` or of a generated API object
        (``CustomObjectsApi(api_client)``), for callers that still hold one."""
        if isinstance(client, Kube):
            return client
        if isinstance(client, k8s.ApiClient):
            return cls(client, **kwargs)
        api_client = getattr(client, "api_client", None)
        if isinstance(api_client, k8s.ApiClient):
            return cls(api_client, **kwargs)
        raise TypeError(f"not a Kubernetes client: {type(client).__name__}")

    def close(self) -> None:
        """Release the connection pool."""
        self.api_client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ the one call site

    def request(self, what: str, method: str, path: str, **options: Unpack[RequestOptions]) -> Any:
        """Send one request through the client, retrying transient failures; return JSON.

        ``what`` names the operation for error messages ("patch Deployment agents/bot");
        ``request_timeout`` (seconds, or (connect, read)) overrides the client's per attempt;
        ``retry`` overrides its policy; ``guard`` is called before every attempt.
        The generated per-resource methods are not used: they validate bodies against the
        client's own models, which reject fields newer than the client (a CronJob's
        jobTemplate from a newer cluster) and cost a full model build per call.
        """
        attempt = self._attempt_of(what, method, path, options)
        for retry_no in itertools.count():
            try:
                return attempt()
            except Unavailable as error:
                pause = self._retry_pause(what, error, retry_no, options)
            self._sleep(pause)

    async def arequest(
        self,
        what: str,
        method: str,
        path: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **options: Unpack[RequestOptions],
    ) -> Any:
        """:meth:`request` from a coroutine: each attempt in a worker thread, the backoff
        on the event loop (``sleep``), the same policy and errors."""
        attempt = self._attempt_of(what, method, path, options)
        for retry_no in itertools.count():
            try:
                return await asyncio.to_thread(attempt)
            except Unavailable as error:
                pause = self._retry_pause(what, error, retry_no, options)
            await sleep(pause)

    def _attempt_of(
        self, what: str, method: str, path: str, options: RequestOptions
    ) -> Callable[[], Any]:
        """One attempt of the request, ready to be called (again)."""
        return functools.partial(
            self._attempt,
            what,
            method,
            path,
            options.get("query"),
            options.get("body"),
            options.get("content_type"),
            options.get("request_timeout"),
            options.get("guard"),
        )

    def _retry_pause(
        self, what: str, error: Unavailable, retry_no: int, options: RequestOptions
    ) -> float:
        """The pause before the next attempt; ``error`` again when the policy gives up."""
        policy = options.get("retry") or self.retry
        if policy.gives_up_after(retry_no):
            raise error
        return self._pause(what, error, retry_no, policy)

    def _pause(self, what: str, error: Unavailable, retry_no: int, policy: RetryPolicy) -> float:
        pause = policy.delay(retry_no, self._rng, error.retry_after)
        log.info(
            "%s failed (%s), retry %d of %d in %.2fs",
            what,
            error.status or "connection",
            retry_no + 1,
            policy.attempts - 1,
            pause,
        )
        return pause

    def _attempt(
        self,
        what: str,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str | None,
        timeout: float | tuple[float, float] | None,
        guard: Guard | None,
    ) -> Any:
        if guard is not None:
            guard()
        if self.observe is not None:
            self.observe(method, path)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            response = self._send(method, path, query, headers, body, timeout)
        except k8s.ApiException as exc:
            raise translate(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
            raise unreachable(what, exc) from None
        return json.loads(response) if response else {}

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: dict[str, str],
        body: Any,
        timeout: float | tuple[float, float] | None,
    ) -> bytes:
        method_, url, header_params, body_, post_params = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) if query else None,
            header_params=dict(headers),
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method_,
            url,
            header_params=header_params,
            body=body_,
            post_params=post_params,
            _request_timeout=self.timeout if timeout is None else timeout,
        )
        data: bytes = response.read() or b""  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise k8s.ApiException(http_resp=response)
        return data

    # ------------------------------------------------------------------ workloads

    def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Read a Deployment or StatefulSet."""
        path = paths.workload_path(kind, namespace, name)
        return self._object(f"get {kind} {namespace}/{name}", "GET", path)

    def patch_workload(
        self, kind: str, namespace: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        """Patch a Deployment or StatefulSet with an explicit patch content type."""
        path = paths.workload_path(kind, namespace, name)
        return self._object(
            f"patch {kind} {namespace}/{name}", "PATCH", path, body=body, content_type=content_type
        )

    def list_workloads(
        self, kind: str, namespace: str | None, selector: str = ""
    ) -> list[dict[str, Any]]:
        """List Deployments or StatefulSets matching a label selector (server-side), in
        ``namespace`` or, when it is None, in all namespaces."""
        path = paths.workload_path(kind, namespace)
        where = "all namespaces" if namespace is None else namespace
        return self._list(f"list {kind}s in {where}", path, selector)

    def _object(
        self, what: str, method: str, path: str, **options: Unpack[RequestOptions]
    ) -> dict[str, Any]:
        """:meth:`request` for one object."""
        result: dict[str, Any] = self.request(what, method, path, **options)
        return result

    def _list(self, what: str, path: str, selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        result = self.request(what, "GET", path, query=query)
        return list(result.get("items") or [])

    # ------------------------------------------------------------------ custom objects

    def get_custom_object(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any]:
        """Read a custom object (:class:`~agentmedic.kube.errors.NotFound` when absent)."""
        path = paths.resource_path(paths.custom_api(group, version), namespace, plural, name)
        return self._object(f"get {plural}.{group} {namespace}/{name}", "GET", path)

    def list_custom_objects(
        self, group: str, version: str, plural: str, namespace: str | None
    ) -> list[dict[str, Any]]:
        """List custom objects in ``namespace`` or, when it is None, in all namespaces."""
        path = paths.resource_path(paths.custom_api(group, version), namespace, plural)
        where = "all namespaces" if namespace is None else namespace
        return self._list(f"list {plural}.{group} in {where}", path)

    # ------------------------------------------------------------------ core

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a ConfigMap."""
        path = paths.resource_path(paths.CORE_V1, namespace, "configmaps", name)
        return self._object(f"get ConfigMap {namespace}/{name}", "GET", path)

    def patch_config_map(
        self, namespace: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        """Patch a ConfigMap."""
        path = paths.resource_path(paths.CORE_V1, namespace, "configmaps", name)
        return self._object(
            f"patch ConfigMap {namespace}/{name}",
            "PATCH",
            path,
            body=body,
            content_type=content_type,
        )

    def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a Secret. The caller must never log the result."""
        path = paths.resource_path(paths.CORE_V1, namespace, "secrets", name)
        return self._object(f"get Secret {namespace}/{name}", "GET", path)

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a core/v1 Event."""
        path = paths.resource_path(paths.CORE_V1, namespace, "events")
        return self._object(f"create Event in {namespace}", "POST", path, body=body)

    # ------------------------------------------------------------------ batch

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """List Jobs matching a label selector."""
        path = paths.resource_path(paths.BATCH_V1, namespace, "jobs")
        return self._list(f"list Jobs in {namespace}", path, selector)

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Job."""
        name = body.get("metadata", {}).get("name", "")
        path = paths.resource_path(paths.BATCH_V1, namespace, "jobs")
        return self._object(f"create Job {namespace}/{name}", "POST", path, body=body)

    def get_cron_job(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a CronJob."""
        path = paths.resource_path(paths.BATCH_V1, namespace, "cronjobs", name)
        return self._object(f"get CronJob {namespace}/{name}", "GET", path)

    # ------------------------------------------------------------------ autoscalers

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        """List HorizontalPodAutoscalers (autoscaling/v2) in a namespace."""
        path = paths.resource_path(paths.HPA_V2, namespace, "horizontalpodautoscalers")
        return self._list(f"list HorizontalPodAutoscalers in {namespace}", path)

    def list_scaled_objects(self, namespace: str) -> list[dict[str, Any]]:
        """List KEDA ScaledObjects; :class:`NotFound` when KEDA's CRD is not installed."""
        path = paths.resource_path(paths.KEDA_API, namespace, paths.KEDA_SCALED_OBJECTS)
        return self._list(f"list ScaledObjects in {namespace}", path)

    def get_scaled_object(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a KEDA ScaledObject."""
        path = paths.resource_path(paths.KEDA_API, namespace, paths.KEDA_SCALED_OBJECTS, name)
        return self._object(f"get ScaledObject {namespace}/{name}", "GET", path)

    def patch_scaled_object(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """JSON-merge-patch a KEDA ScaledObject (custom resources take no strategic merge)."""
        path = paths.resource_path(paths.KEDA_API, namespace, paths.KEDA_SCALED_OBJECTS, name)
        return self._object(
            f"patch ScaledObject {namespace}/{name}",
            "PATCH",
            path,
            body=body,
            content_type=MERGE_PATCH,
        )
