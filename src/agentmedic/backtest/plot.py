"""The backtest as a picture: per rule, the metric against its threshold over time.

One panel per condition of every rule (and one for the budget's spend). What is drawn is
computed by :func:`agentmedic.backtest.plotdata.panels` (tested without pixels); this
module only draws it: the agents' lines (faded from the first change that alters an agent's
behaviour, with the note that the history no longer reflects the policy's effect there),
the thresholds, one marker per decision named after its agent (filled: carried out;
hollow: stopped by a guardrail or held back by a systemic episode, with the reason), the
labels in rows that do not overlap, pending/firing/disabled lanes per agent under the data,
systemic episodes shaded, and values beyond the y-limits marked as clipped. ``.png``
writes a PNG (:func:`figure_size` at 100 dpi); ``.html`` a self-contained page with the
figure inline (SVG, or PNG for very long histories) and the totals. matplotlib (the
``plot`` extra) is imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.api.units import format_value
from agentmedic.backtest.budget_history import BudgetRun
from agentmedic.backtest.budget_report import budget_panels, crossing_text
from agentmedic.backtest.columns import Grid
from agentmedic.backtest.plotdata import (
    FADE_NOTE,
    LABEL_CHARS_PER_AXIS,
    LABEL_ROW_HEIGHT,
    LABEL_TOP,
    LANE_HEIGHT,
    MAX_LINES,
    Label,
    Marker,
    Panel,
    panels,
)
from agentmedic.backtest.report import BacktestResult, outcome_of, totals
from agentmedic.engine.series import AgentId

__all__ = ["DPI", "MAX_LINES", "Panel", "PlotError", "figure_size", "panels", "write_plot"]

DPI = 100
MAX_POINTS_DRAWN = 2000
"""Points drawn per line (see :func:`decimate`); a week at one minute is 10,080."""
_SVG_MAX_POINTS = 200_000
_SHAPES = {
    "scaleToZero": ("v", "scale to zero"),
    "switchModel": ("s", "switch model"),
    "promptOptimization": ("P", "prompt optimization"),
    "restore": ("^", "restore"),
    "notify": ("D", "notified"),
    "fleetPage": ("*", "fleet page"),
    "budgetNotify": ("p", "budget stage: notify"),
    "budgetDowngrade": ("h", "budget stage: downgrade"),
    "budgetStop": ("X", "budget stage: stop"),
}
_STATES = {
    "pending": ("#f2c744", 0.9, "pending"),
    "firing": ("#d62728", 0.7, "firing"),
    "disabled": ("#555555", 0.6, "disabled"),
}
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan")  # fmt: skip


class PlotError(RuntimeError):
    """The plot cannot be written (matplotlib missing, unknown suffix, unwritable file)."""


def figure_size(n_panels: int) -> tuple[float, float]:
    """Width and height in inches: 12 wide, 3.6 per panel plus 1.4 for the titles and the
    legend, at least 6 (at 100 dpi: 1200x600 for one panel, 1200x860 for two)."""
    return 12.0, round(max(6.0, 1.4 + 3.6 * max(1, n_panels)), 2)


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


def _colours(items: list[Panel]) -> dict[AgentId, str]:
    out: dict[AgentId, str] = {}
    for panel in items:
        for agent in panel.lines:
            if agent not in out:
                out[agent] = _COLOURS[len(out) % len(_COLOURS)]
    return out


def _draw_panel(
    ax: Any, panel: Panel, times: list[datetime], colour: dict[AgentId, str], used: set[str]
) -> int:
    """Draw one panel; returns the points drawn and adds the legend entries it used."""
    points = 0
    lo, hi = panel.ylim
    for span in panel.spans:
        if span.kind == "systemic":
            ax.axvspan(span.start, span.end, color="grey", alpha=0.18, linewidth=0)
            used.add("systemic")
    for lane, agent in enumerate(panel.lanes):
        bottom = 0.01 + lane * LANE_HEIGHT
        for span in panel.spans:
            if span.agent != agent or span.kind == "systemic":
                continue
            face, alpha, _ = _STATES[span.kind]
            ax.axvspan(
                span.start, span.end, ymin=bottom, ymax=bottom + LANE_HEIGHT * 0.8,
                color=face, alpha=alpha, linewidth=0,
            )  # fmt: skip
            used.add(span.kind)
        ax.text(
            0.002, bottom + LANE_HEIGHT * 0.4, agent.name, transform=ax.transAxes, fontsize=6,
            va="center", ha="left", color=colour[agent],
        )  # fmt: skip
    for agent, values in panel.lines.items():
        cut = panel.faded_from.get(agent)
        solid = values if cut is None else values[: cut + 1]
        xs, ys = decimate(times[: len(solid)], solid)
        ax.plot(xs, ys, linewidth=1.1, color=colour[agent], label=agent.name)
        points += len(xs)
        if cut is not None:
            xs, ys = decimate(times[cut:], values[cut:])
            ax.plot(xs, ys, linewidth=1.0, color=colour[agent], alpha=0.3, linestyle="--")
            ax.axvline(times[cut], color=colour[agent], linewidth=0.8, linestyle=":")
            points += len(xs)
            used.add("faded")
    for value, text in panel.thresholds:
        ax.axhline(value, linestyle="--", color="black", linewidth=0.9, alpha=0.7)
        ax.annotate(
            text, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
            textcoords="offset points", ha="right", fontsize=7,
        )  # fmt: skip
    below_labels = 1 - LABEL_TOP - LABEL_ROW_HEIGHT * panel.label_rows
    if panel.faded_from:
        first = min(panel.faded_from.values())
        right = (first / max(1, len(times) - 1)) > 0.6
        ax.text(
            times[first], below_labels - LABEL_ROW_HEIGHT / 2, ("" if right else " ")
            + FADE_NOTE + (" " if right else ""), transform=ax.get_xaxis_transform(),
            fontsize=7, style="italic", color="dimgrey", ha="right" if right else "left",
            va="center",
        )  # fmt: skip
    for clip in panel.clips:
        ax.scatter(
            [clip.at], [hi if clip.above else lo], marker="^" if clip.above else "v", s=30,
            color=colour[clip.agent], alpha=0.5, clip_on=False, zorder=4,
        )  # fmt: skip
    for m in panel.markers:
        _draw_marker(ax, m, colour, used)
    for placed in panel.labels:
        _draw_label(ax, placed, colour)
    ax.set_ylim(lo, hi)
    return points


def _metric_of(ylabel: str) -> str | None:
    """The metric a panel plots, from its y label (a metric's name, ``query`` or ``USD``)."""
    if ylabel == "USD":
        return "cost_usd"
    return None if ylabel == "query" else ylabel


def _draw_marker(ax: Any, m: Marker, colour: dict[AgentId, str], used: set[str]) -> None:
    shape, _ = _SHAPES.get(m.kind, ("o", m.kind))
    edge = "black" if m.agent is None else colour.get(m.agent, "black")
    ax.scatter(
        [m.at], [m.y], marker=shape, s=90 if m.kind == "fleetPage" else 60, zorder=6,
        facecolors="none" if m.hollow else edge, edgecolors=edge,
        linewidths=1.6 if m.hollow else 0.6,
    )  # fmt: skip
    used.add(m.kind)
    used.add("hollow" if m.hollow else "filled")


def _draw_label(ax: Any, label: Label, colour: dict[AgentId, str]) -> None:
    edge = "black" if label.agent is None else colour.get(label.agent, "black")
    y = 1 - LABEL_TOP - LABEL_ROW_HEIGHT * (label.row + 0.5)
    ax.annotate(
        label.text, xy=(label.at, label.y), xycoords="data", xytext=(label.x, y),
        textcoords="axes fraction", fontsize=7, ha="left", va="center", color=edge,
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": edge, "lw": 0.5,
              "alpha": 0.9},
        arrowprops={"arrowstyle": "-", "color": edge, "lw": 0.5, "alpha": 0.6},
        zorder=7,
    )  # fmt: skip


