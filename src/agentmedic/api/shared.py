"""Configuration defined once and referenced by name: notification channels and metrics
backends (``agentmedic.io/v1alpha1``).

In the style of KEDA's TriggerAuthentication / ClusterTriggerAuthentication, each comes as
a namespaced kind and a cluster-scoped one:

- ``NotificationChannel`` / ``ClusterNotificationChannel``: one Slack, PagerDuty, webhook
  or Alertmanager channel with its delivery limits. A policy's (or a budget's)
  ``spec.notifications.channels[]`` entry names it with ``channelRef`` instead of
  repeating the settings.
- ``MetricsBackend`` / ``ClusterMetricsBackend``: a Prometheus-compatible query API with
  its tenant (``X-Scope-OrgID``), credentials and CA, all from Secrets (the CA also from a
  ConfigMap). A policy's (or a budget's) ``spec.metricsBackendRef`` names it; without it
  the operator's own backend is used.

A namespaced object's Secrets are read in its own namespace, and only policies of that
namespace may refer to it; a cluster-scoped object's Secrets are read in the operator's
namespace, and any policy may refer to it. Data only, like :mod:`agentmedic.api.types`;
the checks that span fields are :func:`agentmedic.api.validation.validate_shared`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from agentmedic.api.base import MAX_COUNT, Model, Name, ShortText
from agentmedic.api.durations import Duration, duration_bounds
from agentmedic.api.refs import (
    CLUSTER_CHANNEL_KIND,
    CLUSTER_METRICS_BACKEND_KIND,
    NAMESPACED_CHANNEL_KIND,
    NAMESPACED_METRICS_BACKEND_KIND,
)
from agentmedic.api.types import (
    AlertmanagerBasicAuth,
    AlertmanagerChannel,
    PagerDutyChannel,
    Renotify,
    SecretKeyRef,
    Severity,
    SlackChannel,
    StatusCondition,
    WebhookChannel,
)
from agentmedic.api.types import NotificationChannel as ChannelEntry

__all__ = [
    "CHANNEL_PLURAL",
    "CLUSTER_CHANNEL_PLURAL",
    "CLUSTER_METRICS_BACKEND_PLURAL",
    "MAX_USED_BY",
    "METRICS_BACKEND_PLURAL",
    "MIN_BACKEND_TIMEOUT",
    "SHARED_MODELS",
    "ClusterMetricsBackend",
    "ClusterNotificationChannel",
    "ConfigMapKeySelector",
    "HeaderFromSecret",
    "MetricsBackend",
    "MetricsBackendSpec",
    "NotificationChannelSpec",
    "SharedObject",
    "SharedStatus",
]

CHANNEL_PLURAL = "notificationchannels"
CLUSTER_CHANNEL_PLURAL = "clusternotificationchannels"
METRICS_BACKEND_PLURAL = "metricsbackends"
CLUSTER_METRICS_BACKEND_PLURAL = "clustermetricsbackends"

MAX_HEADERS = 20
MIN_BACKEND_TIMEOUT = timedelta(seconds=1)
MAX_BACKEND_TIMEOUT = timedelta(minutes=2)
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""An HTTP header name (RFC 9110 token)."""
BackendTimeout = Annotated[Duration, duration_bounds(MIN_BACKEND_TIMEOUT, MAX_BACKEND_TIMEOUT)]


MAX_USED_BY = 50
"""How many users a shared object's status names."""


class SharedStatus(Model):
    observed_generation: int | None = None
    """The spec generation last read."""
    conditions: list[StatusCondition] = Field(default_factory=list, max_length=8)
    """Ready: the object is valid and the Secrets it names can be read (a backend: its
    Secrets and CA read and a client built), checked as soon as the operator sees it,
    whether or not anything refers to it."""
    used_by: list[Annotated[str, Field(max_length=600)]] = Field(
        default_factory=list, max_length=MAX_USED_BY + 1
    )
    """The policies and budgets that refer to it (``AgentPolicy team/bots``, ``AgentBudget
    team/daily``, ``ClusterAgentBudget payments``), sorted; past 50 the last entry says how
    many more."""


# --------------------------------------------------------------------------- channels


class NotificationChannelSpec(Model):
    """One channel, as in a policy's spec.notifications.channels, without a name."""

    slack: SlackChannel | None = None
    """A Slack incoming webhook. Set exactly one of slack, pagerduty, webhook and alertmanager."""
    pagerduty: PagerDutyChannel | None = None
    """PagerDuty Events API v2. Set exactly one of slack, pagerduty, webhook and alertmanager."""
    webhook: WebhookChannel | None = None
    """A generic JSON webhook. Set exactly one of slack, pagerduty, webhook and alertmanager."""
    alertmanager: AlertmanagerChannel | None = None
    """Alerts posted to Alertmanager's v2 API. Set exactly one of slack, pagerduty, webhook
    and alertmanager."""
    max_per_hour: int = Field(default=30, ge=1, le=MAX_COUNT)
    """At most this many messages per hour on this channel, counted across every policy
    that refers to it; the rest are counted and summarised. Defaults to 30."""
    renotify_after: Renotify = timedelta(hours=4)
    """Repeat a still-firing episode after this long, from 1m to 30d. Defaults to 4h."""
    min_severity: Severity = Severity.INFO
    """Only episodes at or above this severity reach the channel. Defaults to info."""

    def as_channel(self, name: str) -> ChannelEntry:
        """The channel as a policy's entry named ``name`` would define it inline."""
        fields = {k: getattr(self, k) for k in self.model_fields_set}
        return ChannelEntry(name=name, **fields)


