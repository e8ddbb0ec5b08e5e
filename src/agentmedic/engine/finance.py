"""Finance's budgets (AgentBudget, ClusterAgentBudget): figures, stages and verdicts.

Pure: the operator gathers each selected agent's spend (spent in the period so far, and
the spend over forecastWindow, its burn) and calls :func:`evaluate_budget` with the
budget's spec; it returns the budget's figures for status and one
:class:`BudgetVerdict` per agent for the policies' evaluation.

- **Period**: a calendar day, week (from Monday) or month starting at local midnight in
  the budget's timeZone, or a rolling duration ending now (:func:`period_of`).
- **Forecast**: spend so far plus the burn rate of forecastWindow projected to the
  period's end (a rolling period: the burn rate over a whole period).
- **Stages**: a stage is reached when spend reaches atPercent of limitUSD, or, with
  onForecast, when the forecast does. ``total`` judges the selection's sum once and every
  agent gets its verdict; ``perAgent`` judges each agent on its own spend. In a calendar
  period spend never falls, so a reached stage stays reached until the period ends; in a
  rolling period a reached stage is held until spend falls below 90% of its threshold
  (``held``), so it does not flap at the line.
- **Verdict**: per agent, the strictest response among the stages reached (stop >
  downgrade > notify; between equals the furthest stage), with its evidence in people's
  units: ``$412.30 of $500.00 (82 %) in December 2026 (Europe/Berlin); forecast
  $530.10``. An agent with no stage reached still gets a verdict (``stage`` None): it
  tells the policy which period the budget is in, so that a change the budget made last
  period can be undone (onNewPeriod restore).
- **No data**: an agent without a spend figure adds nothing to a total (spend is never
  negative: the sum of the others is a lower bound, and a stage it reaches is reached);
  perAgent, it reaches no stage. A budget none of whose agents has data reaches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.budget import AgentBudgetSpec, BudgetAppliesTo, BudgetStage, StageResponse
from agentmedic.api.types import OnNewPeriod, Op
from agentmedic.api.units import format_usd
from agentmedic.engine.conditions import ConditionEvidence, Evidence
from agentmedic.engine.periods import Period, describe_period, elapsed_window, period_of
from agentmedic.engine.series import AgentId

__all__ = [
    "EXTERNAL_PREFIX",
    "RESPONSE_KIND",
    "ROLLING_HOLD",
    "AgentSpendFigures",
    "BudgetEvaluation",
    "BudgetRef",
    "BudgetVerdict",
    "evaluate_budget",
    "is_external_rule",
    "response_strength",
]

EXTERNAL_PREFIX = "budget."
"""External budget stages are rules named ``budget.<kind>/<ns>/<name>/<stage>``: the prefix
makes them budget stages for status and notices, the slashes tell them apart from a
policy's own ``budget.soft`` and ``budget.hard``."""

ROLLING_HOLD = 0.9
"""A reached stage of a rolling period is held until spend falls below 90% of its
threshold (the same hysteresis as a policy budget's rolling stages)."""

RESPONSE_KIND = {StageResponse.STOP: "scaleToZero", StageResponse.DOWNGRADE: "switchModel"}
"""The workload action a response asks for (notify asks for none)."""

_STRENGTH = {StageResponse.NOTIFY: 0, StageResponse.DOWNGRADE: 2, StageResponse.STOP: 3}


def response_strength(response: StageResponse | None) -> int:
    """stop 3 > downgrade 2 > notify 0, on the scale of the policies' action strengths."""
    return 0 if response is None else _STRENGTH[response]


def is_external_rule(name: str) -> bool:
    """True for the rule name of an AgentBudget's or ClusterAgentBudget's stage."""
    return name.startswith(EXTERNAL_PREFIX) and "/" in name


@dataclass(frozen=True, slots=True, order=True)
class BudgetRef:
    """Which budget: an AgentBudget (with its namespace) or a ClusterAgentBudget."""

    kind: str
    """AgentBudget or ClusterAgentBudget."""
    namespace: str
    """The AgentBudget's namespace; empty for a ClusterAgentBudget."""
    name: str

    def __str__(self) -> str:
        """``AgentBudget team-a/ceiling`` or ``ClusterAgentBudget payments``."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def rule(self, stage: str) -> str:
        """The engine's rule name of one of its stages."""
        who = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{EXTERNAL_PREFIX}{self.kind.lower()}/{who}/{stage}"

    def owns(self, rule: str) -> bool:
        """True when ``rule`` is one of this budget's stages."""
        return rule.startswith(self.rule(""))