def _legend(used: set[str]) -> tuple[list[Any], list[str]]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    labels: list[str] = []
    for kind, (shape, text) in _SHAPES.items():
        if kind in used:
            handles.append(Line2D([], [], marker=shape, linestyle="none", color="black"))
            labels.append(text)
    if "hollow" in used:
        handles.append(
            Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", color="black")
        )
        labels.append("hollow: not carried out (✕ why)")
    for state, (face, alpha, text) in _STATES.items():
        if state in used:
            handles.append(Patch(facecolor=face, alpha=alpha))
            labels.append(text)
    if "systemic" in used:
        handles.append(Patch(facecolor="grey", alpha=0.18))
        labels.append("systemic episode")
    if "faded" in used:
        handles.append(Line2D([], [], color="grey", alpha=0.4, linestyle="--"))
        labels.append("faded: history after a change")
    handles.append(Line2D([], [], color="black", linestyle="--", alpha=0.7))
    labels.append("threshold")
    return handles, labels


def _figure(result: BacktestResult | None, budgets: BudgetRun | None) -> tuple[Any, int]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib; install it with `pip install 'agentmedic[plot]'`"
        ) from None
    grid = _grid(result, budgets)
    times = grid.times()
    items = panels(result) if result is not None else []
    if budgets is not None:
        items += budget_panels(budgets, LABEL_CHARS_PER_AXIS)
    n = max(1, len(items))
    fig, axes = plt.subplots(n, 1, figsize=figure_size(n), sharex=True, squeeze=False)
    colour = _colours(items)
    used: set[str] = set()
    points = 0
    for ax, panel in zip(axes[:, 0], items, strict=False):
        points += _draw_panel(ax, panel, times, colour, used)
        notes = [panel.note] if panel.note else []
        if panel.more:
            notes.append(f"+{panel.more} more agents not drawn")
        if panel.unlabelled:
            notes.append(f"{panel.unlabelled} markers unlabelled: no room; colour = agent")
        metric = _metric_of(panel.ylabel)
        notes += [
            f"{'↑' if c.above else '↓'} {c.agent.name} after its change: "
            f"{format_value(metric, c.extreme)}, off the scale"
            for c in panel.clips
        ]
        title = panel.title + (f"  ({'; '.join(notes)})" if notes else "")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(panel.ylabel, fontsize=8)
        # Ticks in the metric's unit, like the evidence: 10s, 30%, $40.00.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, m=metric: format_value(m, v)))
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if panel.lines:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    if not items:
        axes[0, 0].text(0.5, 0.5, "the policy has no rules or budget", ha="center", va="center")
    axis = axes[-1, 0]
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axis.set_xlabel("time (UTC)", fontsize=8)
    axis.set_xlim(grid.start, grid.last)
    handles, labels = _legend(used)
    columns = len(handles) if len(handles) <= 6 else math.ceil(len(handles) / 2)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=7,
               frameon=False)  # fmt: skip
    what = f"{result.namespace}/{result.name}" if result is not None else "budgets"
    if result is not None and budgets is not None:
        what += " and budgets"
    fig.suptitle(
        f"agentmedic backtest of {what}: "
        f"{grid.start:%Y-%m-%d %H:%M} → {grid.last:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    rows = math.ceil(len(handles) / columns)
    height = figure_size(n)[1]
    fig.tight_layout(rect=(0, (0.2 + 0.16 * rows) / height, 1, 1 - 0.1 / height))
    return fig, points


def _grid(result: BacktestResult | None, budgets: BudgetRun | None) -> Grid:
    if result is not None:
        return result.history.grid
    assert budgets is not None
    return budgets.grid


def write_plot(
    result: BacktestResult | None, path: Path, *, budgets: BudgetRun | None = None
) -> None:
    """Write ``path`` as PNG (``.png``) or self-contained HTML (``.html``/``.htm``): the
    policy's panels (``result``), then one per budget (``budgets``)."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise PlotError(f"--plot {path}: use a file name ending in .png or .html")
    if result is None and budgets is None:
        raise PlotError("nothing to plot: give a policy or budgets")
    fig, points = _figure(result, budgets)
    import matplotlib.pyplot as plt

    try:
        if suffix == ".png":
            try:
                fig.savefig(path, format="png", dpi=DPI)
            except OSError as exc:
                raise PlotError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None
            return
        buf = io.BytesIO()
        if points <= _SVG_MAX_POINTS:
            fig.savefig(buf, format="svg")
            figure = buf.getvalue().decode("utf-8")
            figure = figure[figure.index("<svg") :]  # drop the XML prolog and doctype
        else:
            fig.savefig(buf, format="png", dpi=DPI)
            data = base64.b64encode(buf.getvalue()).decode("ascii")
            figure = f'<img alt="backtest figure" src="data:image/png;base64,{data}">'
        try:
            page = _html(result, figure) if result is not None else _budgets_html(budgets, figure)
            path.write_text(page, encoding="utf-8")
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


def _budgets_html(budgets: BudgetRun | None, figure: str) -> str:
    assert budgets is not None
    title = "agentmedic backtest: budgets"
    crossings = [
        (
            f"{c.at:%Y-%m-%d %H:%M}" + (" (before the range)" if c.before_range else ""),
            r.doc.label,
            crossing_text(c),
            "total" if c.agent is None else str(c.agent),
            f"{c.spend_usd:.2f}",
            "-" if c.forecast_usd is None else f"{c.forecast_usd:.2f}",
        )
        for r in budgets.replays
        for c in r.crossings
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
<p>When each budget stage would have acted, given this history.</p>
{figure}
<h2>Stages reached</h2>
<table><tr><th>time (UTC)</th><th>budget</th><th>stage</th><th>agent</th>
<th>spend (USD)</th><th>forecast (USD)</th></tr>
{_rows(crossings)}
</table>
</body></html>
"""
