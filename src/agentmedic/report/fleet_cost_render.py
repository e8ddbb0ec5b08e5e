"""The fleet's spend by group and its cost-source check, for machines and for people.

Added to the fleet report's JSON (``agentmedic.io/fleet-report/v1``; measured numbers not
rounded, like the rest of that schema)::

    "costCheck": {
      "threshold": float,                      # flag above this relative gap
      "prices": str,                           # where token prices came from
      "agents": int,                           # agents with either figure
      "disagreeing": [{"namespace": str, "agent": str,
                       "reportedUSD": float, "priceListUSD": float,
                       "gap": float | null}],  # (priceList - reported) / reported;
                                               # null: only tokens were priced
      "unpriced": [{"namespace": str, "agent": str, "models": [str]}],
      "queries": int
    } | null,                                  # null: the check's queries failed
    "groups": {                                # only with --by
      "by": ["team"],
      "rows": [{"key": {"team": str}, "reportedUSD": float, "priceListUSD": float,
                "unpricedModels": [str]}],     # dearest first
      "total": {"reportedUSD": float, "priceListUSD": float}
    }

The table and CSV show money in cents: each group is rounded half to even and the TOTAL
is the sum of the rounded rows, so the printed rows add up to the printed total.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from agentmedic.report.fleet_cost import AgentCost, FleetCosts

__all__ = [
    "cost_check_dict",
    "groups_csv",
    "groups_dict",
    "table_with_costs",
    "tables",
    "with_costs",
]

CENT = Decimal("0.01")


def _cents(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _gap(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def cost_check_dict(costs: FleetCosts | None) -> dict[str, Any] | None:
    if costs is None:
        return None
    return {
        "threshold": costs.threshold,
        "prices": costs.prices_source,
        "agents": len(costs.agents),
        "disagreeing": [
            {
                "namespace": a.agent.namespace,
                "agent": a.agent.name,
                "reportedUSD": a.reported_usd,
                "priceListUSD": a.priced_usd,
                "gap": _gap(a.gap),
            }
            for a in costs.disagreeing
        ],
        "unpriced": [
            {
                "namespace": a.agent.namespace,
                "agent": a.agent.name,
                "models": list(a.unpriced_models),
            }
            for a in costs.agents
            if a.unpriced_models
        ],
        "queries": costs.queries,
    }


def groups_dict(costs: FleetCosts) -> dict[str, Any]:
    return {
        "by": list(costs.by),
        "rows": [
            {
                "key": dict(zip(costs.by, g.key, strict=True)),
                "reportedUSD": g.reported_usd,
                "priceListUSD": g.priced_usd,
                "unpricedModels": list(g.unpriced_models),
            }
            for g in costs.groups
        ],
        "total": {"reportedUSD": costs.total_reported_usd, "priceListUSD": costs.total_priced_usd},
    }


def _rounded(costs: FleetCosts) -> tuple[list[tuple[Decimal, Decimal]], Decimal, Decimal]:
    rows = [(_cents(g.reported_usd), _cents(g.priced_usd)) for g in costs.groups]
    return rows, sum((r for r, _ in rows), Decimal(0)), sum((p for _, p in rows), Decimal(0))


def groups_csv(costs: FleetCosts) -> str:
    """A header, a row per group (cents), a ``TOTAL`` row that is the rows' sum."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*costs.by, "reported_usd", "price_list_usd", "unpriced_models"])
    rows, reported, priced = _rounded(costs)
    for group, (r, p) in zip(costs.groups, rows, strict=True):
        writer.writerow([*group.key, f"{r:f}", f"{p:f}", ";".join(group.unpriced_models)])
    writer.writerow(["TOTAL", *[""] * (len(costs.by) - 1), f"{reported:f}", f"{priced:f}", ""])
    return buffer.getvalue()


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}"


def _gap_text(agent: AgentCost) -> str:
    if agent.gap is None:
        return "unpriced"
    if math.isinf(agent.gap):
        return "no report"
    return f"{agent.gap:+.1%}"


def tables(costs: FleetCosts, *, with_groups: bool) -> list[Any]:
    """Rich renderables: the groups (with ``--by``), then the agents whose cost sources
    disagree."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    if with_groups:
        table = Table(
            title=f"Spend by {', '.join(costs.by)}",
            title_justify="left",
            header_style="bold",
        )
        for dimension in costs.by:
            table.add_column(dimension.capitalize(), overflow="fold")
        table.add_column("Reported", justify="right")
        table.add_column("Tokens x prices", justify="right")
        rows, reported, priced = _rounded(costs)
        for group, (r, p) in zip(costs.groups, rows, strict=True):
            table.add_row(*(k or "(none)" for k in group.key), _usd(r), _usd(p))
        table.add_section()
        table.add_row(
            Text("TOTAL", "bold"), *[""] * (len(costs.by) - 1), _usd(reported), _usd(priced)
        )
        out.append(table)
    flagged = costs.disagreeing
    words = (
        f"{len(flagged)} agent(s) whose reported cost and tokens x prices differ by more "
        f"than {costs.threshold:.1%} of the reported cost (prices: {costs.prices_source})"
    )
    if not flagged:
        out.append(Text(words + ".", "dim"))
        return out
    table = Table(title=words, title_justify="left", header_style="bold")
    for name, justify in (
        ("Namespace", "left"),
        ("Agent", "left"),
        ("Reported", "right"),
        ("Tokens x prices", "right"),
        ("Gap", "right"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for a in flagged:
        table.add_row(
            a.agent.namespace,
            a.agent.name,
            f"${a.reported_usd:,.4f}",
            f"${a.priced_usd:,.4f}",
            Text(_gap_text(a), "bold red"),
        )
    out.append(table)
    return out


def with_costs(
    document: dict[str, Any], costs: FleetCosts | None, *, grouped: bool
) -> dict[str, Any]:
    """The fleet report's JSON with ``costCheck`` (and ``groups`` when grouped)."""
    out = {**document, "costCheck": cost_check_dict(costs)}
    if grouped and costs is not None:
        out["groups"] = groups_dict(costs)
    return out


def table_with_costs(table: Any, costs: FleetCosts | None, *, grouped: bool) -> Any:
    """The fleet report's table followed by the groups and the cost-source check."""
    from rich.console import Group

    if costs is None:
        return table
    return Group(table, *tables(costs, with_groups=grouped))
