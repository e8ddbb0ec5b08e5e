"""What the backtest plot draws, computed without drawing: the plot's data layer (pure).

:func:`panels` turns a :class:`~agentmedic.backtest.report.BacktestResult` into one
:class:`Panel` per condition of every rule (and one for the budget's spend); the drawing
(:mod:`agentmedic.backtest.plot`) only turns the panels into pixels, so everything a
reader relies on is tested here without images:

- **lines**: the values of the agents a rule acted on or notified about (at most
  :data:`MAX_LINES`; when it acted on none, the agents closest to its threshold);
- **faded from**: the grid index of an agent's first applied change that alters its
  behaviour (scale to zero, model switch). The history after it is what the agent did
  *without* the policy, so it is drawn faded under :data:`FADE_NOTE`;
- **y-limits** from the thresholds and the values that still describe the agent (before
  its fade, and every value of agents never changed), with room for the label rows above
  and the state lanes below; faded values beyond them are **clips** (the largest named);
- **markers**: each decision at its agent's value, naming the agent; suppressed ones
  hollow with the guardrail that stopped them; for a systemic episode, the agents it held
  back (hollow, ``SystemicOutage``) and the one fleet page; notifications of notify-only
  rules;
- **labels**: the markers of one moment that say the same thing share one label naming
  their agents (``chat, search: scaleToZero held back ✕ SystemicOutage``); each label goes
  in the first of :data:`MAX_LABEL_ROWS` rows above the data where it overlaps no other
  label (its width estimated from its length, see :data:`LABEL_CHARS_PER_AXIS`), with a
  leader line to its first marker; labels with no room left are counted in
  ``unlabelled``, and their markers keep their agent's colour;
- **spans**: pending, firing and disabled periods per agent (one lane each, under the
  data) and systemic episodes (the whole height). Pending and firing are re-derived from
  the history with the engine's own rule verdicts and the rule's ``for``/``recoverFor``,
  as the engine's state machine advances them; budget stages are firing while the agent's
  spend is at or above the stage's threshold (agent scope).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agentmedic.api.durations import format_duration
from agentmedic.api.types import ActionOutcome, Budget, BudgetScope, Condition, Op, Rule
from agentmedic.api.units import format_threshold, format_usd
from agentmedic.backtest.columns import Grid
from agentmedic.backtest.history import History
from agentmedic.backtest.report import BacktestResult, SystemicEpisodeReport, outcome_of
from agentmedic.engine.conditions import BREACH, CLEAR, compile_rule
from agentmedic.engine.outcome import Decision, DecisionKind
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.series import AgentId, SeriesKey

__all__ = [
    "FADE_NOTE",
    "LABEL_CHARS_PER_AXIS",
    "MAX_LABEL_ROWS",
    "MAX_LINES",
    "Clip",
    "Draft",
    "Label",
    "Marker",
    "Panel",
    "Span",
    "panels",
    "place_labels",
]

MAX_LINES = 8
"""Agents drawn per panel; the rest are named in the legend as "+N more"."""
MAX_LABEL_ROWS = 3
LABEL_CHARS_PER_AXIS = 150.0
"""Characters of a marker label (7 pt) that fill the width of a 12-inch figure's axes."""
LABEL_ROW_HEIGHT = 0.075
"""A label row's height, as a share of the axes' height."""
LABEL_TOP = 0.03
"""Space between the panel's top and the first label row, as a share of its height."""
LANE_HEIGHT = 0.045
"""A state lane's height, as a share of the axes' height."""
FADE_NOTE = "history after this point no longer reflects the policy's effect"
_CHANGES_BEHAVIOUR = {DecisionKind.SCALE_TO_ZERO, DecisionKind.SWITCH_MODEL}
_HIGHER_IS_WORSE = {Op.GT, Op.GE, Op.NE}

SpanKind = Literal["pending", "firing", "disabled", "systemic"]
MarkerOutcome = Literal["applied", "suppressed", "dryRun", "heldBack", "notified"]
_OUTCOMES: dict[ActionOutcome, MarkerOutcome] = {
    ActionOutcome.APPLIED: "applied",
    ActionOutcome.SUPPRESSED: "suppressed",
    ActionOutcome.DRY_RUN: "dryRun",
}


