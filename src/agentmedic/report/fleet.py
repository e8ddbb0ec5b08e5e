"""The fleet report: every agent's spend, reliability and speed, against the fleet's.

Two steps, as everywhere in agentmedic: :func:`gather` asks the metrics backend (one
instant query per metric for the whole fleet, grouped by agent and namespace; ten queries
whatever the number of agents), then :func:`analyse`, a pure function, turns the numbers
into a :class:`FleetReport`: shares of spend, success rates, performance tiers, anomaly
flags and the tools that hold agents back (:mod:`agentmedic.report.stats` says how tiers
and anomalies are computed).

Where numbers come from (all over the report's window, at its instant):

- executions, spend, success rate, p95 latency, tokens per execution: the metric
  catalog's built-in metrics (``executions``, ``cost_usd``, ``success_rate``,
  ``latency_p95_ms``, ``tokens_per_execution``), so an operator's catalog overrides apply;
  error rate is ``1 - success_rate``, cost per execution ``cost_usd / executions``;
- the current model: ``agent_info`` at the instant (what the SDK says the agent runs
  now); for agents without it, the model with the most executions in the window;
- per tool: ``tool_latency_p95_ms`` and ``tool_error_rate`` grouped by tool as well, and
  the calls from ``agent_tool_calls_total``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from agentmedic.api.metric_names import AGENT_INFO, EXECUTIONS_TOTAL, TOOL_CALLS_TOTAL
from agentmedic.engine.series import AgentId
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    Catalog,
    MetricsBackend,
    MetricsError,
    QueryResult,
    promql,
)
from agentmedic.report._queries import ProgressCallback, bounded
from agentmedic.report.stats import Floors, Tier, anomalies, quantile, tiers

__all__ = [
    "AgentRow",
    "Anomaly",
    "FleetData",
    "FleetQuery",
    "FleetReport",
    "FleetSummary",
    "ToolStat",
    "analyse",
    "gather",
    "sort_rows",
]

AnomalyMetric = Literal[
    "cost_per_execution", "error_rate", "latency_p95_ms", "tokens_per_execution"
]
ANOMALY_METRICS: tuple[AnomalyMetric, ...] = (
    "cost_per_execution",
    "error_rate",
    "latency_p95_ms",
    "tokens_per_execution",
)
"""What anomalies are looked for in; only the high side is flagged (cheap, reliable, fast
and frugal agents are not a problem). Per-execution measures, so a busy agent is not an
outlier for being busy."""

ANOMALY_FLOORS: dict[AnomalyMetric, Floors] = {
    "cost_per_execution": Floors(scale=1e-6, gap=1e-5),
    "error_rate": Floors(scale=0.01, gap=0.05),
    "latency_p95_ms": Floors(scale=10.0, gap=250.0),
    "tokens_per_execution": Floors(scale=1.0, gap=50.0),
}
"""Absolute floors per metric (see :mod:`agentmedic.report.stats`): the error rate's are what
matters most, since most agents' median error rate is 0 and the relative gap is then no
guard; an agent needs at least 5 percentage points more errors than the fleet's median."""

TIER_MIN_GAP_MS = 100.0
"""Below this, a gap between p95 latencies is not a tier boundary, however large relative."""

CATALOG_METRICS = (
    "executions",
    "cost_usd",
    "success_rate",
    "latency_p95_ms",
    "tokens_per_execution",
)


@dataclass(frozen=True)
class FleetQuery:
    """Which agents and which time."""

    at: datetime
    """The instant the report is computed at (timezone-aware)."""
    window: timedelta
    namespace: str | None = None
    """Only agents whose metrics carry this namespace; all agents when ``None``."""
    agent_label: str = "agent"
    namespace_label: str | None = "namespace"
    """The metrics label holding the namespace; ``None`` when the metrics have none."""
    catalog: Catalog = DEFAULT_CATALOG

    def matcher(self) -> str:
        """The label matchers selecting the fleet's series."""
        agent = promql.check_label_name(self.agent_label, "agent label")
        parts = [f'{agent}!=""']
        if self.namespace is not None:
            if self.namespace_label is None:
                raise ValueError("a namespace filter needs a namespace label")
            label = promql.check_label_name(self.namespace_label, "namespace label")
            parts.append(f"{label}={promql.quote_string(self.namespace)}")
        return ", ".join(parts)

    def by(self, *extra: str) -> str:
        labels = [self.agent_label]
        if self.namespace_label is not None:
            labels.append(self.namespace_label)
        return ", ".join([*labels, *extra])

    def queries(self) -> dict[str, str]:
        """Every query the report sends, by name."""
        window = promql.duration(self.window)
        matcher = self.matcher()
        render = self.catalog.render
        out = {
            m: render(
                m, window=self.window, agents=matcher, agent_label=self.agent_label, by=self.by()
            )
            for m in CATALOG_METRICS
        }
        out["model_info"] = f"max by ({self.by('model')}) ({AGENT_INFO}{{ {matcher} }})"
        out["model_executions"] = (
            f"sum by ({self.by('model')}) (increase({EXECUTIONS_TOTAL}{{ {matcher} }}[{window}]))"
        )
        for metric in ("tool_latency_p95_ms", "tool_error_rate"):
            out[metric] = render(
                metric,
                window=self.window,
                agents=matcher,
                agent_label=self.agent_label,
                by=self.by("tool"),
            )
        out["tool_calls"] = (
            f"sum by ({self.by('tool')}) (increase({TOOL_CALLS_TOTAL}{{ {matcher} }}[{window}]))"
        )
        return out