@dataclass(frozen=True, slots=True)
class AgentSpendFigures:
    """One agent's spend, as the operator measured it."""

    spent: float | None
    """USD spent in the period so far; None when there is no data."""
    burn: float | None = None
    """USD spent over forecastWindow; None when there is no data."""


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """What one budget says about one agent this cycle."""

    budget: BudgetRef
    period_start: datetime
    """The start of the budget's current period (a rolling one: now - duration)."""
    rolling: bool
    on_new_period: OnNewPeriod
    stage: str | None = None
    """The deciding stage: the strictest response reached (None: no stage reached)."""
    response: StageResponse | None = None
    evidence: str = ""
    """The figures in people's units, naming the budget."""
    conditions: tuple[ConditionEvidence, ...] = ()
    """The comparison that reached the stage, for the decision's evidence."""

    @property
    def rule(self) -> str | None:
        """The engine's rule name of the deciding stage."""
        return None if self.stage is None else self.budget.rule(self.stage)

    @property
    def strength(self) -> int:
        """The response's strength (stop 3, downgrade 2, notify 0)."""
        return response_strength(self.response)

    def as_evidence(self, held_since: datetime | None, at: datetime) -> Evidence:
        """The verdict as a decision's evidence (``holds()`` re-derives it)."""
        return Evidence("any", self.conditions, held_since, timedelta(0), at)


@dataclass(frozen=True, slots=True)
class _Figures:
    spent: float | None
    burn: float | None
    forecast: float | None


@dataclass(frozen=True)
class BudgetEvaluation:
    """One budget evaluated: its figures for status and its verdict per agent."""

    period: Period
    spent: float | None
    """Spend so far (perAgent: the sum over agents); None without any data."""
    burn_per_hour: float | None
    """The burn rate over forecastWindow, USD per hour (the selection's)."""
    forecast: float | None
    """Projected spend at the period's end (perAgent: the sum)."""
    stage: str
    """The furthest stage reached (perAgent: by any agent); empty for none."""
    top: tuple[tuple[AgentId, float], ...]
    """Agents by spend, most first."""
    verdicts: Mapping[AgentId, BudgetVerdict]
    """Every selected agent's verdict."""
    reached: Mapping[AgentId | None, frozenset[str]] = field(default_factory=dict)
    """Stages reached (None: the total's), to pass back as ``held`` next cycle."""


def evaluate_budget(
    ref: BudgetRef,
    spec: AgentBudgetSpec,
    spend: Mapping[AgentId, AgentSpendFigures],
    now: datetime,
    held: Mapping[AgentId | None, frozenset[str]] | None = None,
) -> BudgetEvaluation:
    """The budget's figures and each agent's verdict. ``spend`` holds every agent the
    budget selects; ``held`` is the previous evaluation's ``reached`` (rolling periods)."""
    period = period_of(spec.period, spec.time_zone, now)
    held = held or {}
    rate = _Rate(spec, period, now)
    per = {a: rate.figures(f.spent, f.burn) for a, f in spend.items()}
    spent = _sum(f.spent for f in per.values())
    burn = _sum(f.burn for f in per.values())
    total = rate.figures(spent, burn)
    where = describe_period(spec.period, spec.time_zone, period)
    window = elapsed_window(period, now)
    verdicts: dict[AgentId, BudgetVerdict] = {}
    reached: dict[AgentId | None, frozenset[str]] = {}
    furthest = ""
    if spec.applies_to == BudgetAppliesTo.TOTAL:
        stages = _reached(spec, total, held.get(None, frozenset()), period.rolling)
        reached[None] = frozenset(s.name for s, _ in stages)
        furthest = _furthest(s for s, _ in stages)
        for agent in spend:
            verdicts[agent] = _verdict(ref, spec, period, stages, total, (where, window, "total"))
    else:
        names: set[str] = set()
        for agent, fig in per.items():
            stages = _reached(spec, fig, held.get(agent, frozenset()), period.rolling)
            reached[agent] = frozenset(s.name for s, _ in stages)
            names.update(reached[agent])
            who = f"{agent.namespace}/{agent.name}"
            verdicts[agent] = _verdict(ref, spec, period, stages, fig, (where, window, who))
        furthest = _furthest(s for s in spec.stages if s.name in names)
    top = sorted(
        ((a, f.spent) for a, f in per.items() if f.spent is not None),
        key=lambda x: (-x[1], x[0].namespace, x[0].name),
    )
    return BudgetEvaluation(
        period=period,
        spent=spent,
        burn_per_hour=None if burn is None else burn * 3600 / rate.window_seconds,
        forecast=_sum(f.forecast for f in per.values())
        if spec.applies_to == BudgetAppliesTo.PER_AGENT
        else total.forecast,
        stage=furthest,
        top=tuple(top),
        verdicts=verdicts,
        reached=reached,
    )


