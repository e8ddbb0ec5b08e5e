"""The fleet's spend by team, namespace, agent or model, and where two cost sources disagree.

``agentmedic fleet`` asks two more instant queries over its window, whatever the fleet's
size: the agents' own cost (``agent_cost_usd_total``) and their tokens
(``agent_tokens_total`` by type), each summed by agent, namespace, model and the team
label. :func:`analyse_costs`, a pure function, then

- groups both figures by the chargeback's dimensions (:data:`agentmedic.report.cost.DIMENSIONS`,
  the same grouping and the same team rule: a series' own team label, else its
  Namespace's when the cluster was read), and
- prices each agent's tokens with a :class:`~agentmedic.metrics.pricing.PriceBook` and
  lists the agents whose reported cost and tokens x prices differ by more than a
  threshold relative to the reported cost, with both figures.

Figures here are Prometheus' ``increase()`` over a rolling window (extrapolated to the
window's edges, like every rate on a dashboard); both sources are extrapolated the same
way, so their ratio is sound. For invoices over calendar periods use ``agentmedic report
cost``, which is exact to the sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from agentmedic.api.metric_names import COST_USD_TOTAL, TOKENS_TOTAL
from agentmedic.engine.series import AgentId
from agentmedic.metrics import MetricsBackend, MetricsError, promql
from agentmedic.metrics.pricing import TOKEN_TYPES, PriceBook
from agentmedic.report._queries import ProgressCallback, bounded
from agentmedic.report.cost import DIMENSIONS, Dimension

__all__ = [
    "AgentCost",
    "CostGroup",
    "FleetCostData",
    "FleetCostQuery",
    "FleetCosts",
    "analyse_costs",
    "gather_costs",
]


@dataclass(frozen=True)
class FleetCostQuery:
    """The fleet's window and labels, and how to group."""

    at: datetime
    window: timedelta
    by: tuple[Dimension, ...] = ("agent",)
    namespace: str | None = None
    agent_label: str = "agent"
    namespace_label: str = "namespace"
    team_label: str = "team"
    namespace_teams: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Namespace → team from the Namespaces' labels, for series without a team label."""

    def label_of(self, dimension: Dimension) -> str:
        return {
            "team": self.team_label,
            "namespace": self.namespace_label,
            "agent": self.agent_label,
            "model": "model",
        }[dimension]

    def queries(self) -> dict[str, str]:
        """The two queries, by name; label names checked, values quoted."""
        for dimension in DIMENSIONS:
            promql.check_label_name(self.label_of(dimension), f"--{dimension}-label")
        matchers = [f'{self.agent_label}!=""']
        if self.namespace is not None:
            matchers.append(f"{self.namespace_label}={promql.quote_string(self.namespace)}")
        window = promql.duration(self.window)
        labels = [self.agent_label, self.namespace_label, "model", self.team_label]
        by = ", ".join(dict.fromkeys(labels))
        types = "|".join(promql.escape_regex(t) for t in sorted(TOKEN_TYPES))
        token_matchers = [*matchers, f"type=~{promql.quote_string(types)}"]
        return {
            "reported": (
                f"sum by ({by}) (increase({COST_USD_TOTAL}{{{', '.join(matchers)}}}[{window}]))"
            ),
            "tokens": (
                f"sum by ({by}, type) "
                f"(increase({TOKENS_TOTAL}{{{', '.join(token_matchers)}}}[{window}]))"
            ),
        }


SeriesLabels = tuple[tuple[str, str], ...]