@dataclass
class FleetData:
    """The raw answers, joined to agents; NaN (no data) is left out."""

    values: dict[str, dict[AgentId, float]] = field(default_factory=dict)
    """Catalog metric → agent → value."""
    model_info: dict[AgentId, str] = field(default_factory=dict)
    model_executions: dict[AgentId, dict[str, float]] = field(default_factory=dict)
    tools: dict[tuple[AgentId, str], dict[str, float]] = field(default_factory=dict)
    """(agent, tool) → ``calls``, ``error_rate``, ``latency_p95_ms``."""
    warnings: list[str] = field(default_factory=list)
    queries: int = 0


async def gather(
    backend: MetricsBackend,
    query: FleetQuery,
    *,
    max_concurrency: int = 4,
    on_progress: ProgressCallback | None = None,
) -> FleetData:
    """Send the report's queries (concurrently, at most ``max_concurrency`` at a time).

    A failed query leaves its part of the report empty with a warning; if the executions
    query fails there is no fleet to report on and its error is raised.
    """
    texts = query.queries()
    data = FleetData(queries=len(texts))

    async def ask(text: str) -> QueryResult | MetricsError:
        try:
            return await backend.query(text, query.at)
        except MetricsError as exc:
            return exc

    results = await bounded(
        [(name, partial(ask, text)) for name, text in texts.items()],
        max_concurrency=max_concurrency,
        on_progress=on_progress,
    )
    answers = dict(zip(texts, results, strict=True))
    executions = answers["executions"]
    if isinstance(executions, MetricsError):
        raise executions
    for name, answer in answers.items():
        if isinstance(answer, MetricsError):
            data.warnings.append(f"{name}: query failed: {answer}")
            continue
        data.warnings.extend(f"{name}: {w}" for w in answer.warnings)
        if answer.result_type != "vector":
            data.warnings.append(f"{name}: expected a vector, got a {answer.result_type}")
            continue
        infinite = 0
        for sample in answer.samples:
            if not math.isfinite(sample.value):
                # NaN is nothing in the window; ±Inf is no number a report can rank.
                infinite += sample.value in (math.inf, -math.inf)
                continue
            agent = _agent(sample.labels, query)
            if agent is None:
                continue
            if name in CATALOG_METRICS:
                data.values.setdefault(name, {})[agent] = sample.value
            elif name == "model_info":
                model = sample.labels.get("model")
                if model:
                    data.model_info[agent] = model
            elif name == "model_executions":
                model = sample.labels.get("model")
                if model:
                    data.model_executions.setdefault(agent, {})[model] = sample.value
            else:
                tool = sample.labels.get("tool")
                if tool:
                    stat = "calls" if name == "tool_calls" else name.removeprefix("tool_")
                    data.tools.setdefault((agent, tool), {})[stat] = sample.value
        if infinite:
            data.warnings.append(f"{name}: {infinite} infinite value(s) left out")
    return data


def _agent(labels: Mapping[str, str], query: FleetQuery) -> AgentId | None:
    name = labels.get(query.agent_label)
    if not name:
        return None
    namespace = labels.get(query.namespace_label, "") if query.namespace_label else ""
    return AgentId(namespace, name)


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolStat:
    """One tool of one agent over the window."""

    agent: AgentId
    tool: str
    calls: float | None
    error_rate: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True)
class Anomaly:
    """A value far above the fleet's: ``score`` is its robust z-score (rounded, capped)."""

    metric: AnomalyMetric
    value: float
    fleet_median: float
    score: float