@dataclass(frozen=True)
class Marker:
    """One thing decided or sent, where it is drawn and what its label says."""

    at: datetime
    agent: AgentId | None
    """None: a fleet-wide notification (a systemic episode's page)."""
    kind: str
    """A DecisionKind value, ``notify`` or ``fleetPage``."""
    outcome: MarkerOutcome
    reason: str | None
    """The guardrail that stopped it (a DecisionReason value), for hollow markers."""
    y: float
    """Where it is drawn (within the panel's y-limits)."""
    label: str
    """What it is, naming its agent: ``erring: scaleToZero ✕ MaxDisabled``."""

    @property
    def hollow(self) -> bool:
        """Not carried out: drawn as an outline."""
        return self.outcome in ("suppressed", "heldBack", "dryRun")


@dataclass(frozen=True)
class Label:
    """A label drawn above the data: one for the markers of one moment that say the same
    thing (``chat, search: scaleToZero held back ✕ SystemicOutage``), led to the first."""

    text: str
    at: datetime
    y: float
    """The first marker's position, where the leader line ends."""
    agent: AgentId | None
    """The first marker's agent (its colour), None for a fleet page."""
    row: int
    """0 is the row under the panel's top, 1 the one below it, and so on."""
    x: float
    """The label's left edge, as a share of the axes' width."""
    width: float
    """Its estimated width, as a share of the axes' width."""


@dataclass(frozen=True)
class Span:
    """A period in a state: per agent (a lane) or, for ``systemic``, the whole fleet."""

    kind: SpanKind
    start: datetime
    end: datetime
    agent: AgentId | None = None


@dataclass(frozen=True)
class Clip:
    """A faded line leaving the y-limits: where it first does and how far it goes."""

    agent: AgentId
    at: datetime
    extreme: float
    """The largest (above) or smallest (below) value beyond the limit."""
    above: bool


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
    note: str = ""
    faded_from: dict[AgentId, int] = field(default_factory=dict)
    """Agent → the grid index from which its history is drawn faded."""
    markers: list[Marker] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    lanes: list[AgentId] = field(default_factory=list)
    """Agents with state spans, one lane each, bottom up."""
    ylim: tuple[float, float] = (0.0, 1.0)
    clips: list[Clip] = field(default_factory=list)
    label_rows: int = 0
    """Label rows in use (space is kept for them at the top, and for the fade note under
    them when a line is faded)."""
    unlabelled: int = 0
    """Markers whose label found no room (they keep their agent's colour)."""


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v == v and not math.isinf(v)]


def _closest(values: dict[AgentId, list[float]], cond: Condition, n: int) -> list[AgentId]:
    higher = cond.op in _HIGHER_IS_WORSE
    scores: dict[AgentId, float] = {}
    for agent, series in values.items():
        finite = _finite(series)
        if finite:
            scores[agent] = max(finite) if higher else -min(finite)
    return sorted(scores, key=lambda a: (-scores[a], a))[:n]


def fade_points(result: BacktestResult) -> dict[AgentId, int]:
    """Each agent's first applied change of behaviour (scale to zero, model switch), as a
    grid index: from there on its history shows what it did without the policy."""
    grid = result.history.grid
    out: dict[AgentId, int] = {}
    for d in result.decisions:
        if d.applies and d.kind in _CHANGES_BEHAVIOUR and d.agent not in out:
            out[d.agent] = grid.index(d.at)
    return out


def _disabled_spans(result: BacktestResult) -> dict[AgentId, list[tuple[int, int]]]:
    """Applied scale-to-zero until an applied restore of the replicas (or the end)."""
    grid = result.history.grid
    out: dict[AgentId, list[tuple[int, int]]] = {}
    since: dict[AgentId, int] = {}
    for d in result.decisions:
        if not d.applies:
            continue
        if d.kind == DecisionKind.SCALE_TO_ZERO and d.agent not in since:
            since[d.agent] = grid.index(d.at)
        elif d.kind == DecisionKind.RESTORE and d.restore is not None and d.restore.replicas:
            start = since.pop(d.agent, None)
            if start is not None:
                out.setdefault(d.agent, []).append((start, grid.index(d.at)))
    for agent, start in since.items():
        out.setdefault(agent, []).append((start, grid.size - 1))
    return out


