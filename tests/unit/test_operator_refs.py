"""Resolving channelRef and metricsBackendRef (operator/refs.py) over a cache the test fills:
what is found, what is missing or invalid, and what a backend's client is built from."""

from __future__ import annotations

from typing import Any

import pytest

from agentmedic.api.refs import ChannelReference, MetricsBackendRef
from agentmedic.api.types import AgentPolicySpec
from agentmedic.kube import NotFound
from agentmedic.metrics import PrometheusBackend
from agentmedic.operator.refs import RefProblem, RefResolver, Route, SharedChannel
from agentmedic.operator.shared_cache import CLUSTER_KINDS, SharedObject

API = "agentmedic.io/v1alpha1"
OPERATOR_NS = "agentmedic"


class FakeCache:
    def __init__(self, *, namespaces: tuple[str, ...] = ()) -> None:
        self.objects: dict[tuple[str, str, str], SharedObject] = {}
        self.listed: set[str] = set()
        self.wanted: set[str] = set()
        self.not_installed: set[str] = set()
        self.namespaces = namespaces

    def add(
        self, kind: str, namespace: str, name: str, spec: dict[str, Any], rv: str = "1"
    ) -> None:
        ns = "" if kind in CLUSTER_KINDS else namespace
        meta = {"name": name, **({"namespace": ns} if ns else {})}
        body = {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}
        self.objects[(kind, ns, name)] = SharedObject(kind, ns, name, rv, body)
        self.listed.add(kind)

    def watchable(self, kind: str) -> bool:
        return not self.namespaces or kind not in CLUSTER_KINDS

    def want(self, kind: str) -> None:
        self.wanted.add(kind)

    def synced(self, kind: str, namespace: str) -> bool:
        return kind in self.listed or kind in self.not_installed

    def installed(self, kind: str, namespace: str) -> bool:
        return kind not in self.not_installed

    def get(self, kind: str, namespace: str, name: str) -> SharedObject | None:
        return self.objects.get((kind, "" if kind in CLUSTER_KINDS else namespace, name))


class FakeKube:
    def __init__(self, config_maps: dict[tuple[str, str], dict[str, str]]) -> None:
        self.config_maps = config_maps

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.config_maps:
            raise NotFound(f"ConfigMap {namespace}/{name} not found")
        return {"data": self.config_maps[(namespace, name)]}


class FakeExecutor:
    def __init__(self, secrets: dict[tuple[str, str, str], str]) -> None:
        self.secrets = secrets
        self.reads: list[tuple[str, str, str]] = []
        self.kube = FakeKube({})

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.reads.append((namespace, name, key))
        if (namespace, name, key) not in self.secrets:
            raise NotFound(f"Secret {namespace}/{name} has no key {key!r}")
        return self.secrets[(namespace, name, key)]


class DefaultBackend:
    async def query(self, *args: Any) -> Any: ...
    async def query_range(self, *args: Any) -> Any: ...
    async def aclose(self) -> None: ...


TOKEN = "s3cr3t-token-value"


def resolver(
    cache: FakeCache, secrets: dict[tuple[str, str, str], str] | None = None
) -> tuple[RefResolver, FakeExecutor]:
    executor = FakeExecutor(secrets or {})
    refs = RefResolver(
        cache,  # type: ignore[arg-type]
        executor,  # type: ignore[arg-type]
        DefaultBackend(),
        operator_namespace=OPERATOR_NS,
        max_response_bytes=1 << 20,
    )
    return refs, executor


def spec(**fields: Any) -> AgentPolicySpec:
    return AgentPolicySpec.model_validate({"selector": {"matchLabels": {"a": "b"}}, **fields})


BACKEND = {
    "url": "https://mimir.example/prometheus",
    "tenant": "team-a",
    "bearerTokenSecretRef": {"name": "mimir", "key": "token"},
}


async def test_without_references_the_operators_backend_is_used() -> None:
    refs, _ = resolver(FakeCache())
    route = await refs.route(spec(), "team")
    assert isinstance(route, Route)
    assert route.backend_id == ""
    assert isinstance(route.backend, DefaultBackend)


async def test_a_backend_is_built_from_its_spec_and_secrets_once_per_version() -> None:
    cache = FakeCache()
    cache.add("MetricsBackend", "team", "mimir", BACKEND)
    refs, executor = resolver(cache, {("team", "mimir", "token"): TOKEN + "\n"})
    wanted = spec(metricsBackendRef={"name": "mimir"})
    route = await refs.route(wanted, "team")
    assert isinstance(route, Route)
    assert route.backend_id == "MetricsBackend team/mimir"
    assert isinstance(route.backend, PrometheusBackend)
    config = route.backend.config
    assert config.tenant == "team-a"
    assert config.url == "https://mimir.example/prometheus"
    assert config.bearer_token is not None
    assert config.bearer_token.get_secret_value() == TOKEN
    again = await refs.route(wanted, "team")
    assert isinstance(again, Route)
    assert again.backend is route.backend
    assert executor.reads == [("team", "mimir", "token")]  # cached by resourceVersion
    cache.add("MetricsBackend", "team", "mimir", {**BACKEND, "tenant": "team-b"}, rv="2")
    changed = await refs.route(wanted, "team")
    assert isinstance(changed, Route)
    assert isinstance(changed.backend, PrometheusBackend)
    assert changed.backend.config.tenant == "team-b"
    await refs.aclose()


