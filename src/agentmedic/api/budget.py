"""Finance's resources: ``AgentBudget``, ``ClusterAgentBudget`` and ``ModelPriceList``.

A budget says what finance decides — the period, the ceiling, whether it applies to each
agent or to the selection's total, where cost comes from, and the staged responses — and
nothing about how an agent is remediated: a ``downgrade`` uses the model tiers of the SRE's
AgentPolicy that selects the agent, a ``stop`` scales the agent to zero as a policy's
scaleToZero does. Budgets live in resources of their own so that RBAC can give finance
budgets and SREs policies (the chart's aggregated ClusterRoles).

A ``ModelPriceList`` is cluster-scoped and owned by finance: prices per model in USD per
million tokens. Budgets with ``costSource: priceList`` compute spend as token series times
these prices, so a price change applies to the whole fleet, and to history, at once.

Data only, like :mod:`agentmedic.api.types`; cross-field checks live beside the policy's.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agentmedic.api.refs import MetricsBackendRef
from agentmedic.api.status import StatusCondition, Timestamp
from agentmedic.api.types import (
    GROUP,
    MAX_CHANNEL_REFS,
    NAME_PATTERN,
    ChannelRef,
    LabelSelector,
    Model,
    Name,
    Notifications,
    OnNewPeriod,
    Window,
    budget_period_cel,
)

__all__ = [
    "BUDGET_KIND",
    "BUDGET_PLURAL",
    "CLUSTER_BUDGET_KIND",
    "CLUSTER_BUDGET_PLURAL",
    "GROUP_RESOURCES",
    "OPERATOR_PERMISSIONS",
    "PRICE_LIST_KIND",
    "PRICE_LIST_PLURAL",
    "AgentBudget",
    "AgentBudgetSpec",
    "AgentSpend",
    "BudgetAppliesTo",
    "BudgetStage",
    "BudgetStatus",
    "ClusterAgentBudget",
    "ClusterAgentBudgetSpec",
    "CostSource",
    "HeldStages",
    "ModelPriceList",
    "ModelPriceListSpec",
    "ModelPriceListStatus",
    "NamespaceName",
    "PriceEntry",
    "StageResponse",
]

BUDGET_KIND = "AgentBudget"
BUDGET_PLURAL = "agentbudgets"
CLUSTER_BUDGET_KIND = "ClusterAgentBudget"
CLUSTER_BUDGET_PLURAL = "clusteragentbudgets"
PRICE_LIST_KIND = "ModelPriceList"
PRICE_LIST_PLURAL = "modelpricelists"

MAX_STAGES = 10
MAX_TOP_AGENTS = 5
MAX_PRICES = 500
MAX_NAMESPACES = 100
MAX_NAMED_MODELS = 10
"""Unpriced models named in a status (sorted; a budget's Priced condition counts the rest)."""

NamespaceName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
"""A namespace's name: a DNS label (lowercase letters, digits, dashes; at most 63)."""

GROUP_RESOURCES = (BUDGET_PLURAL, CLUSTER_BUDGET_PLURAL, PRICE_LIST_PLURAL)
"""The resources of agentmedic.io that finance owns (the chart's budget-editor role)."""

OPERATOR_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {(GROUP, plural, verb) for plural in GROUP_RESOURCES for verb in ("get", "list", "watch")}
    | {(GROUP, f"{plural}/status", "patch") for plural in GROUP_RESOURCES}
)
"""(api group, resource, verb) the operator needs on finance's kinds: read them, and write
their status, nothing else (a person's change is never overwritten). The chart grants
exactly these in its operator role (cluster-wide install; AgentBudgets only with a
namespace list), and tests/chart/test_rbac.py checks it against them."""


class BudgetAppliesTo(StrEnum):
    TOTAL = "total"
    PER_AGENT = "perAgent"


class CostSource(StrEnum):
    REPORTED = "reported"
    PRICE_LIST = "priceList"


class StageResponse(StrEnum):
    NOTIFY = "notify"
    DOWNGRADE = "downgrade"
    STOP = "stop"