def rule_phases(
    history: History,
    rule: Rule,
    agent: AgentId,
    disabled: Sequence[tuple[int, int]] = (),
    systemic: Sequence[tuple[int, int]] = (),
) -> list[tuple[Literal["pending", "firing"], int, int]]:
    """``(phase, first index, end index)`` of one rule on one agent, as the engine advances
    its state: pending from the first breach, firing once it held for ``for``, back to idle
    after a clear ``recoverFor`` (a pending breach on the first clear); no data holds the
    phase. While disabled the engine does not judge the agent; when a systemic episode ends
    its breaches start over. ``noData.mode: breach`` (missing data read as a breach after a
    while) is not mirrored: such a stretch shows as held, not as pending."""
    compiled = compile_rule(rule, history.spec.agent_label)
    keys = {c.key for c in compiled.conditions}
    keys |= {c.exec_key for c in compiled.conditions if c.exec_key is not None}
    columns = {k: history.series(k, agent) for k in keys}
    grid = history.grid
    step = grid.step
    ends = {hi for _, hi in systemic}
    out: list[tuple[Literal["pending", "firing"], int, int]] = []
    pending: int | None = None
    firing: int | None = None
    clear: int | None = None

    def close(i: int) -> None:
        nonlocal pending, firing, clear
        if pending is not None:
            fired_at = firing if firing is not None else i
            if fired_at > pending:
                out.append(("pending", pending, fired_at))
            if firing is not None and i > firing:
                out.append(("firing", firing, i))
        pending = firing = clear = None

    for i in range(grid.size):
        if any(lo <= i < hi for lo, hi in disabled):
            close(i)
            continue
        values = {k: (None if c[i] != c[i] else c[i]) for k, c in columns.items()}
        v = compiled.verdict(values, firing is not None)
        if i in ends and pending is not None:
            close(i)  # the outage is over: a breach still there needs a fresh `for`
        if pending is None:
            if v == BREACH:
                pending = i
                if compiled.for_ <= timedelta(0):
                    firing = i
            continue
        if firing is None:
            if v == BREACH and (i - pending) * step >= compiled.for_:
                firing = i
            elif v == CLEAR:
                close(i)
            continue
        if v == BREACH:
            clear = None
        elif v == CLEAR:
            clear = i if clear is None else clear
            if (i - clear) * step >= compiled.recover_for:
                close(i)
    close(grid.size - 1)
    return out


Draft = tuple[int, AgentId | None, str, MarkerOutcome, str | None, str]
"""``(grid index, agent, kind, outcome, reason, what)``: a marker before it has a y."""


def _names(agents: list[AgentId | None], what: str) -> str:
    names = [a.name for a in agents if a is not None]
    if not names:
        return what
    shown = ", ".join(names[:4]) + (f" +{len(names) - 4}" if len(names) > 4 else "")
    return f"{shown}: {what}"


def place_labels(
    drafts: Sequence[Draft], size: int, chars_per_axis: float
) -> tuple[list[tuple[str, int, AgentId | None, int, float, float]], int, int]:
    """Labels for the drafts (one per moment and message) on a grid of ``size`` moments,
    each in the first row where it overlaps no other: ``(text, index, first agent, row, x,
    width)``, the rows used and the markers left unlabelled."""
    last = max(1, size - 1)
    groups: dict[tuple[int, str, str, str | None, str], list[AgentId | None]] = {}
    for i, agent, kind, outcome, reason, what in drafts:
        groups.setdefault((i, kind, outcome, reason, what), []).append(agent)
    ends: list[float] = []
    out: list[tuple[str, int, AgentId | None, int, float, float]] = []
    unplaced = 0
    for (i, _, _, _, what), agents in sorted(groups.items(), key=lambda g: (g[0][0], g[0][4])):
        text = _names(agents, what)
        width = (len(text) + 2) / chars_per_axis
        lo = min(max(i / last - width / 2, 0.0), max(0.0, 1.0 - width))
        row = next((r for r, end in enumerate(ends) if end <= lo), None)
        if row is None and len(ends) < MAX_LABEL_ROWS:
            row = len(ends)
            ends.append(0.0)
        if row is None:
            unplaced += len(agents)
            continue
        ends[row] = lo + width
        out.append((text, i, agents[0], row, lo, width))
    return out, len(ends), unplaced