@dataclass
class FleetCostData:
    """The two answers: (labels) → USD, and (labels, type) → tokens; NaN left out."""

    reported: dict[SeriesLabels, float] = field(default_factory=dict)
    tokens: dict[tuple[SeriesLabels, str], float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    queries: int = 0


async def gather_costs(
    backend: MetricsBackend,
    query: FleetCostQuery,
    *,
    max_concurrency: int = 2,
    on_progress: ProgressCallback | None = None,
) -> FleetCostData:
    """Send the two queries. A failure raises the backend's ``MetricsError``: a cost
    comparison with one side missing would flag every agent."""
    texts = query.queries()
    data = FleetCostData(queries=len(texts))
    answers = await bounded(
        [(name, partial(backend.query, text, query.at)) for name, text in texts.items()],
        max_concurrency=max_concurrency,
        on_progress=on_progress,
    )
    for name, answer in zip(texts, answers, strict=True):
        if answer.result_type != "vector":
            raise MetricsError(f"{name} cost query: expected a vector, got {answer.result_type}")
        data.warnings.extend(f"{name} cost: {w}" for w in answer.warnings)
        for sample in answer.samples:
            if not math.isfinite(sample.value):
                continue
            labels = dict(sample.labels)
            kind = labels.pop("type", "")
            labels.pop("__name__", None)
            key = tuple(sorted(labels.items()))
            if name == "reported":
                data.reported[key] = data.reported.get(key, 0.0) + sample.value
            else:
                slot = (key, kind)
                data.tokens[slot] = data.tokens.get(slot, 0.0) + sample.value
    return data


@dataclass(frozen=True)
class CostGroup:
    """One group's spend over the window."""

    key: tuple[str, ...]
    """The values of the ``by`` dimensions ("" where a series has none)."""
    reported_usd: float
    priced_usd: float
    unpriced_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentCost:
    """One agent's two figures and how far apart they are."""

    agent: AgentId
    reported_usd: float
    priced_usd: float
    gap: float | None
    """``(priced - reported) / reported``; ``inf`` when only tokens were priced;
    ``None`` when the agent has tokens of an unpriced model (no comparison)."""
    flagged: bool
    unpriced_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetCosts:
    by: tuple[Dimension, ...]
    groups: tuple[CostGroup, ...]
    """Dearest first (reported cost, then tokens x prices)."""
    agents: tuple[AgentCost, ...]
    """Every agent with either figure, largest gap first."""
    threshold: float
    prices_source: str
    total_reported_usd: float
    total_priced_usd: float
    warnings: tuple[str, ...]
    queries: int

    @property
    def disagreeing(self) -> tuple[AgentCost, ...]:
        return tuple(a for a in self.agents if a.flagged)


def _group(query: FleetCostQuery, labels: Mapping[str, str]) -> tuple[str, ...]:
    out = []
    for dimension in query.by:
        value = labels.get(query.label_of(dimension), "")
        if dimension == "team" and not value:
            value = query.namespace_teams.get(labels.get(query.namespace_label, ""), "")
        out.append(value)
    return tuple(out)


def _agent_of(query: FleetCostQuery, labels: Mapping[str, str]) -> AgentId:
    return AgentId(labels.get(query.namespace_label, ""), labels.get(query.agent_label, ""))


@dataclass
class _Sums:
    reported: float = 0.0
    priced: float = 0.0
    tokens: dict[tuple[str, str], float] = field(default_factory=dict)
    unpriced: set[str] = field(default_factory=set)


def _add_tokens(sums: _Sums, model: str, kind: str, count: float) -> None:
    sums.tokens[(model, kind)] = sums.tokens.get((model, kind), 0.0) + count


def analyse_costs(
    data: FleetCostData,
    query: FleetCostQuery,
    *,
    prices: PriceBook,
    prices_source: str,
    threshold: float = 0.05,
) -> FleetCosts:
    """Group both figures and compare them per agent (pure)."""
    groups: dict[tuple[str, ...], _Sums] = {}
    agents: dict[AgentId, _Sums] = {}
    for key, usd in data.reported.items():
        labels = dict(key)
        groups.setdefault(_group(query, labels), _Sums()).reported += usd
        agents.setdefault(_agent_of(query, labels), _Sums()).reported += usd
    for (key, kind), count in data.tokens.items():
        labels = dict(key)
        model = labels.get("model", "")
        _add_tokens(groups.setdefault(_group(query, labels), _Sums()), model, kind, count)
        _add_tokens(agents.setdefault(_agent_of(query, labels), _Sums()), model, kind, count)
    for sums in (*groups.values(), *agents.values()):
        sums.priced, unpriced = prices.spend(sums.tokens)
        sums.unpriced = set(unpriced)
    group_rows = sorted(
        (CostGroup(k, s.reported, s.priced, tuple(sorted(s.unpriced))) for k, s in groups.items()),
        key=lambda g: (-g.reported_usd, -g.priced_usd, g.key),
    )
    agent_rows = sorted(
        (_compare(agent, s, threshold) for agent, s in agents.items()),
        key=lambda a: (not a.flagged, -abs(a.gap or 0.0), a.agent),
    )
    return FleetCosts(
        by=query.by,
        groups=tuple(group_rows),
        agents=tuple(agent_rows),
        threshold=threshold,
        prices_source=prices_source,
        total_reported_usd=math.fsum(g.reported_usd for g in group_rows),
        total_priced_usd=math.fsum(g.priced_usd for g in group_rows),
        warnings=tuple(data.warnings),
        queries=data.queries,
    )


def _compare(agent: AgentId, sums: _Sums, threshold: float) -> AgentCost:
    unpriced = tuple(sorted(sums.unpriced))
    gap: float | None
    if unpriced:
        gap = None  # part of its tokens has no price: no honest comparison
    elif sums.reported > 0:
        gap = (sums.priced - sums.reported) / sums.reported
    else:
        gap = math.inf if sums.priced > 0 else 0.0
    flagged = gap is not None and abs(gap) > threshold
    return AgentCost(agent, sums.reported, sums.priced, gap, flagged, unpriced)
