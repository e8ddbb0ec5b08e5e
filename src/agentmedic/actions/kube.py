"""The one place that talks to the Kubernetes API: the ``kubernetes`` sync client, wrapped.

Every call goes through :meth:`Kube.request`, which

- sends and returns plain JSON dicts exactly as they are on the wire (camelCase,
  annotations, env lists), using the client's configuration, authentication, TLS and
  connection pool (``ApiClient.param_serialize`` and ``call_api``);
- names the content type of every PATCH explicitly: the generated client defaults to
  JSON-patch and silently turns a dict body into a strategic-merge patch, which custom
  resources (KEDA's ScaledObject) reject with 415;
- retries 429 (honouring ``Retry-After``), 5xx, timeouts and connection errors with capped
  exponential backoff and full jitter, a bounded number of times;
- translates what is left into :mod:`agentmedic.actions.errors`.

The client is synchronous on purpose (the operator calls it through ``asyncio.to_thread``);
sleeping between retries therefore blocks only the worker thread.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s

from agentmedic.actions.errors import (
    ActionError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Transient,
)

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "Kube",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

KEDA_API = "apis/keda.sh/v1alpha1"
KEDA_SCALED_OBJECTS = "scaledobjects"

_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried.

    ``attempts`` counts every try, the first included. The n-th retry waits a random time
    in ``[0, min(cap, base * 2**n)]`` ("full jitter", so that many operators retrying at
    once spread out), or the server's ``Retry-After`` when it sent one, at most
    ``max_retry_after``.
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 30.0

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0.0, min(self.cap, self.base * (2**retry)))


def _api_message(exc: k8s.ApiException) -> str:
    """The ``message`` of the API's Status object, or the HTTP reason."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body[:500]
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
    return str(exc.reason or "no message")