def _limits(
    lines: dict[AgentId, list[float]],
    faded_from: dict[AgentId, int],
    thresholds: list[tuple[float, str]],
    label_rows: int,
    lanes: int,
) -> tuple[float, float]:
    content = [t for t, _ in thresholds]
    for agent, values in lines.items():
        cut = faded_from.get(agent)
        content += _finite(values if cut is None else values[: cut + 1])
    lo, hi = min(content), max(content)
    if lo >= 0:
        lo = 0.0  # a non-negative measure is read from zero
    if hi - lo <= 0:
        hi = lo + (abs(lo) or 1.0)
    top = LABEL_TOP + LABEL_ROW_HEIGHT * label_rows + (0.04 if label_rows else 0.0)
    bottom = 0.02 + LANE_HEIGHT * lanes
    height = (hi - lo) / (1 - top - bottom)
    return lo - bottom * height, hi + top * height


def _clips(
    lines: dict[AgentId, list[float]],
    faded_from: dict[AgentId, int],
    ylim: tuple[float, float],
    history: History,
) -> list[Clip]:
    out = []
    for agent, values in lines.items():
        cut = faded_from.get(agent)
        if cut is None:
            continue
        for above in (True, False):
            beyond = [
                i
                for i in range(cut, len(values))
                if values[i] == values[i]
                and (values[i] > ylim[1] if above else values[i] < ylim[0])
            ]
            if beyond:
                extreme = (max if above else min)(values[i] for i in beyond)
                out.append(Clip(agent, history.grid.at(beyond[0]), extreme, above))
    return out


def _describe(d: Decision) -> tuple[str, MarkerOutcome, str | None]:
    outcome = _OUTCOMES[outcome_of(d)]
    what = d.kind.value
    if d.kind == DecisionKind.SWITCH_MODEL and d.to_model:
        what += f" → {d.to_model}"
    reason = None
    if outcome == "suppressed":
        reason = d.suppressed_by
        what += f" ✕ {reason}"
    elif outcome == "dryRun":
        what += " (dry run)"
    return what, outcome, reason


def _y(line: list[float] | None, i: int, fallback: float, ylim: tuple[float, float]) -> float:
    y = line[i] if line is not None and 0 <= i < len(line) else math.nan
    if y != y:
        y = fallback
    return min(max(y, ylim[0]), ylim[1])


def panels(result: BacktestResult, *, label_chars: float = LABEL_CHARS_PER_AXIS) -> list[Panel]:
    """The panels the plot draws, in rule order (the budget last)."""
    spec = result.history.spec
    involved = result.rules_involved()
    decisions_of: dict[str, list[Decision]] = {}
    for d in result.decisions:
        decisions_of.setdefault(d.rule, []).append(d)
    fades = fade_points(result)
    disabled = _disabled_spans(result)
    out: list[Panel] = []
    for rule in spec.rules:
        # Agents acted on first, then those notified about, then those only in a systemic
        # episode: with more than MAX_LINES, the lines drawn are the telling ones.
        decisions = decisions_of.get(rule.name, [])
        acted = Counter(d.agent for d in decisions)
        notified = {n.agent for n in result.notifications if n.rule == rule.name}
        agents = sorted(
            involved.get(rule.name, []), key=lambda a: (-acted[a], a not in notified, a)
        )
        episodes = [ep for ep in result.systemic if ep.rule == rule.name]
        for cond in (*rule.all_of, *rule.any_of):
            panel = _condition_panel(result, rule, cond, agents, decisions)
            _fill(panel, result, rule, episodes, fades, disabled, label_chars)
            out.append(panel)
    if spec.budget is not None:
        panel = _budget_panel(result, spec.budget, involved, decisions_of)
        _fill(panel, result, None, [], fades, disabled, label_chars)
        out.append(panel)
    return out


def _condition_panel(
    result: BacktestResult,
    rule: Rule,
    cond: Condition,
    agents: list[AgentId],
    decisions: list[Decision],
) -> Panel:
    """One condition's lines and thresholds; the agents closest to it if it never fired."""
    h = result.history
    key = SeriesKey(cond.metric, cond.query, cond.window, h.spec.agent_label)
    what = cond.metric or "query"
    title = f"{rule.name}: {what}[{format_duration(cond.window)}] {cond.op.value} "
    title += format_threshold(cond.metric, cond.value)
    note = ""
    shown = agents
    if not shown:
        shown = _closest({a: h.series(key, a) for a in h.agents}, cond, 3)
        note = "never fired; the agents closest to the threshold"
    lines = {a: h.series(key, a) for a in shown[:MAX_LINES]}
    thresholds = [(cond.value, f"threshold {format_threshold(cond.metric, cond.value)}")]
    if cond.recover_value is not None and cond.recover_value != cond.value:
        recover = format_threshold(cond.metric, cond.recover_value)
        thresholds.append((cond.recover_value, f"recoverValue {recover}"))
    return Panel(
        title=title,
        rule=rule.name,
        ylabel=what,
        lines=lines,
        thresholds=thresholds,
        more=max(0, len(shown) - MAX_LINES),
        decisions=[d for d in decisions if d.agent in lines],
        note=note,
    )


