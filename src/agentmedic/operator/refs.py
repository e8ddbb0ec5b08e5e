"""A policy's references to shared configuration, resolved each cycle: :class:`RefResolver`.

- ``spec.metricsBackendRef`` names the backend its agents' metrics are read from: a
  MetricsBackend in the policy's namespace, or a ClusterMetricsBackend. Without it the
  operator's own backend is used. Each referenced backend gets a client of its own, built
  with its URL, tenant (``X-Scope-OrgID``), headers, credentials and CA read from Secrets
  (and a ConfigMap): in its own namespace, or in the operator's for a cluster-scoped one.
  The client is kept while the object's resourceVersion stays and its Secrets read the same
  (they are read again every :data:`SECRET_REFRESH_SECONDS`).
- ``channelRef`` entries of ``spec.notifications.channels`` name a NotificationChannel in
  the policy's namespace or a ClusterNotificationChannel.

A reference that names nothing, or something invalid, or a backend whose Secrets cannot be
read, is a :class:`RefProblem`: the policy is not evaluated (no evidence can be read from
the right place, and no page goes to the right people) and its Ready condition says which
reference and why. Secret values never appear in a problem: only Secret names and keys.
Objects are parsed once per resourceVersion (:class:`~agentmedic.operator.shared_cache.SharedCache`
keeps them by watch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from agentmedic.actions import ActionExecutor
from agentmedic.api.refs import ChannelReference, MetricsBackendRef
from agentmedic.api.shared import MetricsBackendSpec, NotificationChannelSpec, SharedObject
from agentmedic.api.types import AgentPolicySpec, SecretKeyRef
from agentmedic.api.validation import validate_shared
from agentmedic.kube.readers import config_map_value
from agentmedic.metrics import BackendConfig, MetricsBackend, PrometheusBackend
from agentmedic.operator.shared_cache import CLUSTER_KINDS, SharedCache
from agentmedic.operator.shared_cache import SharedObject as Cached
from agentmedic.operator.shared_status import SharedStatusWriter

__all__ = [
    "SECRET_REFRESH_SECONDS",
    "ObjectKey",
    "RefProblem",
    "RefResolver",
    "Route",
    "SharedChannel",
    "refs_of",
    "secret_refs",
]

log = logging.getLogger(__name__)

SECRET_REFRESH_SECONDS = 300.0
"""How often a shared backend's Secrets are read again (a rotated token is picked up)."""

CHANNEL_NOT_FOUND = "ChannelRefNotFound"
CHANNEL_INVALID = "ChannelRefInvalid"
BACKEND_NOT_FOUND = "MetricsBackendRefNotFound"
BACKEND_INVALID = "MetricsBackendRefInvalid"


@dataclass(frozen=True)
class RefProblem:
    """Why a policy's references do not resolve: a CamelCase reason and a message naming
    the reference."""

    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class Route:
    """Where a policy's metrics come from this cycle."""

    backend: MetricsBackend
    backend_id: str
    """'' for the operator's backend, else ``Kind namespace/name`` (``Kind name``)."""


@dataclass(frozen=True)
class SharedChannel:
    """A shared channel as a policy's entry uses it."""

    spec: NotificationChannelSpec
    secret_namespace: str
    """Where its Secrets are read."""
    key: str
    """One key per shared channel (not per policy): its rate limit is counted across every
    policy that refers to it."""


def refs_of(spec: AgentPolicySpec) -> Iterator[ChannelReference | MetricsBackendRef]:
    """Every reference in a policy's spec."""
    if spec.metrics_backend_ref is not None:
        yield spec.metrics_backend_ref
    for channel in spec.notifications.channels:
        if channel.channel_ref is not None:
            yield channel.channel_ref


ObjectKey = tuple[str, str, str]
"""(kind, namespace or '' for a cluster-scoped kind, name)."""


def _key(obj: Cached) -> ObjectKey:
    return (obj.kind, obj.namespace, obj.name)