async def test_a_cluster_backend_reads_its_secrets_in_the_operators_namespace() -> None:
    cache = FakeCache()
    cache.add("ClusterMetricsBackend", "", "shared", BACKEND)
    refs, executor = resolver(cache, {(OPERATOR_NS, "mimir", "token"): TOKEN})
    route = await refs.route(
        spec(metricsBackendRef={"kind": "ClusterMetricsBackend", "name": "shared"}), "team"
    )
    assert isinstance(route, Route)
    assert route.backend_id == "ClusterMetricsBackend shared"
    assert executor.reads == [(OPERATOR_NS, "mimir", "token")]
    await refs.aclose()


async def test_while_the_kind_is_not_listed_the_policy_waits() -> None:
    refs, _ = resolver(FakeCache())
    assert await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team") is None


async def test_a_backend_in_another_namespace_is_not_found() -> None:
    cache = FakeCache()
    cache.add("MetricsBackend", "other-team", "mimir", BACKEND)
    refs, _ = resolver(cache)
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert problem == RefProblem(
        "MetricsBackendRefNotFound",
        "MetricsBackend mimir: no such object in namespace team; create it or fix the name",
    )


async def test_an_unreadable_secret_is_a_problem_that_names_it_and_not_a_value() -> None:
    cache = FakeCache()
    cache.add("MetricsBackend", "team", "mimir", BACKEND)
    refs, _ = resolver(cache, {("team", "mimir", "other"): TOKEN})
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert isinstance(problem, RefProblem)
    assert problem.reason == "MetricsBackendRefInvalid"
    assert problem.message == (
        "MetricsBackend team/mimir: cannot read the bearer token from key 'token' of Secret "
        "team/mimir (NotFound)"
    )
    assert TOKEN not in str(problem)


async def test_an_invalid_object_is_a_problem_naming_the_field() -> None:
    cache = FakeCache()
    cache.add("MetricsBackend", "team", "mimir", {**BACKEND, "url": "https://mimir/api/v1"})
    refs, _ = resolver(cache)
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert isinstance(problem, RefProblem)
    assert problem.reason == "MetricsBackendRefInvalid"
    assert (
        "MetricsBackend team/mimir is invalid: spec.url: must stop before /api/v1"
        in problem.message
    )


async def test_a_ca_bundle_that_is_not_pem_is_refused() -> None:
    cache = FakeCache()
    cache.add(
        "MetricsBackend",
        "team",
        "mimir",
        {**BACKEND, "caConfigMapRef": {"name": "ca", "key": "ca.crt"}},
    )
    refs, executor = resolver(cache, {("team", "mimir", "token"): TOKEN})
    executor.kube.config_maps[("team", "ca")] = {"ca.crt": "not a certificate"}
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert isinstance(problem, RefProblem)
    assert problem.reason == "MetricsBackendRefInvalid"
    assert "the CA bundle cannot be used" in problem.message
    executor.kube.config_maps.clear()
    cache.add(
        "MetricsBackend",
        "team",
        "mimir",
        {**BACKEND, "caConfigMapRef": {"name": "ca", "key": "ca.crt"}},
        rv="2",
    )
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert isinstance(problem, RefProblem)
    assert "ConfigMap team/ca has no key 'ca.crt' (the CA bundle)" in problem.message


async def test_a_missing_shared_channel_holds_the_policy_even_with_a_good_backend() -> None:
    cache = FakeCache()
    cache.listed.add("ClusterNotificationChannel")
    refs, _ = resolver(cache)
    wanted = spec(
        notifications={
            "channels": [
                {
                    "name": "oncall",
                    "channelRef": {"kind": "ClusterNotificationChannel", "name": "pay"},
                }
            ]
        }
    )
    problem = await refs.route(wanted, "team")
    assert problem == RefProblem(
        "ChannelRefNotFound",
        "ClusterNotificationChannel pay: no such object; create it or fix the name",
    )


def test_a_shared_channel_reads_its_secrets_where_it_lives() -> None:
    cache = FakeCache()
    slack = {"slack": {"webhookSecretRef": {"name": "hook", "key": "url"}}, "maxPerHour": 5}
    cache.add("ClusterNotificationChannel", "", "pay", slack)
    cache.add("NotificationChannel", "team", "team", slack)
    refs, _ = resolver(cache)
    cluster = refs.channel(ChannelReference(kind="ClusterNotificationChannel", name="pay"), "team")
    local = refs.channel(ChannelReference(name="team"), "team")
    assert isinstance(cluster, SharedChannel)
    assert isinstance(local, SharedChannel)
    assert (cluster.secret_namespace, cluster.key) == (
        OPERATOR_NS,
        "ClusterNotificationChannel//pay",
    )
    assert (local.secret_namespace, local.key) == ("team", "NotificationChannel/team/team")
    assert cluster.spec.as_channel("oncall").max_per_hour == 5