def _budget_panel(
    result: BacktestResult,
    budget: Budget,
    involved: Mapping[str, Sequence[AgentId]],
    decisions_of: Mapping[str, list[Decision]],
) -> Panel:
    """The agents' spend against the limit and the soft stage; the largest spenders if the
    budget was never reached."""
    h = result.history
    stages = ("budget.soft", "budget.hard")
    acted = Counter(d.agent for stage in stages for d in decisions_of.get(stage, []))
    agents = sorted(
        {a for stage in stages for a in involved.get(stage, [])}, key=lambda a: (-acted[a], a)
    )
    note = ""
    if not agents:
        spends = {a: h.spend_series(a) for a in h.agents}
        agents = sorted(
            (a for a in spends if _finite(spends[a])),
            key=lambda a: -max(_finite(spends[a]), default=0.0),
        )[:3]
        note = "never reached; the largest spenders"
    thresholds = [(budget.limit_usd, f"limit {format_usd(budget.limit_usd)}")]
    if budget.soft is not None:
        soft = budget.limit_usd * budget.soft.at_percent / 100
        thresholds.append((soft, f"soft {budget.soft.at_percent:g}% {format_usd(soft)}"))
    lines = {a: h.spend_series(a) for a in agents[:MAX_LINES]}
    return Panel(
        title=f"budget: spend this {budget.period} (scope {budget.scope.value})",
        rule="budget",
        ylabel="USD",
        lines=lines,
        thresholds=thresholds,
        more=max(0, len(agents) - MAX_LINES),
        decisions=[d for stage in stages for d in decisions_of.get(stage, []) if d.agent in lines],
        note=note,
    )


def _fill(
    panel: Panel,
    result: BacktestResult,
    rule: Rule | None,
    episodes: list[SystemicEpisodeReport],
    fades: dict[AgentId, int],
    disabled: dict[AgentId, list[tuple[int, int]]],
    label_chars: float,
) -> None:
    """Spans, fading, markers, label rows, limits and clips of one panel."""
    h = result.history
    grid = h.grid
    last = grid.size - 1
    panel.faded_from = {a: fades[a] for a in panel.lines if a in fades}
    systemic = [
        (grid.index(ep.start), grid.index(ep.end) if ep.end is not None else last)
        for ep in episodes
    ]
    firing_starts = _fill_spans(panel, result, rule, systemic, disabled)
    drafts = _decision_drafts(panel, grid)
    if rule is not None:
        drafts += _held_back_drafts(panel, grid, rule, episodes, systemic, firing_starts)
        drafts += _notification_drafts(panel, grid, rule, result)

    placed, rows, unplaced = place_labels(drafts, h.grid.size, label_chars)
    panel.label_rows, panel.unlabelled = rows, unplaced
    # The fade note gets a row of its own under the labels, above the data.
    reserved = rows + (1 if panel.faded_from else 0)
    panel.ylim = _limits(
        panel.lines, panel.faded_from, panel.thresholds, reserved, len(panel.lanes)
    )
    fallback = panel.thresholds[0][0]

    def y_of(agent: AgentId | None, i: int) -> float:
        line = panel.lines.get(agent) if agent is not None else None
        return _y(line, i, fallback, panel.ylim)

    panel.markers = [
        Marker(grid.at(i), agent, kind, outcome, reason, y_of(agent, i), _names([agent], what))
        for i, agent, kind, outcome, reason, what in sorted(drafts, key=lambda d: d[0])
    ]
    panel.labels = [
        Label(text, grid.at(i), y_of(agent, i), agent, row, x, width)
        for text, i, agent, row, x, width in placed
    ]
    panel.clips = _clips(panel.lines, panel.faded_from, panel.ylim, h)


