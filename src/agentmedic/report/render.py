"""The fleet report for machines (JSON, CSV) and for people (a rich table).

JSON schema ``agentmedic.io/fleet-report/v1`` (keys always present; ``null`` is no data,
never 0; measured numbers are not rounded, scores are; agents dearest first)::

    {
      "schema": "agentmedic.io/fleet-report/v1",
      "at": "2025-08-15T12:00:00Z",            # the instant evaluated, RFC 3339 UTC
      "window": "24h", "windowSeconds": 86400,
      "namespace": str | null,                  # the --namespace filter
      "fleet": {
        "agents": int, "activeAgents": int,     # active: at least one execution
        "executions": float, "costUSD": float | null, "successRate": float | null,
        "latencyP95MedianMs": float | null,     # median of the agents' p95 latencies
        "tierBoundsMs": {"fast": float | null, "slow": float | null} | null
                        # p95 <= fast: fast; >= slow: slow; null: nobody in that tier
      },
      "agents": [{
        "namespace": str, "agent": str, "model": str | null,
        "executions": float, "costUSD": float | null, "costShare": float | null,
        "costPerExecution": float | null, "successRate": float | null,
        "errorRate": float | null, "latencyP95Ms": float | null,
        "tokensPerExecution": float | null, "tier": "fast" | "normal" | "slow" | null,
        "anomalies": [{"metric": str, "value": float, "fleetMedian": float, "score": float}],
        "scores": {"costPerExecution": float, "errorRate": float, "latencyP95Ms": float,
                   "tokensPerExecution": float},   # robust z-scores; a key is absent when
                                                   # the agent was not compared on it
        "slowestTool": TOOL | null, "mostErrorProneTool": TOOL | null
      }],
      "tools": {"slowest": [TOOL_OF_AGENT], "mostErrorProne": [TOOL_OF_AGENT]},
      "method": {"tiers": str, "anomalies": str, "minExecutions": int, "minToolCalls": int},
      "warnings": [str], "queries": int
    }
    TOOL          = {"tool": str, "calls": float | null, "errorRate": float | null,
                     "latencyP95Ms": float | null}
    TOOL_OF_AGENT = TOOL + {"namespace": str, "agent": str}

CSV: one row per agent, the agent fields flattened (anomalies as ``metric;metric``,
tools as name and value columns), a header row first.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.report.fleet import TIER_MIN_GAP_MS, AgentRow, FleetReport, ToolStat
from agentmedic.report.stats import (
    ANOMALY_THRESHOLD,
    MAD_FLOOR,
    MIN_AGENTS_FOR_ANOMALIES,
    MIN_AGENTS_FOR_TIERS,
    MIN_RELATIVE_GAP,
    SCORE_CAP,
    TIER_MIN_GAP,
)

__all__ = ["CSV_COLUMNS", "SCHEMA", "to_csv", "to_json_dict", "to_table"]

SCHEMA = "agentmedic.io/fleet-report/v1"

TIERS_METHOD = (
    f"natural breaks in the agents' p95 latencies: a boundary only in a gap of at least "
    f"{TIER_MIN_GAP:.0%} and {TIER_MIN_GAP_MS:g} ms between neighbouring values, at most one "
    "below the median agent (fast) and one above (slow), the pair leaving the tightest tiers "
    "in log latency; the median agent's tier is normal (agents with at least minExecutions "
    f"executions; at least {MIN_AGENTS_FOR_TIERS} such agents)"
)
ANOMALY_METHOD = (
    f"robust z-score (x-median)/max(1.4826*MAD, {MAD_FLOOR:.0%} of the median, a per-metric "
    f"floor) above {ANOMALY_THRESHOLD}, and x at least {MIN_RELATIVE_GAP:.0%} of the median "
    "(and a per-metric minimum, 5 percentage points for the error rate) above the median; "
    f"over the agents with at least minExecutions executions (at least "
    f"{MIN_AGENTS_FOR_ANOMALIES}); high side only, for cost per execution, error rate, p95 "
    f"latency and tokens per execution; scores rounded to 2 decimals, capped at {SCORE_CAP:g}"
)

_SCORE_KEYS = {
    "cost_per_execution": "costPerExecution",
    "error_rate": "errorRate",
    "latency_p95_ms": "latencyP95Ms",
    "tokens_per_execution": "tokensPerExecution",
}

CSV_COLUMNS = [
    "namespace",
    "agent",
    "model",
    "executions",
    "cost_usd",
    "cost_share",
    "cost_per_execution",
    "success_rate",
    "error_rate",
    "latency_p95_ms",
    "tokens_per_execution",
    "tier",
    "anomalies",
    "slowest_tool",
    "slowest_tool_p95_ms",
    "most_error_prone_tool",
    "most_error_prone_tool_error_rate",
]


def _rfc3339(report: FleetReport) -> str:
    return report.at.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{report.at.microsecond:06d}Z" if report.at.microsecond else "Z"
    )


def _tool(stat: ToolStat | None, *, with_agent: bool = False) -> dict[str, Any] | None:
    if stat is None:
        return None
    out: dict[str, Any] = {}
    if with_agent:
        out["namespace"] = stat.agent.namespace
        out["agent"] = stat.agent.name
    out.update(
        tool=stat.tool,
        calls=stat.calls,
        errorRate=stat.error_rate,
        latencyP95Ms=stat.latency_p95_ms,
    )
    return out


def _agent(row: AgentRow) -> dict[str, Any]:
    return {
        "namespace": row.agent.namespace,
        "agent": row.agent.name,
        "model": row.model,
        "executions": row.executions,
        "costUSD": row.cost_usd,
        "costShare": row.cost_share,
        "costPerExecution": row.cost_per_execution,
        "successRate": row.success_rate,
        "errorRate": row.error_rate,
        "latencyP95Ms": row.latency_p95_ms,
        "tokensPerExecution": row.tokens_per_execution,
        "tier": row.tier,
        "anomalies": [
            {"metric": a.metric, "value": a.value, "fleetMedian": a.fleet_median, "score": a.score}
            for a in row.anomalies
        ],
        "scores": {_SCORE_KEYS[m]: score for m, score in row.scores.items()},
        "slowestTool": _tool(row.slowest_tool),
        "mostErrorProneTool": _tool(row.most_error_prone_tool),
    }


def to_json_dict(report: FleetReport) -> dict[str, Any]:
    """The report as the documented JSON structure (``json.dumps`` it)."""
    fleet = report.fleet
    bounds = fleet.tier_bounds_ms
    return {
        "schema": SCHEMA,
        "at": _rfc3339(report),
        "window": format_duration(report.window),
        "windowSeconds": report.window.total_seconds(),
        "namespace": report.namespace,
        "fleet": {
            "agents": fleet.agents,
            "activeAgents": fleet.active_agents,
            "executions": fleet.executions,
            "costUSD": fleet.cost_usd,
            "successRate": fleet.success_rate,
            "latencyP95MedianMs": fleet.latency_p95_median_ms,
            "tierBoundsMs": {"fast": bounds[0], "slow": bounds[1]} if bounds else None,
        },
        "agents": [_agent(r) for r in report.agents],
        "tools": {
            "slowest": [_tool(s, with_agent=True) for s in report.slowest_tools],
            "mostErrorProne": [_tool(s, with_agent=True) for s in report.most_error_prone_tools],
        },
        "method": {
            "tiers": TIERS_METHOD,
            "anomalies": ANOMALY_METHOD,
            "minExecutions": report.min_executions,
            "minToolCalls": report.min_tool_calls,
        },
        "warnings": list(report.warnings),
        "queries": report.queries,
    }


def _csv_value(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(report: FleetReport) -> str:
    """One row per agent (see :data:`CSV_COLUMNS`); empty cells are no data."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.agents:
        slow, failing = r.slowest_tool, r.most_error_prone_tool
        writer.writerow(
            [
                _csv_value(v)
                for v in (
                    r.agent.namespace,
                    r.agent.name,
                    r.model,
                    r.executions,
                    r.cost_usd,
                    r.cost_share,
                    r.cost_per_execution,
                    r.success_rate,
                    r.error_rate,
                    r.latency_p95_ms,
                    r.tokens_per_execution,
                    r.tier,
                    ";".join(a.metric for a in r.anomalies) or None,
                    slow.tool if slow else None,
                    slow.latency_p95_ms if slow else None,
                    failing.tool if failing else None,
                    failing.error_rate if failing else None,
                )
            ]
        )
    return buffer.getvalue()