@pytest.mark.parametrize("kind", ["ClusterMetricsBackend", "ClusterNotificationChannel"])
async def test_an_operator_watching_namespaces_refuses_cluster_scoped_refs(kind: str) -> None:
    refs, _ = resolver(FakeCache(namespaces=("team",)))
    ref = (
        MetricsBackendRef(kind="ClusterMetricsBackend", name="x")
        if kind == "ClusterMetricsBackend"
        else ChannelReference(kind="ClusterNotificationChannel", name="x")
    )
    got = (
        await refs.backend(ref, "team")
        if isinstance(ref, MetricsBackendRef)
        else refs.channel(ref, "team")
    )
    assert isinstance(got, RefProblem)
    assert got.reason.endswith("RefNotFound")
    assert "install the operator cluster-wide" in got.message


def test_subscribing_watches_only_the_kinds_a_policy_names() -> None:
    cache = FakeCache()
    refs, _ = resolver(cache)
    refs.subscribe(spec())
    assert cache.wanted == set()
    refs.subscribe(
        spec(
            metricsBackendRef={"kind": "ClusterMetricsBackend", "name": "m"},
            notifications={"channels": [{"name": "c", "channelRef": {"name": "team"}}]},
        )
    )
    assert cache.wanted == {"ClusterMetricsBackend", "NotificationChannel"}


async def test_a_cluster_scoped_object_may_name_only_a_cluster_backend() -> None:
    cache = FakeCache()
    cache.add("MetricsBackend", "team", "mimir", BACKEND)
    refs, _ = resolver(cache)
    problem = await refs.backend(MetricsBackendRef(name="mimir"), "")
    assert problem == RefProblem(
        "MetricsBackendRefNotFound",
        "MetricsBackend mimir: a cluster-scoped object may name only a ClusterMetricsBackend",
    )


async def test_a_kind_the_api_server_does_not_serve_says_so() -> None:
    cache = FakeCache()
    cache.not_installed.add("MetricsBackend")
    refs, _ = resolver(cache)
    problem = await refs.route(spec(metricsBackendRef={"name": "mimir"}), "team")
    assert isinstance(problem, RefProblem)
    assert problem.reason == "MetricsBackendRefNotFound"
    assert "does not serve MetricsBackend (its CRD is not installed)" in problem.message


class RecordingStatus:
    def __init__(self) -> None:
        self.written: list[tuple[str, bool, tuple[str, ...]]] = []
        self.writes = 0

    async def ready(
        self, obj: SharedObject, ready: bool, reason: str, message: str, used_by: Any = ()
    ) -> None:
        self.written.append((obj.name, ready, tuple(used_by)))


async def test_a_cycles_flush_writes_who_names_the_object_now_not_what_a_sweep_found() -> None:
    from agentmedic.operator.shared_sweep import SharedSweep

    cache = FakeCache()
    cache.add("MetricsBackend", "team", "mimir", BACKEND)
    status = RecordingStatus()
    refs = RefResolver(
        cache,  # type: ignore[arg-type]
        FakeExecutor({("team", "mimir", "token"): TOKEN}),  # type: ignore[arg-type]
        DefaultBackend(),
        operator_namespace=OPERATOR_NS,
        max_response_bytes=1 << 20,
        status=status,  # type: ignore[arg-type]
    )
    users: dict[tuple[str, str, str], list[str]] = {}
    finds: list[int] = []

    def current() -> dict[tuple[str, str, str], list[str]]:
        finds.append(1)
        return users

    sweep = SharedSweep(refs, current, lambda: True)
    assert sweep.users() == {}  # an earlier sweep found nobody naming it
    # A policy naming it is registered (which pokes the sweep); its first cycle resolves
    # the backend before the sweep runs again.
    users[("MetricsBackend", "team", "mimir")] = ["AgentPolicy team/p2", "AgentPolicy team/p1"]
    sweep.poke()
    wanted = spec(metricsBackendRef={"name": "mimir"})
    assert isinstance(await refs.route(wanted, "team"), Route)
    assert status.written == [("mimir", True, ("AgentPolicy team/p1", "AgentPolicy team/p2"))]
    # A second policy's cycle in the same round finds them without asking again.
    asked = len(finds)
    cache.add("MetricsBackend", "team", "mimir", BACKEND, rv="2")
    assert isinstance(await refs.route(wanted, "team"), Route)
    assert len(finds) == asked
    assert status.written[-1][2] == ("AgentPolicy team/p1", "AgentPolicy team/p2")
