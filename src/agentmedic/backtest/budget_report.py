"""The budget backtest for machines (JSON), people (a table) and the plot (panels).

JSON, under ``budgets`` in the backtest's document (``schemaVersion`` 1; money unrounded
USD, times RFC 3339 UTC)::

    "budgets": [{
      "kind": "AgentBudget" | "ClusterAgentBudget", "name": str, "namespace": str | null,
      "source": str,                               # FILE or FILE#N
      "period": str, "timeZone": str, "limitUSD": float,
      "appliesTo": "total" | "perAgent", "costSource": "reported" | "priceList",
      "prices": str | null,                        # priceList: where prices came from
      "namespaces": [str], "agents": [str],        # agents in scope with history
      "crossings": [{
        "stage": str, "atPercent": float, "onForecast": bool,
        "response": "notify" | "downgrade" | "stop", "channels": [str],
        "at": str, "agent": str | null,            # null: the selection's total
        "trigger": "spend" | "forecast",           # what reached the threshold
        "spendUSD": float, "forecastUSD": float | null, "thresholdUSD": float,
        "periodStart": str, "beforeRange": bool,   # reached before --from, in its period
        "limitAt": str | null                      # when the burn rate reaches limitUSD
      }],
      "periods": [{"start": str, "end": str, "agent": str | null, "spendUSD": float,
                   "complete": bool, "stages": [str]}],   # calendar periods only
      "warnings": [str]
    }]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agentmedic.api.budget import BudgetStage
from agentmedic.api.units import format_usd
from agentmedic.backtest.budget_history import BudgetRun
from agentmedic.backtest.budgets import TOTAL, BudgetReplay, Crossing
from agentmedic.backtest.plotdata import MAX_LINES, Draft, Label, Marker, Panel, place_labels
from agentmedic.engine.series import AgentId

__all__ = ["budget_panels", "budgets_json", "crossing_text", "render_budgets"]

_KINDS = {"notify": "budgetNotify", "downgrade": "budgetDowngrade", "stop": "budgetStop"}
"""Marker kinds of the stage responses (their shapes are in the plot's legend)."""


def _t(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _crossing(c: Crossing) -> dict[str, Any]:
    return {
        "stage": c.stage.name,
        "atPercent": c.stage.at_percent,
        "onForecast": c.stage.on_forecast,
        "response": c.stage.response.value,
        "channels": list(c.stage.channels),
        "at": _t(c.at),
        "agent": None if c.agent is None else str(c.agent),
        "trigger": c.trigger,
        "spendUSD": c.spend_usd,
        "forecastUSD": _num(c.forecast_usd),
        "thresholdUSD": c.threshold_usd,
        "periodStart": _t(c.period_start),
        "beforeRange": c.before_range,
        "limitAt": _t(c.limit_at),
    }


def budgets_json(run: BudgetRun) -> list[dict[str, Any]]:
    out = []
    for r in run.replays:
        spec = r.doc.spec
        out.append(
            {
                "kind": r.doc.kind,
                "name": r.doc.name,
                "namespace": r.doc.namespace,
                "source": r.doc.where,
                "period": spec.period,
                "timeZone": spec.time_zone,
                "limitUSD": spec.limit_usd,
                "appliesTo": spec.applies_to.value,
                "costSource": spec.cost_source.value,
                "prices": r.prices,
                "namespaces": list(r.doc.namespaces),
                "agents": [str(a) for a in r.agents],
                "crossings": [_crossing(c) for c in r.crossings],
                "periods": [
                    {
                        "start": _t(p.start),
                        "end": _t(p.end),
                        "agent": None if p.agent is None else str(p.agent),
                        "spendUSD": p.spend_usd,
                        "complete": p.complete,
                        "stages": list(p.stages),
                    }
                    for p in r.periods
                ],
                "warnings": list(r.warnings),
            }
        )
    return out


def crossing_text(c: Crossing) -> str:
    """``warn (80%) notify`` with ``(forecast)`` when the forecast reached it."""
    text = f"{c.stage.name} {c.stage.at_percent:g}% {c.stage.response.value}"
    return text + (" (forecast)" if c.trigger == "forecast" else "")


def render_budgets(run: BudgetRun, console: Any) -> None:
    """One table per budget: when each stage would have acted."""
    from rich.table import Table
    from rich.text import Text

    for r in run.replays:
        spec = r.doc.spec
        title = (
            f"{r.doc.label}: {format_usd(spec.limit_usd)} per {spec.period} "
            f"({spec.time_zone}), {spec.applies_to.value}, cost {spec.cost_source.value}"
        )
        table = Table(title=title, title_justify="left", header_style="bold")
        for name, justify in (
            ("When (UTC)", "left"),
            ("Stage", "left"),
            ("Response", "left"),
            ("Agent", "left"),
            ("Trigger", "left"),
            ("Spend", "right"),
            ("Forecast", "right"),
            ("Threshold", "right"),
        ):
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for c in r.crossings:
            table.add_row(
                f"{c.at:%Y-%m-%d %H:%M}" + (" (before --from)" if c.before_range else ""),
                f"{c.stage.name} ({c.stage.at_percent:g}%)",
                c.stage.response.value,
                "total" if c.agent is None else str(c.agent),
                c.trigger,
                format_usd(c.spend_usd),
                "-" if c.forecast_usd is None else format_usd(c.forecast_usd),
                format_usd(c.threshold_usd),
            )
        console.print(table)
        if not r.crossings:
            console.print(Text("no stage would have been reached in the range", "dim"))
        for p in r.periods:
            state = "" if p.complete else " (to date)"
            who = "" if p.agent is None else f" {p.agent}"
            console.print(
                Text(
                    f"period from {p.start:%Y-%m-%d %H:%M}Z{who}: "
                    f"{format_usd(p.spend_usd)}{state}; stages: {', '.join(p.stages) or '-'}",
                    "dim",
                )
            )
        for w in r.warnings:
            console.print(Text(f"warning: {w}", "yellow"))


def _line_of(c: Crossing) -> AgentId:
    return AgentId("", TOTAL) if c.agent is None else c.agent


def _marker_y(r: BudgetReplay, c: Crossing, index: int) -> float:
    line = r.lines.get(_line_of(c))
    if line is None or not 0 <= index < len(line):
        return c.spend_usd  # an agent not drawn: its marker at its spend
    return line[index]


def _thresholds(limit: float, stages: Sequence[BudgetStage]) -> list[tuple[float, str]]:
    """One dashed line per threshold; stages at the same share of the limit share it (and
    its label), so labels never sit on top of each other."""
    by_percent: dict[float, list[str]] = {}
    for stage in stages:
        by_percent.setdefault(stage.at_percent, []).append(stage.name)
    return [
        (limit * p / 100, f"{', '.join(names)} {p:g}% {format_usd(limit * p / 100)}")
        for p, names in sorted(by_percent.items())
    ]


def budget_panels(run: BudgetRun, chars_per_axis: float) -> list[Panel]:
    """One panel per budget: spend so far (the total, or the largest agents) against each
    stage's threshold, a marker where each stage was reached, labels that do not overlap."""
    out = []
    for r in run.replays:
        spec = r.doc.spec
        size = len(r.times)
        thresholds = _thresholds(spec.limit_usd, spec.stages)
        markers: list[Marker] = []
        drafts: list[Draft] = []
        ys: dict[tuple[int, AgentId | None], float] = {}
        step = (r.times[1] - r.times[0]) if size > 1 else None
        for c in r.crossings:
            if c.before_range or step is None:
                continue
            index = round((c.at - r.times[0]) / step)
            what = crossing_text(c)
            kind = _KINDS[c.stage.response.value]
            agent = _line_of(c)
            y = _marker_y(r, c, index)
            ys.setdefault((index, agent), y)
            drafts.append((index, agent, kind, "applied", None, what))
            markers.append(Marker(c.at, agent, kind, "applied", None, y, what))
        placed, rows, unplaced = place_labels(drafts, size, chars_per_axis)
        labels = [
            Label(text, r.times[i], ys.get((i, agent), 0.0), agent, row, x, width)
            for text, i, agent, row, x, width in placed
        ]
        values = [v for line in r.lines.values() for v in line]
        top = max([*values, *(t for t, _ in thresholds)], default=1.0) or 1.0
        headroom = 1 + 0.12 * (rows + 1)
        before = [c for c in r.crossings if c.before_range]
        notes = [f"{len(before)} stage(s) reached before the range"] if before else []
        if not r.agents:
            notes.append("no cost history in scope")
        if any(w.startswith("no price for") for w in r.warnings):
            notes.append("tokens of unpriced models left out: see the warnings")
        note = "; ".join(notes)
        out.append(
            Panel(
                title=f"{r.doc.label}: spend this {spec.period} ({spec.time_zone}), "
                f"{spec.applies_to.value}",
                rule="budget",
                ylabel="USD",
                lines=dict(list(r.lines.items())[:MAX_LINES]),
                thresholds=thresholds,
                more=max(0, len(r.lines) - MAX_LINES),
                note=note,
                markers=markers,
                labels=labels,
                ylim=(0.0, top * headroom),
                label_rows=rows,
                unlabelled=unplaced,
            )
        )
    return out