@dataclass
class AgentRow:
    """One agent's line in the report; ``None`` is no data (never the same as 0)."""

    agent: AgentId
    model: str | None
    executions: float
    cost_usd: float | None
    cost_share: float | None
    cost_per_execution: float | None
    success_rate: float | None
    error_rate: float | None
    latency_p95_ms: float | None
    tokens_per_execution: float | None
    tier: Tier | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    scores: dict[AnomalyMetric, float] = field(default_factory=dict)
    """The robust z-score (rounded, capped) of each metric the agent was compared on."""
    slowest_tool: ToolStat | None = None
    most_error_prone_tool: ToolStat | None = None


@dataclass(frozen=True)
class FleetSummary:
    agents: int
    active_agents: int
    """Agents with at least one execution in the window."""
    executions: float
    cost_usd: float | None
    success_rate: float | None
    tier_bounds_ms: tuple[float | None, float | None] | None
    """The slowest p95 of the fast tier and the fastest of the slow tier (``None`` for an
    empty tier); ``None`` with too few agents for tiers."""
    latency_p95_median_ms: float | None


@dataclass
class FleetReport:
    at: datetime
    window: timedelta
    namespace: str | None
    fleet: FleetSummary
    agents: list[AgentRow]
    """Dearest first (then most executions, then name)."""
    slowest_tools: list[ToolStat]
    most_error_prone_tools: list[ToolStat]
    min_executions: int
    min_tool_calls: int
    warnings: list[str]
    queries: int


def analyse(
    data: FleetData,
    query: FleetQuery,
    *,
    min_executions: int = 20,
    min_tool_calls: int = 10,
    top: int = 5,
) -> FleetReport:
    """Turn gathered numbers into the report (pure).

    Agents with fewer than ``min_executions`` executions in the window get no tier and no
    anomaly flags (their ratios are noise) and do not shape the fleet's quantiles; tools
    with fewer than ``min_tool_calls`` calls are left out of the fleet's tool rankings.
    """
    rows = _agent_rows(data)
    qualified = [r for r in rows.values() if r.executions >= min_executions]
    bounds = _mark_tiers(rows, qualified)
    _mark_anomalies(rows, qualified)
    tool_stats = _tool_stats(data, rows)
    _attach_worst_tools(rows, tool_stats)
    ranked = [s for s in tool_stats if (s.calls or 0) >= min_tool_calls]
    slowest = sorted(
        (s for s in ranked if s.latency_p95_ms is not None),
        key=lambda s: (-(s.latency_p95_ms or 0.0), -(s.calls or 0.0), s.agent, s.tool),
    )[:top]
    failing = sorted(
        (s for s in ranked if s.error_rate),
        key=lambda s: (-(s.error_rate or 0.0), -(s.calls or 0.0), s.agent, s.tool),
    )[:top]
    ordered = sorted(
        rows.values(),
        key=lambda r: (-(r.cost_usd if r.cost_usd is not None else -1.0), -r.executions, r.agent),
    )
    return FleetReport(
        at=query.at,
        window=query.window,
        namespace=query.namespace,
        fleet=_summary(data, rows, qualified, bounds),
        agents=ordered,
        slowest_tools=slowest,
        most_error_prone_tools=failing,
        min_executions=min_executions,
        min_tool_calls=min_tool_calls,
        warnings=list(data.warnings),
        queries=data.queries,
    )


def _agent_rows(data: FleetData) -> dict[AgentId, AgentRow]:
    """One row per agent with an executions figure; ratios only where it ran."""
    values = data.values
    cost = values.get("cost_usd", {})
    success = values.get("success_rate", {})
    p95 = values.get("latency_p95_ms", {})
    tokens = values.get("tokens_per_execution", {})
    total_cost = sum(cost.values()) if cost else None
    rows: dict[AgentId, AgentRow] = {}
    for agent, n in values.get("executions", {}).items():
        agent_cost = cost.get(agent)
        rate = success.get(agent) if n > 0 else None
        rows[agent] = AgentRow(
            agent=agent,
            model=data.model_info.get(agent) or _dominant(data.model_executions.get(agent)),
            executions=n,
            cost_usd=agent_cost,
            cost_share=(
                agent_cost / total_cost
                if agent_cost is not None and total_cost is not None and total_cost > 0
                else None
            ),
            cost_per_execution=agent_cost / n if agent_cost is not None and n > 0 else None,
            success_rate=rate,
            error_rate=1.0 - rate if rate is not None else None,
            latency_p95_ms=p95.get(agent) if n > 0 else None,
            tokens_per_execution=tokens.get(agent) if n > 0 else None,
        )
    return rows


