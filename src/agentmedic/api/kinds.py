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
from agentmedic.api.silence import SILENCE_KIND, SILENCE_PLURAL, AgentSilence

__all__ = ["AGENT_BUDGET", "AGENT_SILENCE", "CLUSTER_AGENT_BUDGET", "MODEL_PRICE_LIST"]

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

AGENT_BUDGET = register(
    CrdKind(
        model=AgentBudget,
        kind=BUDGET_KIND,
        plural=BUDGET_PLURAL,
        scope="Namespaced",
        short_names=("ab", "budget"),
        columns=_BUDGET_COLUMNS,
        cel={("spec",): [_STAGE_NAMES_UNIQUE]},
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
        cel={
            ("spec",): [
                {
                    "rule": "!has(self.prices) || "
                    "self.prices.all(p, self.prices.exists_one(o, o.model == p.model))",
                    "message": "spec.prices: each model may appear once",
                    "fieldPath": ".prices",
                }
            ]
        },
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
