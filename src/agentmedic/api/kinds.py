"""Every kind beyond AgentPolicy, registered with the CRD renderer
(:func:`agentmedic.api.crd.register`); importing this module registers them all."""

from __future__ import annotations

from agentmedic.api import shared
from agentmedic.api.budget import (
    BUDGET_KIND,
    BUDGET_PLURAL,
    CLUSTER_BUDGET_KIND,
    CLUSTER_BUDGET_PLURAL,
    PRICE_LIST_KIND,
    PRICE_LIST_PLURAL,
    AgentBudget,
    ClusterAgentBudget,
    ModelPriceList,
)
from agentmedic.api.crd import AGE_COLUMN, READY_COLUMN, CrdKind, column, register
from agentmedic.api.refs import (
    CLUSTER_CHANNEL_KIND,
    CLUSTER_METRICS_BACKEND_KIND,
    NAMESPACED_CHANNEL_KIND,
    NAMESPACED_METRICS_BACKEND_KIND,
)
from agentmedic.api.silence import SILENCE_KIND, SILENCE_PLURAL, AgentSilence

__all__ = [
    "AGENT_BUDGET",
    "AGENT_SILENCE",
    "CLUSTER_AGENT_BUDGET",
    "CLUSTER_METRICS_BACKEND",
    "CLUSTER_NOTIFICATION_CHANNEL",
    "METRICS_BACKEND",
    "MODEL_PRICE_LIST",
    "NOTIFICATION_CHANNEL",
]

_BUDGET_COLUMNS = (
    column("Spend", "number", ".status.spendUSD"),
    column("Limit", "number", ".spec.limitUSD"),
    column("Forecast", "number", ".status.forecastUSD"),
    column("Stage", "string", ".status.stage"),
    column("Agents", "integer", ".status.agents", wide=True),
    READY_COLUMN,
    AGE_COLUMN,
)

_STAGE_NAMES_UNIQUE = {
    "rule": "self.stages.all(s, self.stages.exists_one(o, o.name == s.name))",
    "message": "spec.stages: stage names must be unique",
    "fieldPath": ".stages",
}

_STAGE_CHANNELS_DEFINED = {
    "rule": "self.stages.all(s, !has(s.channels) || s.channels.all(c, "
    "has(self.notifications) && has(self.notifications.channels) && "
    "self.notifications.channels.exists(n, n.name == c)))",
    "message": "spec.stages[].channels: each channel must be defined in "
    "spec.notifications.channels",
    "fieldPath": ".stages",
}

AGENT_BUDGET = register(
    CrdKind(
        model=AgentBudget,
        kind=BUDGET_KIND,
        plural=BUDGET_PLURAL,
        scope="Namespaced",
        short_names=("ab", "budget"),
        columns=_BUDGET_COLUMNS,
        cel={("spec",): [_STAGE_NAMES_UNIQUE, _STAGE_CHANNELS_DEFINED]},
    )
)

CLUSTER_AGENT_BUDGET = register(
    CrdKind(
        model=ClusterAgentBudget,
        kind=CLUSTER_BUDGET_KIND,
        plural=CLUSTER_BUDGET_PLURAL,
        scope="Cluster",
        short_names=("cab", "clusterbudget"),
        columns=_BUDGET_COLUMNS,
        cel={
            ("spec",): [
                _STAGE_NAMES_UNIQUE,
                _STAGE_CHANNELS_DEFINED,
                {
                    "rule": "(has(self.namespaces) && size(self.namespaces) > 0) || "
                    "has(self.namespaceSelector)",
                    "message": "set spec.namespaces or spec.namespaceSelector: which "
                    "namespaces' agents the budget covers",
                },
            ]
        },
    )
)

MODEL_PRICE_LIST = register(
    CrdKind(
        model=ModelPriceList,
        kind=PRICE_LIST_KIND,
        plural=PRICE_LIST_PLURAL,
        scope="Cluster",
        short_names=("mpl", "prices"),
        columns=(column("Models", "integer", ".status.models"), READY_COLUMN, AGE_COLUMN),
        # spec.prices is a list map keyed by model: the API server refuses duplicates.
    )
)

# ---------------------------------------------------------------- shared configuration
# NotificationChannel, ClusterNotificationChannel, MetricsBackend, ClusterMetricsBackend
# (agentmedic.api.shared): defined once, referred to by name from policies and budgets.

_CHANNEL_COLUMNS = (
    column("Max/h", "integer", ".spec.maxPerHour"),
    column("Min severity", "string", ".spec.minSeverity"),
    READY_COLUMN,
    AGE_COLUMN,
)
_BACKEND_COLUMNS = (
    column("URL", "string", ".spec.url"),
    column("Tenant", "string", ".spec.tenant"),
    READY_COLUMN,
    AGE_COLUMN,
)

NOTIFICATION_CHANNEL = register(
    CrdKind(
        model=shared.NotificationChannel,
        kind=NAMESPACED_CHANNEL_KIND,
        plural=shared.CHANNEL_PLURAL,
        scope="Namespaced",
        short_names=("nch",),
        columns=_CHANNEL_COLUMNS,
    )
)
CLUSTER_NOTIFICATION_CHANNEL = register(
    CrdKind(
        model=shared.ClusterNotificationChannel,
        kind=CLUSTER_CHANNEL_KIND,
        plural=shared.CLUSTER_CHANNEL_PLURAL,
        scope="Cluster",
        short_names=("cnch",),
        columns=_CHANNEL_COLUMNS,
    )
)
METRICS_BACKEND = register(
    CrdKind(
        model=shared.MetricsBackend,
        kind=NAMESPACED_METRICS_BACKEND_KIND,
        plural=shared.METRICS_BACKEND_PLURAL,
        scope="Namespaced",
        short_names=("mb",),
        columns=_BACKEND_COLUMNS,
    )
)
CLUSTER_METRICS_BACKEND = register(
    CrdKind(
        model=shared.ClusterMetricsBackend,
        kind=CLUSTER_METRICS_BACKEND_KIND,
        plural=shared.CLUSTER_METRICS_BACKEND_PLURAL,
        scope="Cluster",
        short_names=("cmb",),
        columns=_BACKEND_COLUMNS,
    )
)

AGENT_SILENCE = register(
    CrdKind(
        model=AgentSilence,
        kind=SILENCE_KIND,
        plural=SILENCE_PLURAL,
        scope="Namespaced",
        short_names=("asil", "silence"),
        columns=(
            column("Agent", "string", ".spec.agent"),
            column("Policy", "string", ".spec.policy"),
            column("Rule", "string", ".spec.rule"),
            column("Ends", "date", ".spec.endsAt"),
            column("By", "string", ".spec.createdBy"),
            column("Reason", "string", ".spec.reason", wide=True),
            AGE_COLUMN,
        ),
        cel={
            ("spec",): [
                {
                    "rule": "has(self.agent) || has(self.policy)",
                    "message": "set spec.agent, spec.policy or both: what the silence covers",
                }
            ]
        },
    )
)
