"""Start-up wiring: every collaborator of the operator, built once, before it runs.

:func:`wire` builds the clients (Kubernetes, the workload watch, the metrics backend,
notifications), the Lease, and the services the cycle uses over them; the
:class:`~agentmedic.operator.app.Operator` receives them complete, so none of them is ever
missing at run time. :func:`close` releases them in the reverse order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from agentmedic.actions import ActionExecutor
from agentmedic.kube import AsyncKube, Configuration, CustomObjects, Kube
from agentmedic.metrics import (
    BackendConfig,
    Catalog,
    MetricsBackend,
    PrometheusBackend,
    backend_config_from_files,
    load_catalog,
)
from agentmedic.notify import Notifier
from agentmedic.operator.budget_cycle import BudgetService
from agentmedic.operator.budget_events import BudgetEvents
from agentmedic.operator.budget_notices import BudgetNotices
from agentmedic.operator.dispatch import Dispatcher
from agentmedic.operator.memory import Memory
from agentmedic.operator.notices import Deliveries
from agentmedic.operator.outage import OutagePolicy
from agentmedic.operator.peering import LeadershipHook, Peering
from agentmedic.operator.persistence import PolicyStore
from agentmedic.operator.refs import RefResolver
from agentmedic.operator.reporting import Reporter
from agentmedic.operator.restores import RestoreRequests
from agentmedic.operator.routing import RefGate
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.shared_cache import SharedCache
from agentmedic.operator.shared_status import SharedStatusWriter
from agentmedic.operator.silences import SilenceWatch
from agentmedic.operator.status_writer import PolicyWriter
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import WorkloadCache

__all__ = ["Parts", "backend_config", "close", "wire"]

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Parts:
    """The operator's collaborators."""

    catalog: Catalog
    kube: Kube
    executor: ActionExecutor
    http: AsyncKube
    cache: WorkloadCache
    notifier: Notifier
    backend: MetricsBackend
    store: PolicyStore
    peering: Peering
    writer: PolicyWriter
    deliveries: Deliveries
    memory: Memory
    outage: OutagePolicy
    dispatcher: Dispatcher
    reporter: Reporter
    restores: RestoreRequests
    refs: RefResolver
    """Shared channels and metrics backends that policies refer to."""
    gate: RefGate
    """Holds and reports the policies whose references do not resolve."""
    budgets: BudgetService
    """Finance's AgentBudgets and ClusterAgentBudgets, evaluated on their own schedule."""
    silences: SilenceWatch


def wire(
    settings: OperatorSettings,
    kube_configuration: Configuration,
    telemetry: Telemetry,
    clock: Callable[[], datetime],
    *,
    identity: str,
    on_leadership: LeadershipHook,
    backend: MetricsBackend | None = None,
) -> Parts:
    """Build every collaborator; ``backend`` replaces the Prometheus client (tests)."""
    catalog = load_catalog(settings.catalog_overrides_file)
    kube = Kube.from_configuration(kube_configuration)
    kube.observe = lambda method, _path: telemetry.api_requests.labels(
        _VERBS.get(method.upper(), method.lower())
    ).inc()
    http = AsyncKube(kube_configuration)
    http.observe = lambda verb, _path: telemetry.api_requests.labels(verb).inc()
    executor = ActionExecutor(kube)
    peering = Peering.from_settings(settings, kube, identity, on_leadership)
    store = PolicyStore(
        kube,
        observe=lambda verb: telemetry.api_requests.labels(verb).inc(),
        fence=peering.leading,
    )
    writer = PolicyWriter(
        store, executor, telemetry, clock, max_actions=settings.status_recent_actions
    )
    notifier = Notifier()
    deliveries = Deliveries(notifier, executor, writer, telemetry, clock, peering.leading)
    cache = WorkloadCache(http)
    backend = backend or PrometheusBackend(backend_config(settings))
    refs = RefResolver(
        SharedCache(http, settings.namespaces),
        executor,
        backend,
        operator_namespace=settings.lease_namespace_or_default(),
        max_response_bytes=settings.max_response_bytes,
        status=SharedStatusWriter(kube, clock, peering.leading),
    )
    deliveries.refs = refs
    budgets = _budgets(
        settings, kube, http, executor, notifier, backend, catalog, refs, clock, peering
    )
    return Parts(
        catalog=catalog,
        kube=kube,
        executor=executor,
        http=http,
        cache=cache,
        notifier=notifier,
        backend=backend,
        store=store,
        peering=peering,
        writer=writer,
        deliveries=deliveries,
        memory=Memory(store, executor, writer, deliveries, clock, peering.leading),
        outage=OutagePolicy(writer, deliveries, telemetry),
        dispatcher=Dispatcher(
            executor, telemetry, writer.event, max_concurrent=settings.max_concurrent_actions
        ),
        reporter=Reporter(
            writer, telemetry, spend_refresh=timedelta(seconds=settings.spend_refresh_seconds)
        ),
        restores=RestoreRequests(cache, executor, settings, telemetry, peering.leading),
        refs=refs,
        gate=RefGate(refs, writer),
        budgets=budgets,
        silences=SilenceWatch(http),
    )


def _budgets(
    settings: OperatorSettings,
    kube: Kube,
    http: AsyncKube,
    executor: ActionExecutor,
    notifier: Notifier,
    backend: MetricsBackend,
    catalog: Catalog,
    refs: RefResolver,
    clock: Callable[[], datetime],
    peering: Peering,
) -> BudgetService:
    """Finance's budgets: evaluated on their own schedule, told on their own channels."""
    objects = CustomObjects(kube)
    notices = BudgetNotices(
        notifier,
        executor,
        objects,
        settings.lease_namespace_or_default(),
        peering.leading,
        refs=refs,
    )
    return BudgetService(
        http,
        objects,
        notices,
        backend,
        catalog,
        settings,
        clock,
        peering.leading,
        refs=refs,
        events=BudgetEvents(executor, peering.leading),
    )


async def close(parts: Parts) -> None:
    """Release the clients (the Lease is handed over by the caller first)."""
    await parts.budgets.aclose()
    await parts.cache.aclose()
    await parts.refs.cache.aclose()
    await parts.refs.aclose()
    await parts.silences.aclose()
    await parts.http.aclose()
    await parts.notifier.aclose()
    await parts.backend.aclose()
    parts.kube.close()


def backend_config(settings: OperatorSettings) -> BackendConfig:
    """The Prometheus client's configuration from the operator's settings."""
    return backend_config_from_files(
        settings.prometheus_url,
        bearer_token_file=settings.bearer_token_file,
        basic_auth_username=settings.basic_auth_username,
        basic_auth_password_file=settings.basic_auth_password_file,
        ca_file=settings.ca_file,
        insecure_skip_verify=settings.insecure_skip_verify,
        tenant=settings.tenant,
        headers=settings.extra_headers,
        timeout=settings.query_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
    )
