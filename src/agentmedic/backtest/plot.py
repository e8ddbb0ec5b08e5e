"""The backtest as a picture: per rule, the metric against its threshold over time.

One panel per condition of every rule (and one for the budget's spend): the values of the
agents the rule acted on or notified about (at most :data:`MAX_LINES`; when it acted on
none, the agents that came closest to its threshold), the threshold as a dashed line,
markers where workload changes would have been decided (▼ applied, ✕ suppressed by a
guardrail, ● dry run) and where notify-only rules would have fired (◆), and the spans of
systemic episodes shaded. ``.png`` writes a PNG; ``.html`` a self-contained page with
the figure inline (SVG, or PNG for very long histories) and the totals. matplotlib (the
``plot`` extra) is imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.api.types import ActionOutcome, Condition, Op
from agentmedic.backtest.report import BacktestResult, outcome_of, totals
from agentmedic.engine.outcome import Decision
from agentmedic.engine.series import AgentId, SeriesKey

__all__ = ["MAX_LINES", "Panel", "PlotError", "panels", "write_plot"]

MAX_LINES = 8
"""Agents drawn per panel; the rest are named in the legend as "+N more"."""
MAX_POINTS_DRAWN = 2000
"""Points drawn per line (see :func:`decimate`); a week at one minute is 10,080."""
_SVG_MAX_POINTS = 200_000
_HIGHER_IS_WORSE = {Op.GT, Op.GE, Op.NE}
_MARKERS = {
    ActionOutcome.APPLIED: ("v", "tab:red", "applied"),
    ActionOutcome.SUPPRESSED: ("X", "tab:orange", "suppressed"),
    ActionOutcome.DRY_RUN: ("o", "tab:cyan", "dry run"),
}


class PlotError(RuntimeError):
    """The plot cannot be written (matplotlib missing, unknown suffix, unwritable file)."""


@dataclass
class Panel:
    """One subplot: a rule's condition (or the budget) for some agents."""

    title: str
    rule: str
    ylabel: str
    lines: dict[AgentId, list[float]]
    thresholds: list[tuple[float, str]]
    more: int = 0
    """Involved agents not drawn."""
    decisions: list[Decision] = field(default_factory=list)
    fired: list[tuple[datetime, AgentId | None]] = field(default_factory=list)
    """Firing notifications of a rule without workload actions."""
    note: str = ""


def _closest(values: dict[AgentId, list[float]], cond: Condition, n: int) -> list[AgentId]:
    higher = cond.op in _HIGHER_IS_WORSE
    scores: dict[AgentId, float] = {}
    for agent, series in values.items():
        finite = list(filter(math.isfinite, series))  # in C: a week is 10,080 points
        if finite:
            scores[agent] = max(finite) if higher else -min(finite)
    ranked = sorted(scores, key=lambda a: (-scores[a], a))
    return ranked[:n]