class BudgetStage(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    """A name unique in this budget, shown in status (STAGE) and in the evidence, e.g. warn,
    downgrade, stop."""
    at_percent: float = Field(default=100, gt=0, le=1000, allow_inf_nan=False)
    """The stage is reached when spend so far reaches this share of limitUSD. Defaults to
    100."""
    on_forecast: bool = False
    """Reach the stage already when the forecast at the period's end reaches atPercent of
    limitUSD (spend so far plus the burn rate of forecastWindow, projected)."""
    response: StageResponse = StageResponse.NOTIFY
    """notify: tell the channels; downgrade: move each agent one model tier down, using the
    tiers of the AgentPolicy that selects it; stop: scale each agent to zero pending a
    person. Defaults to notify."""
    channels: list[ChannelRef] = Field(default_factory=list, max_length=MAX_CHANNEL_REFS)
    """Channels (names in spec.notifications.channels) told when the stage is reached."""


def _default_stages() -> list[BudgetStage]:
    return [
        BudgetStage(name="warn", at_percent=80),
        BudgetStage(name="limit", at_percent=100),
    ]


class AgentBudgetSpec(Model):
    selector: LabelSelector | None = None
    """Narrows the budget to the agents (Deployments and StatefulSets of agentmedic's
    policies) whose labels match; without it every agent in scope counts."""
    period: str = Field(
        default="month",
        max_length=32,
        json_schema_extra={"x-kubernetes-validations": [budget_period_cel()]},
    )
    """day, week (from Monday) or month, calendar periods in timeZone; or a rolling duration
    from 1m to 366d such as 24h or 30d. Defaults to month."""
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    """The IANA time zone calendar periods start in, e.g. Europe/Berlin. Defaults to UTC."""
    limit_usd: float = Field(alias="limitUSD", gt=0, allow_inf_nan=False)
    """The ceiling in US dollars for one period."""
    applies_to: BudgetAppliesTo = BudgetAppliesTo.TOTAL
    """total: the selected agents share the ceiling; perAgent: each agent has it on its own.
    Defaults to total."""
    cost_source: CostSource = CostSource.REPORTED
    """reported: the agents' own agent_cost_usd_total counters; priceList: their token
    counters (agent_tokens_total by model and type) times the prices of priceList.
    Defaults to reported."""
    price_list: Name = "default"
    """The ModelPriceList used with costSource priceList; models it does not name are priced
    by the SDK's built-in table. Defaults to default."""
    forecast_window: Window = timedelta(hours=6)
    """The recent window whose burn rate the forecast projects, from 30s to 30d. Defaults
    to 6h."""
    stages: list[BudgetStage] = Field(
        default_factory=_default_stages, min_length=1, max_length=MAX_STAGES
    )
    """The staged responses, each reached at its share of the limit. Defaults to warn at 80%
    and limit at 100%, both notify."""
    on_new_period: OnNewPeriod = OnNewPeriod.RESTORE
    """restore: agents stopped or downgraded by this budget are restored when a new period
    starts; keep: they stay until a person restores them. Defaults to restore."""
    notifications: Notifications = Field(default_factory=Notifications)
    """Finance's channels, which the stages refer to by name; Secrets are read from the
    budget's namespace (ClusterAgentBudget: from the operator's namespace)."""
    metrics_backend_ref: MetricsBackendRef | None = None
    """The MetricsBackend (in the budget's namespace) or ClusterMetricsBackend spend is read
    from (see docs/multi-tenant-metrics.md). Defaults to the operator's backend."""


class ClusterAgentBudgetSpec(AgentBudgetSpec):
    namespaces: list[NamespaceName] = Field(default_factory=list, max_length=MAX_NAMESPACES)
    """Namespaces whose agents count. Set namespaces, namespaceSelector or both (either
    matches)."""
    namespace_selector: LabelSelector | None = None
    """Namespaces, by their labels, whose agents count (e.g. team: payments)."""


class AgentSpend(Model):
    agent: str
    """namespace/name of the agent."""
    usd: float
    """Spend so far in the period."""


class HeldStages(Model):
    stages: list[str]
    """Stages reached and held."""
    agents: list[str] | None = None
    """namespace/name of the agents holding them (perAgent); unset for the total's."""


class BudgetStatus(Model):
    observed_generation: int | None = None
    """The spec generation last evaluated."""
    conditions: list[StatusCondition] = Field(default_factory=list)
    """Ready (the spec is valid and evaluated), MetricsAvailable (spend could be read),
    ActionsLimited (a response could not be applied to some agents as asked, e.g. downgrade
    without model tiers) and, with costSource priceList, Priced (False, UnpricedModels:
    tokens of the models named have no price, so spend is a lower bound)."""
    period_start: Timestamp | None = None
    """Start of the current period."""
    period_end: Timestamp | None = None
    """End of the current period (calendar periods)."""
    spend_usd: float | None = Field(default=None, alias="spendUSD")
    """Spend so far in the period (perAgent: the sum over agents)."""
    forecast_usd: float | None = Field(default=None, alias="forecastUSD")
    """Projected spend at the period's end from the recent burn rate."""
    burn_usd_per_hour: float | None = Field(default=None, alias="burnUSDPerHour")
    """The burn rate over forecastWindow, in USD per hour."""
    stage: str = ""
    """The furthest stage reached this period (perAgent: by any agent), empty for none."""
    agents: int = 0
    """Agents the budget selects."""
    top_agents: list[AgentSpend] = Field(default_factory=list, max_length=MAX_TOP_AGENTS)
    """The biggest spenders of the period, most first."""
    held_stages: list[HeldStages] | None = None
    """Rolling periods: the stages reached, grouped by the agents that reached them
    (perAgent) or for the total. A stage stays reached until spend falls below 90% of its
    threshold; a restarted operator reads this back so that it keeps holding them."""
    last_evaluation_time: Timestamp | None = None
    """When the budget was last evaluated."""


class AgentBudget(Model):
    """A cost ceiling finance owns for the agents of one namespace."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["AgentBudget"] = "AgentBudget"
    """AgentBudget"""
    metadata: dict[str, object] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentBudgetSpec
    """The period, the ceiling and the staged responses."""
    status: BudgetStatus | None = None
    """Written by the operator."""


class ClusterAgentBudget(Model):
    """A cost ceiling finance owns for agents across namespaces (a team, a cost centre)."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["ClusterAgentBudget"] = "ClusterAgentBudget"
    """ClusterAgentBudget"""
    metadata: dict[str, object] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: ClusterAgentBudgetSpec
    """The namespaces, the period, the ceiling and the staged responses."""
    status: BudgetStatus | None = None
    """Written by the operator."""


class PriceEntry(Model):
    model: Name
    """The model id as the agents' metrics label it (gpt-4o-mini); a dated snapshot without
    an entry of its own is priced as its base model."""
    input: float = Field(ge=0, allow_inf_nan=False)
    """USD per million input tokens."""
    output: float = Field(ge=0, allow_inf_nan=False)
    """USD per million output tokens."""
    cached_input: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """USD per million input tokens served from the provider's cache; unset means no
    discount."""


class ModelPriceListSpec(Model):
    prices: list[PriceEntry] = Field(
        default_factory=list,
        max_length=MAX_PRICES,
        # A list map keyed by model: the API server refuses a model listed twice without
        # a CEL rule (whose estimated cost over 500 entries exceeds the server's budget).
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["model"],
        },
    )
    """Prices per model, each model once; they replace the built-in table's entry of the
    same model."""
    include_defaults: bool = True
    """Price models this list does not name by the SDK's built-in table (dated in the
    operator's docs). Defaults to true."""


class ModelPriceListStatus(Model):
    observed_generation: int | None = None
    """The spec generation last read."""
    conditions: list[StatusCondition] = Field(default_factory=list)
    """Ready: the list is valid and in use."""
    models: int = 0
    """Models priced, built-in ones included."""
    unpriced_models: list[str] | None = Field(default=None, max_length=MAX_NAMED_MODELS)
    """Models with tokens in budgets that use this list and that it does not price
    (sorted, at most 10): add them to spec.prices. Their tokens count nothing, so those
    budgets' spend is a lower bound (their condition Priced says so too)."""


class ModelPriceList(Model):
    """What tokens cost, per model: the one price list budgets with costSource priceList
    use, so that a price change applies to the whole fleet at once."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["ModelPriceList"] = "ModelPriceList"
    """ModelPriceList"""
    metadata: dict[str, object] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: ModelPriceListSpec
    """The prices."""
    status: ModelPriceListStatus | None = None
    """Written by the operator."""
