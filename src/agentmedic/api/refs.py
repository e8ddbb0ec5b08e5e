"""References from a policy or a budget to configuration defined once and shared: a
notification channel (:class:`ChannelReference`) and a metrics backend
(:class:`MetricsBackendRef`). The kinds they name live in :mod:`agentmedic.api.shared`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentmedic.api.base import Model, Name

__all__ = [
    "CHANNEL_KINDS",
    "CLUSTER_CHANNEL_KIND",
    "CLUSTER_METRICS_BACKEND_KIND",
    "METRICS_BACKEND_KINDS",
    "NAMESPACED_CHANNEL_KIND",
    "NAMESPACED_METRICS_BACKEND_KIND",
    "ChannelReference",
    "MetricsBackendRef",
]

NAMESPACED_CHANNEL_KIND = "NotificationChannel"
CLUSTER_CHANNEL_KIND = "ClusterNotificationChannel"
NAMESPACED_METRICS_BACKEND_KIND = "MetricsBackend"
CLUSTER_METRICS_BACKEND_KIND = "ClusterMetricsBackend"
CHANNEL_KINDS = (NAMESPACED_CHANNEL_KIND, CLUSTER_CHANNEL_KIND)
METRICS_BACKEND_KINDS = (NAMESPACED_METRICS_BACKEND_KIND, CLUSTER_METRICS_BACKEND_KIND)


class ChannelReference(Model):
    kind: Literal["NotificationChannel", "ClusterNotificationChannel"] = Field(
        default="NotificationChannel"
    )
    """NotificationChannel (in the same namespace; its Secrets are read there) or
    ClusterNotificationChannel (its Secrets are read in the operator's namespace).
    Defaults to NotificationChannel."""
    name: Name
    """The shared channel's name."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class MetricsBackendRef(Model):
    kind: Literal["MetricsBackend", "ClusterMetricsBackend"] = Field(default="MetricsBackend")
    """MetricsBackend (in the same namespace; its Secrets are read there) or
    ClusterMetricsBackend (its Secrets are read in the operator's namespace). Defaults to
    MetricsBackend."""
    name: Name
    """The backend's name."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