def _mark_tiers(
    rows: Mapping[AgentId, AgentRow], qualified: Sequence[AgentRow]
) -> tuple[float | None, float | None] | None:
    """Set each qualified agent's latency tier; returns the tier bounds."""
    agent_tiers, bounds = tiers(
        {r.agent: r.latency_p95_ms for r in qualified if r.latency_p95_ms is not None},
        min_gap=TIER_MIN_GAP_MS,
    )
    for agent, tier in agent_tiers.items():
        rows[agent].tier = tier
    return bounds


def _mark_anomalies(rows: Mapping[AgentId, AgentRow], qualified: Sequence[AgentRow]) -> None:
    """Score each qualified agent against the fleet and flag the outliers."""
    for metric in ANOMALY_METRICS:
        observed = {r.agent: v for r in qualified if (v := getattr(r, metric)) is not None}
        flagged, scores, median = anomalies(observed, ANOMALY_FLOORS[metric])
        for agent, score in scores.items():
            rows[agent].scores[metric] = score
        if median is None:
            continue
        for agent, score in flagged.items():
            rows[agent].anomalies.append(Anomaly(metric, observed[agent], median, score))


def _tool_stats(data: FleetData, rows: Mapping[AgentId, AgentRow]) -> list[ToolStat]:
    return [
        ToolStat(
            agent=agent,
            tool=tool,
            calls=stats.get("calls"),
            error_rate=stats.get("error_rate"),
            latency_p95_ms=stats.get("latency_p95_ms"),
        )
        for (agent, tool), stats in data.tools.items()
        if agent in rows
    ]


def _attach_worst_tools(rows: Mapping[AgentId, AgentRow], tool_stats: Sequence[ToolStat]) -> None:
    """Each agent's slowest and most error-prone tool among those it called."""
    for stat in tool_stats:
        if not stat.calls:
            continue
        row = rows[stat.agent]
        if stat.latency_p95_ms is not None and (
            row.slowest_tool is None or _slower(stat, row.slowest_tool)
        ):
            row.slowest_tool = stat
        if stat.error_rate and (
            row.most_error_prone_tool is None or _worse(stat, row.most_error_prone_tool)
        ):
            row.most_error_prone_tool = stat


def _summary(
    data: FleetData,
    rows: Mapping[AgentId, AgentRow],
    qualified: Sequence[AgentRow],
    bounds: tuple[float | None, float | None] | None,
) -> FleetSummary:
    cost = data.values.get("cost_usd", {})
    total_executions = sum(data.values.get("executions", {}).values())
    successes = sum(r.executions * r.success_rate for r in rows.values() if r.success_rate)
    latencies = [r.latency_p95_ms for r in qualified if r.latency_p95_ms is not None]
    return FleetSummary(
        agents=len(rows),
        active_agents=sum(1 for r in rows.values() if r.executions > 0),
        executions=total_executions,
        cost_usd=sum(cost.values()) if cost else None,
        success_rate=successes / total_executions if total_executions > 0 else None,
        tier_bounds_ms=bounds,
        latency_p95_median_ms=quantile(latencies, 0.5) if latencies else None,
    )


def _dominant(by_model: Mapping[str, float] | None) -> str | None:
    if not by_model:
        return None
    return max(sorted(by_model), key=lambda m: by_model[m])


def _slower(a: ToolStat, b: ToolStat) -> bool:
    return (a.latency_p95_ms or 0.0, a.calls or 0.0, b.tool) > (
        b.latency_p95_ms or 0.0,
        b.calls or 0.0,
        a.tool,
    )


def _worse(a: ToolStat, b: ToolStat) -> bool:
    return (a.error_rate or 0.0, a.calls or 0.0, b.tool) > (
        b.error_rate or 0.0,
        b.calls or 0.0,
        a.tool,
    )


def sort_rows(rows: Sequence[AgentRow], key: str) -> list[AgentRow]:
    """Rows sorted for display: ``cost`` (default order), ``executions``, ``errors``,
    ``latency`` (all largest first; no data last) or ``name``."""
    if key == "name":
        return sorted(rows, key=lambda r: r.agent)
    attribute = {
        "cost": "cost_usd",
        "executions": "executions",
        "errors": "error_rate",
        "latency": "latency_p95_ms",
    }[key]

    def order(row: AgentRow) -> tuple[bool, float, AgentId]:
        value = getattr(row, attribute)
        return (value is None, -(value or 0.0), row.agent)

    return sorted(rows, key=order)
