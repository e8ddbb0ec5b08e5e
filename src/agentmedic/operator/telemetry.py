"""The operator's own metrics, served on /metrics (settings.metrics_port)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Telemetry"]


@dataclass
class Telemetry:
    """Counters and gauges of the control loop, on a registry of their own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.cycles = Counter(
            "agentmedic_cycles_total",
            "Evaluation cycles run, by interval.",
            ["interval"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            "agentmedic_cycle_duration_seconds",
            "Wall time of one evaluation cycle.",
            ["interval"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.overruns = Counter(
            "agentmedic_cycle_overruns_total",
            "Cycles skipped because the previous one with the same interval was still running.",
            ["interval"],
            registry=r,
        )
        self.queries = Counter(
            "agentmedic_queries_total", "PromQL queries sent to the metrics backend.", registry=r
        )
        self.decisions = Counter(
            "agentmedic_decisions_total",
            "Engine decisions by action kind and outcome (Applied, DryRun, Suppressed, Failed).",
            ["action", "outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "agentmedic_notifications_total",
            "Notifications by channel and result (Sent, Suppressed, Failed).",
            ["channel", "result"],
            registry=r,
        )
        self.errors = Counter(
            "agentmedic_errors_total",
            "Errors by stage (metrics, kubernetes, notify, status, invalid_policy).",
            ["stage"],
            registry=r,
        )
        self.agents = Gauge(
            "agentmedic_agents",
            "Agents by policy and state.",
            ["namespace", "policy", "state"],
            registry=r,
        )
        self.policies = Gauge(
            "agentmedic_policies", "AgentPolicies known, by readiness.", ["ready"], registry=r
        )
        self.metrics_available = Gauge(
            "agentmedic_metrics_backend_up",
            "1 when the last cycle could query the metrics backend.",
            registry=r,
        )
        self.api_requests = Counter(
            "agentmedic_kubernetes_requests_total",
            "Requests the operator sent to the Kubernetes API by verb (kopf's own not included).",
            ["verb"],
            registry=r,
        )