# -- for people --------------------------------------------------------------------------------

_ANOMALY_WORDS = {
    "cost_per_execution": "cost/exec",
    "error_rate": "errors",
    "latency_p95_ms": "latency",
    "tokens_per_execution": "tokens",
}


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _tier_note(bounds: tuple[float | None, float | None] | None) -> str:
    if bounds is None:
        return ""
    fast, slow = bounds
    if fast is None and slow is None:
        return f"; tiers: everyone normal (no gap of {TIER_MIN_GAP:.0%} between p95s)"
    parts = []
    if fast is not None:
        parts.append(f"fast <= {_ms(fast)}")
    if slow is not None:
        parts.append(f"slow >= {_ms(slow)}")
    return "; tiers: " + ", ".join(parts)


_AGENT_COLUMNS = (
    ("Agent", "left"),
    ("Model", "left"),
    ("Cost", "right"),
    ("Share", "right"),
    ("Execs", "right"),
    ("Success", "right"),
    ("p95", "right"),
    ("Tok/exec", "right"),
    ("Tier", "left"),
    ("Flags", "left"),
    ("Slowest tool", "left"),
)
_WIDE_COLUMNS = (("Cost/exec", "right"), ("Errors", "right"), ("Most errors", "left"))


def to_table(
    report: FleetReport,
    *,
    rows: list[AgentRow] | None = None,
    limit: int = 0,
    wide: bool = False,
) -> Any:
    """A rich renderable (a ``Group`` of tables and notes) for a terminal.

    ``rows`` overrides the order (see :func:`agentmedic.report.fleet.sort_rows`); ``limit``
    shows only that many agents (0: all); ``wide`` adds cost per execution, error rate and
    the most error-prone tool (``-o wide``).
    """
    from rich.console import Group
    from rich.text import Text

    fleet = report.fleet
    shown = list(report.agents if rows is None else rows)
    hidden = len(shown) - limit if limit and len(shown) > limit else 0
    if hidden:
        shown = shown[:limit]
    parts: list[Any] = [_agents_table(report, shown, wide)]
    if hidden:
        parts.append(Text(f"... and {hidden} more agents (use --limit 0 to show all)", "dim"))
    parts.append(
        Text(
            f"Fleet: {_usd(fleet.cost_usd)} over {_count(fleet.executions)} executions, "
            f"success {_pct(fleet.success_rate)}, median p95 {_ms(fleet.latency_p95_median_ms)}"
            + _tier_note(fleet.tier_bounds_ms)
        )
    )
    parts.extend(_tool_tables(report))
    flagged = sum(1 for r in report.agents if r.anomalies)
    parts.append(
        Text(
            f"Flags: {flagged} agent(s) far above the fleet (robust z-score > "
            f"{ANOMALY_THRESHOLD} and at least {MIN_RELATIVE_GAP:.0%} above the median; "
            f"agents with >= {report.min_executions} executions).",
            "dim",
        )
    )
    parts.extend(Text(f"warning: {w}", "yellow") for w in report.warnings)
    return Group(*parts)