def secret_refs(model: BaseModel) -> Iterator[SecretKeyRef]:
    """Every Secret key a spec names, at any depth."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, SecretKeyRef):
                yield item
            elif isinstance(item, BaseModel):
                yield from secret_refs(item)


def _ident(obj: Cached) -> str:
    return f"{obj.kind} {obj.namespace}/{obj.name}" if obj.namespace else f"{obj.kind} {obj.name}"


@dataclass
class _Client:
    resource_version: str
    config: BackendConfig
    read_at: float
    backend: PrometheusBackend


class RefResolver:
    """Resolves the references of policies against the shared cache."""

    def __init__(
        self,
        cache: SharedCache,
        executor: ActionExecutor,
        default: MetricsBackend,
        *,
        operator_namespace: str,
        max_response_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        status: SharedStatusWriter | None = None,
    ) -> None:
        self.cache = cache
        self._status = status
        self._observed: dict[ObjectKey, tuple[Cached, bool, str, str]] = {}
        """What was found of each object since the last flush (Ready, reason, message)."""
        self._flushing = asyncio.Lock()
        self.users: Callable[[], Mapping[ObjectKey, Sequence[str]]] = dict
        """Who refers to each object now (the policies and budgets naming it), asked at
        each flush: a cycle's flush writes the same usedBy as the sweep that follows it,
        not what an earlier sweep found before a policy was registered."""
        self._checked: dict[ObjectKey, tuple[str, float, tuple[bool, str, str]]] = {}
        """A channel's Secrets last checked: (resourceVersion, when, what was found)."""
        self._executor = executor
        self._default = default
        self._operator_namespace = operator_namespace
        self._max_response_bytes = max_response_bytes
        self._clock = clock
        self._parsed: dict[tuple[str, str, str], tuple[str, SharedObject | str]] = {}
        self._clients: dict[tuple[str, str, str], _Client] = {}
        self._retired: list[PrometheusBackend] = []

    def subscribe(self, spec: AgentPolicySpec) -> None:
        """Watch the kinds this policy refers to."""
        for ref in refs_of(spec):
            self.cache.want(ref.kind)

    # ------------------------------------------------------------------ lookups

    def _lookup(
        self, ref: ChannelReference | MetricsBackendRef, namespace: str
    ) -> tuple[Cached, SharedObject] | RefProblem | None:
        """The parsed object; a problem; None while its kind has not been listed."""
        channel = isinstance(ref, ChannelReference)
        not_found = CHANNEL_NOT_FOUND if channel else BACKEND_NOT_FOUND
        if not self.cache.watchable(ref.kind):
            return RefProblem(
                not_found,
                f"{ref}: the operator watches only its namespaces, so cluster-scoped "
                f"{ref.kind}s are not read; use a {ref.kind.removeprefix('Cluster')} in "
                f"namespace {namespace}, or install the operator cluster-wide",
            )
        if not self.cache.synced(ref.kind, namespace):
            return None
        if not self.cache.installed(ref.kind, namespace):
            return RefProblem(
                not_found,
                f"{ref}: the API server does not serve {ref.kind} (its CRD is not installed); "
                "apply the CRDs of this agentmedic version (crds/, or the chart's crds/)",
            )
        obj = self.cache.get(ref.kind, namespace, ref.name)
        if obj is None:
            where = "" if ref.kind in CLUSTER_KINDS else f" in namespace {namespace}"
            return RefProblem(not_found, f"{ref}: no such object{where}; create it or fix the name")
        parsed = self._parse(obj)
        if isinstance(parsed, str):
            self._observed[_key(obj)] = (obj, False, "InvalidSpec", parsed)
            invalid = CHANNEL_INVALID if channel else BACKEND_INVALID
            return RefProblem(invalid, f"{_ident(obj)} is invalid: {parsed}")
        return obj, parsed

    def _parse(self, obj: Cached) -> SharedObject | str:
        """The object parsed (once per resourceVersion), or why it is invalid."""
        key = _key(obj)
        cached = self._parsed.get(key)
        if cached is None or cached[0] != obj.resource_version:
            parsed, problems = validate_shared(obj.body)
            outcome: SharedObject | str = (
                parsed if parsed is not None else "; ".join(str(p) for p in problems[:3])
            )
            cached = self._parsed[key] = (obj.resource_version, outcome)
        return cached[1]

    def channel(self, ref: ChannelReference, namespace: str) -> SharedChannel | RefProblem | None:
        """The shared channel a policy of ``namespace`` names; a problem; None while the
        kind has not been listed."""
        found = self._lookup(ref, namespace)
        if found is None or isinstance(found, RefProblem):
            return found
        obj, parsed = found
        assert isinstance(parsed.spec, NotificationChannelSpec)
        return SharedChannel(
            spec=parsed.spec,
            secret_namespace=obj.namespace or self._operator_namespace,
            key=f"{obj.kind}/{obj.namespace}/{obj.name}",
        )

    async def route(self, spec: AgentPolicySpec, namespace: str) -> Route | RefProblem | None:
        """Where the policy's metrics come from, after checking every reference it makes;
        a problem; None while a kind it refers to has not been listed."""
        waiting = False
        for entry in spec.notifications.channels:
            if entry.channel_ref is None:
                continue
            got = self.channel(entry.channel_ref, namespace)
            if isinstance(got, RefProblem):
                return got
            waiting = waiting or got is None
        route = await self.backend(spec.metrics_backend_ref, namespace)
        await self.flush()
        return None if waiting and isinstance(route, Route) else route

    def status_writes(self) -> int:
        """Status PATCHes sent to shared objects so far."""
        return self._status.writes if self._status is not None else 0

    async def flush(self) -> None:
        """Write what was found of the objects to their status (when it changed)."""
        # One flush at a time: one that returns has seen its observations written, also
        # when another (a sweep's, a cycle's) took them while it waited.
        async with self._flushing:
            observed, self._observed = self._observed, {}
            if self._status is None or not observed:
                return
            users = self.users()
            for key, (obj, ready, reason, message) in observed.items():
                await self._status.ready(obj, ready, reason, message, users.get(key, ()))

    async def sweep(self) -> None:
        """Check every object watched, referred to or not, and write what was found with
        its users (:attr:`users`) to its status, when it changed: a backend as a policy's
        cycle resolves it (a client built, so both agree), a channel by its spec and
        whether the Secrets it names can be read."""
        for obj in self.cache.objects():
            parsed = self._parse(obj)
            if isinstance(parsed, str):
                self._observed[_key(obj)] = (obj, False, "InvalidSpec", parsed)
            elif isinstance(parsed.spec, MetricsBackendSpec):
                await self._client(obj, parsed.spec)
            else:
                self._observed[_key(obj)] = (obj, *await self._channel_check(obj, parsed.spec))
        await self.flush()

    async def _channel_check(
        self, obj: Cached, spec: NotificationChannelSpec
    ) -> tuple[bool, str, str]:
        """Whether the Secrets a channel names can be read (again every
        :data:`SECRET_REFRESH_SECONDS`, or when the object changes); values are dropped."""
        key, now = _key(obj), self._clock()
        known = self._checked.get(key)
        fresh = known is not None and now - known[1] < SECRET_REFRESH_SECONDS
        if known is not None and fresh and known[0] == obj.resource_version:
            return known[2]
        namespace = obj.namespace or self._operator_namespace
        try:
            for ref in secret_refs(spec):
                await asyncio.to_thread(self._secret, namespace, ref.name, ref.key, "a Secret")
            found = (True, "Valid", "valid; the Secrets it names can be read")
        except _UnreadableError as exc:
            found = (False, "Unresolved", str(exc)[:300])
        self._checked[key] = (obj.resource_version, now, found)
        return found

    async def backend(
        self, ref: MetricsBackendRef | None, namespace: str
    ) -> Route | RefProblem | None:
        """The backend ``ref`` names for an object (a policy, a budget) of ``namespace``: the
        operator's own without a reference; a problem; None while its kind has not been
        listed. Budgets with ``spec.metricsBackendRef`` resolve theirs here too."""
        if ref is None:
            return Route(self._default, "")
        if not namespace and ref.kind not in CLUSTER_KINDS:
            return RefProblem(
                BACKEND_NOT_FOUND,
                f"{ref}: a cluster-scoped object may name only a ClusterMetricsBackend",
            )
        self.cache.want(ref.kind)
        found = self._lookup(ref, namespace)
        if found is None or isinstance(found, RefProblem):
            return found
        obj, parsed = found
        assert isinstance(parsed.spec, MetricsBackendSpec)
        return await self._client(obj, parsed.spec)

    # ------------------------------------------------------------------ backends

    async def _client(self, obj: Cached, spec: MetricsBackendSpec) -> Route | RefProblem:
        key = (obj.kind, obj.namespace, obj.name)
        client = self._clients.get(key)
        now = self._clock()
        fresh = (
            client is not None
            and client.resource_version == obj.resource_version
            and now - client.read_at < SECRET_REFRESH_SECONDS
        )
        ready = (obj, True, "Resolved", "its Secrets are read and queries can be sent")
        if client is not None and fresh:
            self._observed[key] = ready
            return Route(client.backend, _ident(obj))
        namespace = obj.namespace or self._operator_namespace
        try:
            config = await asyncio.to_thread(self._config, spec, namespace)
            if client is not None and client.config == config:
                client.resource_version, client.read_at = obj.resource_version, now
                self._observed[key] = ready
                return Route(client.backend, _ident(obj))
            backend = PrometheusBackend(config)
        except (_UnreadableError, ValueError) as exc:  # ValueError: the CA bundle
            detail = str(exc)[:300]
            self._observed[key] = (obj, False, "Unresolved", detail)
            return RefProblem(BACKEND_INVALID, f"{_ident(obj)}: {detail}")
        if client is not None:
            self._retired.append(client.backend)
        self._clients[key] = _Client(obj.resource_version, config, now, backend)
        self._observed[key] = ready
        log.info("metrics backend %s: client ready (%s)", _ident(obj), backend)
        return Route(backend, _ident(obj))

    def _config(self, spec: MetricsBackendSpec, namespace: str) -> BackendConfig:
        """The client's configuration, its secrets read in ``namespace`` (a thread)."""

        def secret(name: str, key: str, what: str) -> SecretStr:
            return self._secret(namespace, name, key, what)

        ca: str | None = None
        if spec.ca_secret_ref is not None:
            ref = spec.ca_secret_ref
            ca = secret(ref.name, ref.key, "the CA bundle").get_secret_value()
        elif spec.ca_config_map_ref is not None:
            cm = spec.ca_config_map_ref
            ca = config_map_value(self._executor.kube, namespace, cm.name, cm.key)
            if not ca:
                raise _UnreadableError(
                    f"ConfigMap {namespace}/{cm.name} has no key {cm.key!r} (the CA bundle)"
                )
        options: dict[str, Any] = {}
        if spec.basic_auth is not None:
            ref = spec.basic_auth.password_secret_ref
            options["basic_auth_username"] = spec.basic_auth.username
            options["basic_auth_password"] = secret(ref.name, ref.key, "the password")
        if spec.bearer_token_secret_ref is not None:
            ref = spec.bearer_token_secret_ref
            options["bearer_token"] = secret(ref.name, ref.key, "the bearer token")
        headers = {
            h.name: secret(h.value_secret_ref.name, h.value_secret_ref.key, f"header {h.name}")
            for h in spec.headers
        }
        timeout = spec.timeout.total_seconds()
        return BackendConfig(
            url=spec.url,
            tenant=spec.tenant,
            headers=headers,
            ca_data=ca,
            timeout=timeout,
            deadline=3 * timeout,
            max_response_bytes=self._max_response_bytes,
            **options,
        )

    def _secret(self, namespace: str, name: str, key: str, what: str) -> SecretStr:
        """A Secret's value (a thread); unreadable or empty: the error names the Secret and
        key, never a value."""
        try:
            value = self._executor.read_secret_value(namespace, name, key)
        except Exception as exc:
            raise _UnreadableError(
                f"cannot read {what} from key {key!r} of Secret {namespace}/{name} "
                f"({type(exc).__name__})"
            ) from None
        if not value.strip():
            raise _UnreadableError(f"key {key!r} of Secret {namespace}/{name} ({what}) is empty")
        return SecretStr(value.strip())

    async def aclose(self) -> None:
        """Close every client this resolver built."""
        clients = [c.backend for c in self._clients.values()] + self._retired
        self._clients.clear()
        self._retired.clear()
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


class _UnreadableError(Exception):
    """A Secret or ConfigMap key the backend needs cannot be read (the message names the
    object and key, never a value)."""