class NotificationChannel(Model):
    """A notification channel the policies and budgets of this namespace refer to by name
    (channelRef); its Secrets are read in this namespace."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["NotificationChannel"] = "NotificationChannel"
    """NotificationChannel"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: NotificationChannelSpec
    """The channel."""
    status: SharedStatus | None = None
    """Written by the operator for every object it watches."""


class ClusterNotificationChannel(Model):
    """A notification channel every namespace's policies and budgets may refer to by name
    (channelRef); its Secrets are read in the operator's namespace."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["ClusterNotificationChannel"] = "ClusterNotificationChannel"
    """ClusterNotificationChannel"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: NotificationChannelSpec
    """The channel."""
    status: SharedStatus | None = None
    """Written by the operator for every object it watches."""


# --------------------------------------------------------------------------- metrics backends


class HeaderFromSecret(Model):
    name: str = Field(min_length=1, max_length=128, pattern=HEADER_NAME_PATTERN)
    """The HTTP header, e.g. X-Api-Key."""
    value_secret_ref: SecretKeyRef
    """The Secret key holding the header's value."""


class ConfigMapKeySelector(Model):
    name: Name
    """The ConfigMap."""
    key: Name
    """The key within the ConfigMap."""


class MetricsBackendSpec(Model):
    url: str = Field(min_length=1, max_length=2048)
    """The query API's base URL, up to but not including /api/v1, with any path prefix:
    https://mimir.example/prometheus, http://thanos-query:9090,
    http://cortex/api/prom."""
    tenant: ShortText | None = None
    """The tenant, sent as the X-Scope-OrgID header (Mimir, Cortex, Thanos with a tenant
    header)."""
    headers: list[HeaderFromSecret] = Field(default_factory=list, max_length=MAX_HEADERS)
    """More request headers, each value read from a Secret."""
    basic_auth: AlertmanagerBasicAuth | None = None
    """HTTP basic authentication. Set at most one of basicAuth and bearerTokenSecretRef."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """The Secret key holding a bearer token sent as Authorization: Bearer <token>."""
    ca_secret_ref: SecretKeyRef | None = None
    """The Secret key holding the PEM bundle of the CAs that sign the backend's certificate.
    Set at most one of caSecretRef and caConfigMapRef; without either the system's CAs
    are trusted."""
    ca_config_map_ref: ConfigMapKeySelector | None = None
    """The ConfigMap key holding that PEM bundle (a trust bundle distributed as a ConfigMap,
    such as cert-manager's trust-manager writes). Set at most one of caSecretRef and
    caConfigMapRef."""
    timeout: BackendTimeout = timedelta(seconds=10)
    """How long one query attempt may take, from 1s to 2m. Defaults to 10s."""


class MetricsBackend(Model):
    """A Prometheus-compatible metrics backend (a team's Mimir tenant, a Thanos Querier)
    the policies and budgets of this namespace refer to by name (metricsBackendRef); its
    Secrets and ConfigMap are read in this namespace."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["MetricsBackend"] = "MetricsBackend"
    """MetricsBackend"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: MetricsBackendSpec
    """Where and how to query."""
    status: SharedStatus | None = None
    """Written by the operator for every object it watches."""


class ClusterMetricsBackend(Model):
    """A Prometheus-compatible metrics backend every namespace's policies and budgets may
    refer to by name (metricsBackendRef); its Secrets and ConfigMap are read in the
    operator's namespace."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["ClusterMetricsBackend"] = "ClusterMetricsBackend"
    """ClusterMetricsBackend"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: MetricsBackendSpec
    """Where and how to query."""
    status: SharedStatus | None = None
    """Written by the operator for every object it watches."""


SharedObject = (
    NotificationChannel | ClusterNotificationChannel | MetricsBackend | ClusterMetricsBackend
)
"""Any of the four shared kinds."""

SHARED_MODELS: dict[str, type[SharedObject]] = {
    NAMESPACED_CHANNEL_KIND: NotificationChannel,
    CLUSTER_CHANNEL_KIND: ClusterNotificationChannel,
    NAMESPACED_METRICS_BACKEND_KIND: MetricsBackend,
    CLUSTER_METRICS_BACKEND_KIND: ClusterMetricsBackend,
}
"""The model of each shared kind, by kind."""
