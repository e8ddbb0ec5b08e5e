"""Every kind beyond AgentPolicy, registered with the CRD renderer
(:func:`agentmedic.api.crd.register`); importing this module registers them all."""

from __future__ import annotations

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

__all__ = ["AGENT_BUDGET", "CLUSTER_AGENT_BUDGET", "MODEL_PRICE_LIST"]

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