class _Rate:
    """The forecast arithmetic of one budget at one moment."""

    def __init__(self, spec: AgentBudgetSpec, period: Period, now: datetime) -> None:
        self.window_seconds = max(spec.forecast_window.total_seconds(), 1.0)
        if period.rolling:
            self.horizon, self.keep = period.length.total_seconds(), 0.0
        else:
            self.horizon, self.keep = max(0.0, (period.end - now).total_seconds()), 1.0

    def figures(self, spent: float | None, burn: float | None) -> _Figures:
        if spent is None or burn is None:
            return _Figures(spent, burn, None)
        projected = spent * self.keep + burn / self.window_seconds * self.horizon
        return _Figures(spent, burn, max(projected, spent) if self.keep else projected)


def _sum(values: Iterable[float | None]) -> float | None:
    out: float | None = None
    for v in values:
        if v is not None:
            out = v + (out or 0.0)
    return out


def _threshold(spec: AgentBudgetSpec, stage: BudgetStage) -> float:
    # at_percent / 100 first: at 100 % the line is exactly limitUSD, not a rounding above it
    return spec.limit_usd * (stage.at_percent / 100)


def _reached(
    spec: AgentBudgetSpec, fig: _Figures, held: frozenset[str], rolling: bool
) -> list[tuple[BudgetStage, float]]:
    """The stages whose threshold the figures reach, each with the line it was judged
    against (a held rolling stage: 90% of its threshold)."""
    if fig.spent is None:
        return []
    out = []
    for stage in spec.stages:
        k = ROLLING_HOLD if rolling and stage.name in held else 1.0
        line = _threshold(spec, stage) * k
        if fig.spent >= line or (
            stage.on_forecast and fig.forecast is not None and fig.forecast >= line
        ):
            out.append((stage, line))
    return out


def _furthest(stages: Iterable[BudgetStage]) -> str:
    """The reached stage with the highest atPercent (the later in spec order on a tie)."""
    best: BudgetStage | None = None
    for s in stages:
        if best is None or s.at_percent >= best.at_percent:
            best = s
    return "" if best is None else best.name


def _verdict(
    ref: BudgetRef,
    spec: AgentBudgetSpec,
    period: Period,
    stages: list[tuple[BudgetStage, float]],
    fig: _Figures,
    context: tuple[str, timedelta, str],
) -> BudgetVerdict:
    """The verdict of the strictest stage reached; ``context`` is (the period for people,
    the spend window, whose spend: ``total`` or the agent)."""
    base = BudgetVerdict(ref, period.start, period.rolling, spec.on_new_period)
    if not stages:
        return base
    order = {s.name: i for i, s in enumerate(spec.stages)}
    deciding, line = max(
        stages,
        key=lambda sl: (response_strength(sl[0].response), sl[0].at_percent, order[sl[0].name]),
    )
    assert fig.spent is not None
    where, window, whose = context
    limit = spec.limit_usd
    share = round(fig.spent / limit * 100)
    text = f"{ref} ({whose}): {format_usd(fig.spent)} of {format_usd(limit)} ({share} %) in {where}"
    if fig.forecast is not None:
        text += f"; forecast {format_usd(fig.forecast)}"
    conditions = [ConditionEvidence("cost_usd", None, window, Op.GE, line, fig.spent)]
    if deciding.on_forecast:
        conditions.append(
            ConditionEvidence(
                "cost_usd_forecast", None, spec.forecast_window, Op.GE, line, fig.forecast
            )
        )
    return BudgetVerdict(
        ref,
        period.start,
        period.rolling,
        spec.on_new_period,
        stage=deciding.name,
        response=deciding.response,
        evidence=f"{text}; stage {deciding.name} ({deciding.response.value})",
        conditions=tuple(conditions),
    )