def _fill_spans(
    panel: Panel,
    result: BacktestResult,
    rule: Rule | None,
    systemic: list[tuple[int, int]],
    disabled: dict[AgentId, list[tuple[int, int]]],
) -> dict[AgentId, list[int]]:
    """The panel's systemic, pending, firing and disabled spans and its lanes; returns where
    each agent started firing."""
    h = result.history
    grid = h.grid
    spans: list[Span] = [Span("systemic", grid.at(lo), grid.at(hi)) for lo, hi in systemic]
    firing_starts: dict[AgentId, list[int]] = {}
    for agent in panel.lines:
        down = disabled.get(agent, [])
        if rule is not None:
            phases = rule_phases(h, rule, agent, down, systemic)
        else:
            phases = _budget_phases(result, agent, panel.thresholds, down)
        for phase, lo, hi in phases:
            spans.append(Span(phase, grid.at(lo), grid.at(hi), agent))
            if phase == "firing":
                firing_starts.setdefault(agent, []).append(lo)
        spans += [Span("disabled", grid.at(lo), grid.at(hi), agent) for lo, hi in down]
    panel.spans = spans
    panel.lanes = [a for a in panel.lines if any(s.agent == a for s in spans)]
    return firing_starts


def _decision_drafts(panel: Panel, grid: Grid) -> list[Draft]:
    drafts: list[Draft] = []
    for d in panel.decisions:
        what, outcome, reason = _describe(d)
        drafts.append((grid.index(d.at), d.agent, d.kind.value, outcome, reason, what))
    return drafts


def _held_back_drafts(
    panel: Panel,
    grid: Grid,
    rule: Rule,
    episodes: list[SystemicEpisodeReport],
    systemic: list[tuple[int, int]],
    firing_starts: dict[AgentId, list[int]],
) -> list[Draft]:
    """A marker where a systemic episode held back an agent's action (its first firing in
    the episode with no decision there)."""
    acts = [a.kind for a in rule.actions if a.kind != "notify"]
    held_kind = acts[0] if acts else "notify"
    decided = {(d.agent, grid.index(d.at)) for d in panel.decisions}
    drafts: list[Draft] = []
    for ep, (lo, hi) in zip(episodes, systemic, strict=True):
        for agent in ep.agents:
            if agent not in panel.lines:
                continue
            starts = [i for i in firing_starts.get(agent, []) if lo <= i <= hi]
            if starts and (agent, starts[0]) not in decided:
                what = f"{held_kind} held back ✕ {DecisionReason.SYSTEMIC_OUTAGE}"
                drafts.append(
                    (starts[0], agent, held_kind, "heldBack", DecisionReason.SYSTEMIC_OUTAGE, what)
                )
    return drafts


def _notification_drafts(
    panel: Panel, grid: Grid, rule: Rule, result: BacktestResult
) -> list[Draft]:
    """Fleet pages, and per-agent notifications of a rule whose only actions notify."""
    notify_only = not any(a.notify is None for a in rule.actions)
    drafts: list[Draft] = []
    for n in result.notifications:
        if n.rule != rule.name or n.state != "firing" or n.at is None:
            continue
        if n.agent is None:
            drafts.append((grid.index(n.at), None, "fleetPage", "notified", None, "fleet page"))
        elif notify_only and n.agent in panel.lines:
            drafts.append((grid.index(n.at), n.agent, "notify", "notified", None, "notified"))
    return drafts


def _budget_phases(
    result: BacktestResult,
    agent: AgentId,
    thresholds: list[tuple[float, str]],
    disabled: Sequence[tuple[int, int]],
) -> list[tuple[Literal["pending", "firing"], int, int]]:
    """Firing while the agent's spend is at or above the lowest stage (agent scope only:
    a policy-scope budget fires on the fleet's sum, which no agent's line shows)."""
    budget = result.history.spec.budget
    if budget is None or budget.scope != BudgetScope.AGENT:
        return []
    lowest = min(t for t, _ in thresholds)
    spend = result.history.spend_series(agent)
    out: list[tuple[Literal["pending", "firing"], int, int]] = []
    start: int | None = None
    for i, v in enumerate(spend):
        on = v == v and v >= lowest and not any(lo <= i < hi for lo, hi in disabled)
        if on and start is None:
            start = i
        elif not on and start is not None:
            out.append(("firing", start, i))
            start = None
    if start is not None and start < len(spend) - 1:
        out.append(("firing", start, len(spend) - 1))
    return out