def decimate(
    times: Sequence[datetime], values: Sequence[float], target: int = MAX_POINTS_DRAWN
) -> tuple[list[datetime], list[float]]:
    """At most about ``target`` points that draw like all of them: each bucket of
    consecutive points keeps its lowest and highest value, in time order (a one-minute
    spike in a week stays visible); a bucket without data keeps one gap (NaN)."""
    n = len(values)
    if n <= target:
        return list(times), list(values)
    size = math.ceil(n / (target // 2))
    xs: list[datetime] = []
    ys: list[float] = []
    for lo in range(0, n, size):
        hi = min(lo + size, n)
        finite = [i for i in range(lo, hi) if values[i] == values[i]]
        if not finite:
            xs.append(times[lo])
            ys.append(math.nan)
            continue
        low = min(finite, key=values.__getitem__)
        high = max(finite, key=values.__getitem__)
        for i in sorted({low, high}):
            xs.append(times[i])
            ys.append(values[i])
    return xs, ys


def panels(result: BacktestResult) -> list[Panel]:
    """The panels :func:`write_plot` draws, in rule order (the budget last)."""
    h = result.history
    spec = h.spec
    involved = result.rules_involved()
    decisions_of: dict[str, list[Decision]] = {}
    for d in result.decisions:
        decisions_of.setdefault(d.rule, []).append(d)
    out: list[Panel] = []
    for rule in spec.rules:
        # Agents acted on first, then those notified about, then those only in a systemic
        # episode: with more than MAX_LINES, the lines drawn are the telling ones.
        acted = Counter(d.agent for d in decisions_of.get(rule.name, []))
        notified = {n.agent for n in result.notifications if n.rule == rule.name}
        agents = sorted(
            involved.get(rule.name, []), key=lambda a: (-acted[a], a not in notified, a)
        )
        fired = [
            (n.at, n.agent)
            for n in result.notifications
            if n.rule == rule.name and n.state == "firing" and n.at is not None
        ]
        for cond in (*rule.all_of, *rule.any_of):
            key = SeriesKey(cond.metric, cond.query, cond.window, spec.agent_label)
            what = cond.metric or "query"
            window = format_duration(cond.window)
            title = f"{rule.name}: {what}[{window}] {cond.op.value} {cond.value:g}"
            note = ""
            shown = agents
            if not shown:
                everyone = {a: h.series(key, a) for a in h.agents}
                shown = _closest(everyone, cond, 3)
                note = "never fired; the agents closest to the threshold"
            lines = {a: h.series(key, a) for a in shown[:MAX_LINES]}
            thresholds = [(cond.value, f"threshold {cond.value:g}")]
            if cond.recover_value is not None and cond.recover_value != cond.value:
                thresholds.append((cond.recover_value, f"recoverValue {cond.recover_value:g}"))
            out.append(
                Panel(
                    title=title,
                    rule=rule.name,
                    ylabel=what,
                    lines=lines,
                    thresholds=thresholds,
                    more=max(0, len(shown) - MAX_LINES),
                    decisions=[d for d in decisions_of.get(rule.name, []) if d.agent in lines],
                    fired=[]
                    if rule.actions and any(a.notify is None for a in rule.actions)
                    else fired,
                    note=note,
                )
            )
    budget = spec.budget
    if budget is not None:
        stages = ("budget.soft", "budget.hard")
        acted = Counter(d.agent for stage in stages for d in decisions_of.get(stage, []))
        agents = sorted(
            {a for stage in stages for a in involved.get(stage, [])}, key=lambda a: (-acted[a], a)
        )
        note = ""
        if not agents:
            spends = {a: h.spend_series(a) for a in h.agents}
            agents = sorted(
                (a for a in spends if any(v == v for v in spends[a])),
                key=lambda a: -max((v for v in spends[a] if v == v), default=0.0),
            )[:3]
            note = "never reached; the largest spenders"
        thresholds = [(budget.limit_usd, f"limit ${budget.limit_usd:g}")]
        if budget.soft is not None:
            soft = budget.limit_usd * budget.soft.at_percent / 100
            thresholds.append((soft, f"soft {budget.soft.at_percent:g}% ${soft:g}"))
        lines = {a: h.spend_series(a) for a in agents[:MAX_LINES]}
        out.append(
            Panel(
                title=f"budget: spend this {budget.period} (scope {budget.scope.value})",
                rule="budget",
                ylabel="USD",
                lines=lines,
                thresholds=thresholds,
                more=max(0, len(agents) - MAX_LINES),
                decisions=[
                    d
                    for stage in ("budget.soft", "budget.hard")
                    for d in decisions_of.get(stage, [])
                    if d.agent in lines
                ],
                note=note,
            )
        )
    return out


def _figure(result: BacktestResult) -> tuple[Any, int]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib; install it with `pip install 'agentmedic[plot]'`"
        ) from None
    h = result.history
    times = h.grid.times()
    index = {t: i for i, t in enumerate(times)}
    items = panels(result)
    n = max(1, len(items))
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.8 * n + 0.6), sharex=True, squeeze=False)
    points = 0
    episodes = [(ep.rule, ep.start, ep.end or h.grid.last) for ep in result.systemic]
    for ax, panel in zip(axes[:, 0], items, strict=False):
        for agent, values in panel.lines.items():
            xs, ys = decimate(times, values)
            ax.plot(xs, ys, linewidth=1.0, label=str(agent.name))
            points += len(xs)
        for value, label in panel.thresholds:
            ax.axhline(value, linestyle="--", color="black", linewidth=0.9, alpha=0.7)
            ax.annotate(
                label,
                xy=(1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=7,
            )
        seen: set[ActionOutcome] = set()
        for d in panel.decisions:
            i = index.get(d.at)
            line = panel.lines.get(d.agent)
            y = line[i] if line is not None and i is not None else math.nan
            if y != y:
                y = panel.thresholds[0][0]
            outcome = outcome_of(d)
            marker, color, label = _MARKERS[outcome]
            ax.scatter(
                [d.at], [y], marker=marker, s=60, color=color, zorder=5,
                edgecolors="black", linewidths=0.5,
                label=label if outcome not in seen else None,
            )  # fmt: skip
            if len(panel.decisions) <= 20:  # beyond that, labels only hide each other
                ax.annotate(
                    d.kind.value, xy=(d.at, y), xytext=(0, 7), textcoords="offset points",
                    ha="center", fontsize=6,
                )  # fmt: skip
            seen.add(outcome)
        first = True
        for at, who in panel.fired:
            i = index.get(at)
            line = panel.lines.get(who) if who is not None else None
            y = line[i] if line is not None and i is not None else panel.thresholds[0][0]
            ax.scatter(
                [at], [y if y == y else panel.thresholds[0][0]], marker="D", s=36,
                color="tab:purple", zorder=5, label="notified" if first else None,
            )  # fmt: skip
            first = False
        shaded = False
        for rule, start, end in episodes:
            if rule == panel.rule:
                ax.axvspan(
                    start, end, color="grey", alpha=0.15, label=None if shaded else "systemic"
                )
                shaded = True
        title = panel.title + (f"  ({panel.note})" if panel.note else "")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if panel.more:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"+{panel.more} more")
        if handles:
            ax.legend(handles, labels, fontsize=6, loc="upper left", ncol=2)
        if not panel.lines:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    if not items:
        axes[0, 0].text(0.5, 0.5, "the policy has no rules or budget", ha="center", va="center")
    axis = axes[-1, 0]
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axis.set_xlabel("time (UTC)", fontsize=8)
    fig.suptitle(
        f"agentmedic backtest of {result.namespace}/{result.name}: "
        f"{h.grid.start:%Y-%m-%d %H:%M} → {h.grid.last:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    fig.tight_layout()
    return fig, points


def write_plot(result: BacktestResult, path: Path) -> None:
    """Write ``path`` as PNG (``.png``) or self-contained HTML (``.html``/``.htm``)."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise PlotError(f"--plot {path}: use a file name ending in .png or .html")
    fig, points = _figure(result)
    import matplotlib.pyplot as plt

    try:
        if suffix == ".png":
            try:
                fig.savefig(path, format="png", dpi=100)
            except OSError as exc:
                raise PlotError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None
            return
        buf = io.BytesIO()
        if points <= _SVG_MAX_POINTS:
            fig.savefig(buf, format="svg")
            figure = buf.getvalue().decode("utf-8")
            figure = figure[figure.index("<svg") :]  # drop the XML prolog and doctype
        else:
            fig.savefig(buf, format="png", dpi=100)
            data = base64.b64encode(buf.getvalue()).decode("ascii")
            figure = f'<img alt="backtest figure" src="data:image/png;base64,{data}">'
        try:
            path.write_text(_html(result, figure), encoding="utf-8")
        except OSError as exc:
            raise PlotError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)


def _rows(cells: Sequence[Sequence[str]]) -> str:
    return "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
    )


def _html(result: BacktestResult, figure: str) -> str:
    t = totals(result)
    h = result.history
    title = f"agentmedic backtest: {result.namespace}/{result.name}"
    summary = [
        ("range", f"{h.grid.start:%Y-%m-%d %H:%M} → {h.grid.last:%Y-%m-%d %H:%M} UTC"),
        ("step", f"{format_duration(h.grid.step)} ({h.grid.size} evaluations)"),
        ("agents", str(len(h.agents))),
        ("agents disabled", ", ".join(str(a) for a in t.agents_disabled) or "0"),
        ("model downgrades", str(t.downgrades)),
        ("prompt-optimization jobs", str(t.jobs)),
        ("restores", str(t.restores)),
        (
            "notifications",
            f"{t.notifications_firing} firing ({t.pages} pages), "
            f"{t.notifications_resolved} resolved",
        ),
        (
            "suppressed by guardrails",
            f"{t.suppressed} (" + ", ".join(f"{k} {v}" for k, v in t.suppressed_by.items()) + ")",
        ),
        ("systemic episodes", f"{t.systemic_episodes} (pages held back: {t.pages_held_back})"),
    ]
    decisions = [
        (
            f"{d.at:%Y-%m-%d %H:%M:%S}",
            str(d.agent),
            d.rule,
            d.kind.value,
            outcome_of(d).value + (f" ({d.suppressed_by})" if d.suppressed_by else ""),
            d.evidence.describe(),
        )
        for d in result.decisions
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
svg, img {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>What the policy would have decided given this history, its own earlier decisions counted
as applied.</p>
<table>{_rows(summary)}</table>
{figure}
<h2>Decisions</h2>
<table><tr><th>time (UTC)</th><th>agent</th><th>rule</th><th>action</th><th>outcome</th>
<th>evidence</th></tr>
{_rows(decisions)}
</table>
</body></html>
"""