def _agents_table(report: FleetReport, shown: list[AgentRow], wide: bool) -> Any:
    from rich.table import Table

    fleet = report.fleet
    where = f"namespace {report.namespace}" if report.namespace else "all namespaces"
    title = (
        f"Fleet: {fleet.agents} agents ({fleet.active_agents} active), {where}, "
        f"last {format_duration(report.window)} to {_rfc3339(report)}"
    )
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in (*_AGENT_COLUMNS, *(_WIDE_COLUMNS if wide else ())):
        table.add_column(name, justify=justify)
    for r in shown:
        table.add_row(*_agent_cells(report, r, wide))
    return table


def _agent_cells(report: FleetReport, r: AgentRow, wide: bool) -> list[Any]:
    """One agent's row: figures, with the success rate, tier and flags coloured."""
    from rich.text import Text

    success = Text(_pct(r.success_rate))
    if r.success_rate is not None and r.success_rate < 0.9:
        success.stylize("red" if r.success_rate < 0.8 else "yellow")
    slow = r.slowest_tool
    cells: list[Any] = [
        r.agent.name if report.namespace else str(r.agent).lstrip("/"),
        r.model or "-",
        _usd(r.cost_usd),
        _pct(r.cost_share),
        _count(r.executions),
        success,
        _ms(r.latency_p95_ms),
        _count(r.tokens_per_execution),
        Text(r.tier or "-", style={"fast": "green", "slow": "red"}.get(r.tier or "", "")),
        Text(", ".join(_ANOMALY_WORDS[a.metric] for a in r.anomalies), style="bold red"),
        f"{slow.tool} {_ms(slow.latency_p95_ms)}" if slow else "-",
    ]
    if wide:
        erring = r.most_error_prone_tool
        cells += [
            _usd(r.cost_per_execution),
            _pct(r.error_rate),
            f"{erring.tool} {_pct(erring.error_rate)}" if erring else "-",
        ]
    return cells


def _tool_tables(report: FleetReport) -> list[Any]:
    """The fleet's slowest and most error-prone tools, a table each where there are any."""
    from rich.table import Table

    out: list[Any] = []
    for heading, stats, column in (
        ("Slowest tools (p95)", report.slowest_tools, "p95"),
        ("Most error-prone tools", report.most_error_prone_tools, "Errors"),
    ):
        if not stats:
            continue
        tools = Table(title=heading, title_justify="left", header_style="bold")
        for name in ("Agent", "Tool", "Calls", column):
            tools.add_column(name, justify="right" if name in ("Calls", column) else "left")
        for s in stats:
            value = _ms(s.latency_p95_ms) if column == "p95" else _pct(s.error_rate)
            tools.add_row(str(s.agent).lstrip("/"), s.tool, _count(s.calls), value)
        out.append(tools)
    return out