def _api_reason(exc: k8s.ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return ""
        if isinstance(status, dict):
            return str(status.get("reason", ""))
    return ""


def _retry_after(exc: k8s.ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # an HTTP-date; fall back to our own backoff


def translate(exc: k8s.ApiException, what: str) -> ActionError:
    """Turn an ``ApiException`` into the project's error, naming what was attempted."""
    status = int(exc.status or 0)
    message = f"{what}: {_api_message(exc)}"
    if status == 404:
        return NotFound(message, status=status)
    if status == 409:
        return Conflict(message, already_exists=_api_reason(exc) == "AlreadyExists")
    if status in (400, 422):
        return Invalid(message, status=status)
    if status in (401, 403):
        return Forbidden(
            f"{message} (check the RBAC of the operator's ServiceAccount)", status=status
        )
    if status == 429 or status >= 500:
        return Transient(message, status=status, retry_after=_retry_after(exc))
    return ActionError(message, status=status)


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
        return cls(k8s.ApiClient(configuration), **kwargs)

    def close(self) -> None:
        """Release the connection pool."""
        self.api_client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ the one call site

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """Send one request through the client, retrying transient failures; return JSON.

        ``what`` names the operation for error messages ("patch Deployment agents/bot").
        The generated per-resource methods are not used: they validate bodies against the
        client's own models, which reject fields newer than the client (a CronJob's
        jobTemplate from a newer cluster) and cost a full model build per call.
        """
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        retry = 0
        while True:
            if self.observe is not None:
                self.observe(method, path)
            try:
                response = self._send(method, path, query, headers, body)
            except k8s.ApiException as exc:
                error = translate(exc, what)
            except urllib3.exceptions.HTTPError as exc:
                error = Transient(f"{what}: cannot reach the API server ({type(exc).__name__})")
            else:
                return json.loads(response) if response else {}
            if not isinstance(error, Transient) or retry + 1 >= self.retry.attempts:
                raise error
            pause = self.retry.delay(retry, self._rng, error.retry_after)
            log.info(
                "%s failed (%s), retry %d of %d in %.2fs",
                what,
                error.status or "connection",
                retry + 1,
                self.retry.attempts - 1,
                pause,
            )
            self._sleep(pause)
            retry += 1

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: dict[str, str],
        body: Any,
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
            _request_timeout=self.timeout,
        )
        data: bytes = response.read() or b""  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise k8s.ApiException(http_resp=response)
        return data

    # ------------------------------------------------------------------ workloads

    @staticmethod
    def _workload_path(kind: str, namespace: str, name: str | None = None) -> str:
        if kind not in _KINDS:
            raise ValueError(f"kind must be Deployment or StatefulSet, not {kind!r}")
        plural = "deployments" if kind == "Deployment" else "statefulsets"
        return _path("apis/apps/v1", namespace, plural, name)

    def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Read a Deployment or StatefulSet."""
        path = self._workload_path(kind, namespace, name)
        result: dict[str, Any] = self.request(f"get {kind} {namespace}/{name}", "GET", path)
        return result

    def patch_workload(
        self, kind: str, namespace: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        """Patch a Deployment or StatefulSet with an explicit patch content type."""
        path = self._workload_path(kind, namespace, name)
        result: dict[str, Any] = self.request(
            f"patch {kind} {namespace}/{name}",
            "PATCH",
            path,
            body=body,
            content_type=content_type,
        )
        return result

    def list_workloads(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """List Deployments or StatefulSets matching a label selector (server-side)."""
        path = self._workload_path(kind, namespace)
        return self._list(f"list {kind}s in {namespace}", path, selector)

    def _list(self, what: str, path: str, selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        result = self.request(what, "GET", path, query=query)
        return list(result.get("items") or [])

    # ------------------------------------------------------------------ core

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a ConfigMap."""
        path = _path("api/v1", namespace, "configmaps", name)
        result: dict[str, Any] = self.request(f"get ConfigMap {namespace}/{name}", "GET", path)
        return result

    def patch_config_map(
        self, namespace: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        """Patch a ConfigMap."""
        path = _path("api/v1", namespace, "configmaps", name)
        result: dict[str, Any] = self.request(
            f"patch ConfigMap {namespace}/{name}",
            "PATCH",
            path,
            body=body,
            content_type=content_type,
        )
        return result

    def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a Secret. The caller must never log the result."""
        path = _path("api/v1", namespace, "secrets", name)
        result: dict[str, Any] = self.request(f"get Secret {namespace}/{name}", "GET", path)
        return result

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a core/v1 Event."""
        path = _path("api/v1", namespace, "events")
        result: dict[str, Any] = self.request(
            f"create Event in {namespace}", "POST", path, body=body
        )
        return result

    # ------------------------------------------------------------------ batch

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """List Jobs matching a label selector."""
        path = _path("apis/batch/v1", namespace, "jobs")
        return self._list(f"list Jobs in {namespace}", path, selector)

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Job."""
        name = body.get("metadata", {}).get("name", "")
        path = _path("apis/batch/v1", namespace, "jobs")
        result: dict[str, Any] = self.request(
            f"create Job {namespace}/{name}", "POST", path, body=body
        )
        return result

    def get_cron_job(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a CronJob."""
        path = _path("apis/batch/v1", namespace, "cronjobs", name)
        result: dict[str, Any] = self.request(f"get CronJob {namespace}/{name}", "GET", path)
        return result

    # ------------------------------------------------------------------ autoscalers

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        """List HorizontalPodAutoscalers (autoscaling/v2) in a namespace."""
        path = _path("apis/autoscaling/v2", namespace, "horizontalpodautoscalers")
        return self._list(f"list HorizontalPodAutoscalers in {namespace}", path)

    def list_scaled_objects(self, namespace: str) -> list[dict[str, Any]]:
        """List KEDA ScaledObjects; :class:`NotFound` when KEDA's CRD is not installed."""
        path = _path(KEDA_API, namespace, KEDA_SCALED_OBJECTS)
        return self._list(f"list ScaledObjects in {namespace}", path)

    def get_scaled_object(self, namespace: str, name: str) -> dict[str, Any]:
        """Read a KEDA ScaledObject."""
        path = _path(KEDA_API, namespace, KEDA_SCALED_OBJECTS, name)
        result: dict[str, Any] = self.request(f"get ScaledObject {namespace}/{name}", "GET", path)
        return result

    def patch_scaled_object(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """JSON-merge-patch a KEDA ScaledObject (custom resources take no strategic merge)."""
        path = _path(KEDA_API, namespace, KEDA_SCALED_OBJECTS, name)
        result: dict[str, Any] = self.request(
            f"patch ScaledObject {namespace}/{name}",
            "PATCH",
            path,
            body=body,
            content_type=MERGE_PATCH,
        )
        return result


def _path(api: str, namespace: str, plural: str, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/NS/deployments[/NAME]`` with each segment quoted."""
    ns = quote(namespace, safe="")
    tail = f"/{quote(name, safe='')}" if name else ""
    return f"/{api}/namespaces/{ns}/{plural}{tail}"
