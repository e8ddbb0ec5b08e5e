"""The backtest for people: a header, every decision and notification, the totals (rich)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentmedic.api.durations import format_duration
from agentmedic.api.types import ActionOutcome
from agentmedic.backtest.report import BacktestResult, outcome_of, totals

__all__ = ["render_table"]

_OUTCOME_STYLE = {
    ActionOutcome.APPLIED: "bold green",
    ActionOutcome.SUPPRESSED: "yellow",
    ActionOutcome.DRY_RUN: "cyan",
}


def _t(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M" + (":%S" if moment.second else ""))


def render_table(result: BacktestResult, console: Console) -> None:
    """Print the backtest: what was replayed, the decisions, notifications and totals."""
    console.print(Panel(_header(result), title="agentmedic backtest", expand=False))
    if result.decisions:
        console.print(_decisions(result))
    else:
        console.print("No workload changes would have been decided.", style="bold")
    if result.notifications:
        console.print(_notifications(result))
    console.print(Panel(_totals(result), title="Totals", expand=False))
    for w in result.history.warnings:
        console.print(f"warning: {w}", style="yellow")


def _header(result: BacktestResult) -> Text:
    """What was replayed: the policy, the time grid, the agents, where the history came from."""
    h = result.history
    head = Text()
    namespaces = sorted({a.namespace for a in h.agents})
    head.append(f"policy {result.namespace}/{result.name}", style="bold")
    head.append(
        f"  {_t(h.grid.start)} → {_t(h.grid.last)} UTC, every {format_duration(h.grid.step)} "
        f"({h.grid.size} evaluations), {len(h.agents)} agents in {', '.join(namespaces)}"
    )
    if result.backend_url:
        head.append(f"\nhistory from {result.backend_url} ({h.queries} queries)")
    head.append(
        "\nWhat the policy would have decided given this history, its own earlier decisions "
        "counted as applied."
    )
    if result.dry_run_ignored:
        head.append(
            "\nThe policy is in dryRun; it is replayed as if enabled (--respect-dry-run to keep "
            "dry run).",
            style="cyan",
        )
    return head


def _decisions(result: BacktestResult) -> Table:
    table = Table(title="Decisions", title_justify="left", show_lines=False)
    for col in ("time (UTC)", "agent", "rule", "action", "outcome"):
        table.add_column(col, no_wrap=True)
    table.add_column("evidence", overflow="fold")
    for d in result.decisions:
        outcome = outcome_of(d)
        shown = Text(outcome.value, style=_OUTCOME_STYLE[outcome])
        if d.suppressed_by:
            shown.append(f" ({d.suppressed_by})")
        action = d.kind.value
        if d.to_model:
            action += f" → {d.to_model}"
        table.add_row(_t(d.at), d.agent.name, d.rule, action, shown, d.evidence.describe())
    return table


def _notifications(result: BacktestResult) -> Table:
    table = Table(title="Notifications", title_justify="left")
    for col in ("time (UTC)", "agent", "rule", "state", "channels"):
        table.add_column(col, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for n in result.notifications:
        state = Text(n.state, style="red" if n.state == "firing" else "green")
        table.add_row(
            _t(n.at),
            "(fleet)" if n.agent is None else n.agent.name,
            n.rule,
            state,
            ", ".join(n.channels),
            n.summary,
        )
    return table


def _totals(result: BacktestResult) -> Group:
    """The totals grid, and how close the reconstructed spend came to the exact query."""
    h = result.history
    t = totals(result)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    disabled = ", ".join(str(a) for a in t.agents_disabled)
    grid.add_row(
        "agents disabled", f"{len(t.agents_disabled)}" + (f"  ({disabled})" if disabled else "")
    )
    grid.add_row("model downgrades", str(t.downgrades))
    grid.add_row("prompt-optimization jobs", str(t.jobs))
    grid.add_row("restores", str(t.restores))
    grid.add_row(
        "notifications",
        f"{t.notifications_firing} firing ({t.pages} pages), {t.notifications_resolved} resolved",
    )
    reasons = ", ".join(f"{k} {v}" for k, v in t.suppressed_by.items())
    grid.add_row("suppressed by guardrails", f"{t.suppressed}  ({reasons})")
    grid.add_row(
        "systemic episodes",
        f"{t.systemic_episodes} (per-agent pages held back: {t.pages_held_back})",
    )
    parts: list[Table | Text] = [grid]
    if h.spend_check:
        worst = max(h.spend_check, key=lambda c: c.relative_error)
        parts.append(
            Text(
                f"budget spend reconstructed per step; largest difference from the exact "
                f"query: {worst.relative_error:.2%} at {_t(worst.at)}",
                style="dim",
            )
        )
    return Group(*parts)
