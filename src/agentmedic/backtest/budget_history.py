"""The spend history budgets are replayed on: every agent's spend per step, exact at the
step boundaries.

One range query per cost source for all the budgets' namespaces at once (split in chunks
of at most :data:`~agentmedic.backtest.history.MAX_POINTS` points): the raw counters
themselves, not ``increase()`` (which extrapolates to the window's edges, so that adjacent
windows never add up). The value of a counter at a grid moment is its last sample at or
before it (Prometheus' lookback); the spend of a step ``(t[j-1], t[j]]`` is

- the difference of the counter's values at the two moments,
- the new value after a drop (a counter reset: the process restarted and counted from
  zero),
- for a series first seen after the history's first moment, its first value (it was born
  then, as the SDK's series are, from zero).

Steps are summed per agent over its models. With ``costSource: priceList`` the token
counters are read instead and priced per model (:class:`~agentmedic.metrics.pricing.PriceBook`):
input at the input price, the cached part of input at the cache discount, output at the
output price. The grid starts early enough for every budget's first period
(:func:`~agentmedic.backtest.budgets.earliest_needed`), so spend so far is known at the
range's first moment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentmedic.api.budget import CostSource
from agentmedic.api.metric_names import COST_USD_TOTAL, TOKENS_TOTAL
from agentmedic.backtest.budgets import BudgetDoc, BudgetReplay, earliest_needed, replay_budget
from agentmedic.backtest.columns import BacktestDataError, Grid
from agentmedic.backtest.history import MAX_POINTS, OnQuery
from agentmedic.engine.series import AgentId
from agentmedic.metrics import MetricsBackend, MetricsError, promql
from agentmedic.metrics.pricing import TOKEN_TYPES, PriceBook

__all__ = [
    "BudgetRun",
    "SpendHistory",
    "budget_grid",
    "fetch_spend",
    "replay_budgets",
    "step_spend",
]


def budget_grid(
    docs: Sequence[BudgetDoc], start: datetime, end: datetime, step: timedelta
) -> tuple[Grid, int]:
    """The fetch grid (the backtest's, extended back to the earliest moment a budget needs,
    plus one moment for the first step's baseline) and the index of ``start`` in it."""
    earliest = min((earliest_needed(d, start) for d in docs), default=start)
    first = math.ceil((start - earliest) / step) + 1
    return Grid(start - first * step, end, step), first


def step_spend(values: Sequence[float]) -> tuple[list[float], bool, int]:
    """Per-step increases of one counter's values on the grid (NaN: no sample), whether it
    was born after the first moment, and the resets seen."""
    out = [0.0] * len(values)
    last: float | None = None
    born = False
    resets = 0
    for j, value in enumerate(values):
        if math.isnan(value):
            continue
        if last is None:
            if j > 0:
                out[j] = value
                born = True
        elif value >= last:
            out[j] = value - last
        else:
            out[j] = value
            resets += 1
        last = value
    return out, born, resets


@dataclass
class SpendHistory:
    """Spend per agent and step, from one cost source."""

    steps: dict[AgentId, list[float]] = field(default_factory=dict)
    series: int = 0
    born: int = 0
    resets: int = 0
    unpriced: set[str] = field(default_factory=set)

    def add(self, agent: AgentId, spend: Sequence[float], weight: float = 1.0) -> None:
        column = self.steps.setdefault(agent, [0.0] * len(spend))
        for j, value in enumerate(spend):
            if value:
                column[j] += value * weight


def _selector(
    metric: str, namespaces: Sequence[str], namespace_label: str, agent_label: str
) -> str:
    ns = promql.check_label_name(namespace_label, "--namespace-label")
    agent = promql.check_label_name(agent_label, "agent label")
    names = "|".join(promql.escape_regex(n) for n in sorted(set(namespaces)))
    matchers = [f'{agent}!=""', f"{ns}=~{promql.quote_string(names)}"]
    if metric == TOKENS_TOTAL:
        types = "|".join(promql.escape_regex(t) for t in sorted(TOKEN_TYPES))
        matchers.append(f"type=~{promql.quote_string(types)}")
    return f"{metric}{{{', '.join(matchers)}}}"


def _coefficient(book: PriceBook, model: str, kind: str) -> float | None:
    """USD per token of this type (cached input: its discount against the input price,
    since cached tokens are also counted as input)."""
    price = book.price(model)
    if price is None:
        return None
    if kind == "input":
        return price.input / 1e6
    if kind == "output":
        return price.output / 1e6
    cached = price.input if price.cached_input is None else price.cached_input
    return (cached - price.input) / 1e6


async def fetch_spend(
    backend: MetricsBackend,
    grid: Grid,
    source: CostSource,
    namespaces: Sequence[str],
    *,
    namespace_label: str = "namespace",
    agent_label: str = "agent",
    prices: PriceBook | None = None,
    max_points: int = MAX_POINTS,
    on_query: OnQuery | None = None,
) -> SpendHistory:
    """Every agent's spend per step of ``grid`` in ``namespaces`` from one cost source."""
    metric = COST_USD_TOTAL if source == CostSource.REPORTED else TOKENS_TOTAL
    text = _selector(metric, namespaces, namespace_label, agent_label)
    values: dict[tuple[tuple[str, str], ...], list[float]] = {}
    chunks = grid.chunks(max_points)
    for done, (lo, hi) in enumerate(chunks, start=1):
        try:
            answer = await backend.query_range(text, grid.at(lo), grid.at(hi), grid.step)
        except MetricsError as exc:
            raise BacktestDataError(f"budget spend ({metric}): {exc}") from None
        for series in answer.series:
            key = tuple(sorted((k, v) for k, v in series.labels.items() if k != "__name__"))
            column = values.setdefault(key, [math.nan] * grid.size)
            for ts, value in series.points:
                j = round((ts - grid.start.timestamp()) / grid.step.total_seconds())
                if 0 <= j < grid.size:
                    column[j] = value
        if on_query is not None:
            on_query(done, len(chunks), f"budget spend ({metric})")
    history = SpendHistory()
    book = prices or PriceBook.default()
    for key, column in values.items():
        labels = dict(key)
        agent = AgentId(labels.get(namespace_label, ""), labels.get(agent_label, ""))
        spend, born, resets = step_spend(column)
        history.series += 1
        history.born += born
        history.resets += resets
        weight = 1.0
        if metric == TOKENS_TOTAL:
            coefficient = _coefficient(book, labels.get("model", ""), labels.get("type", ""))
            if coefficient is None:
                if any(spend):
                    history.unpriced.add(labels.get("model", "") or "(no model label)")
                history.steps.setdefault(agent, [0.0] * grid.size)  # in scope, unpriced
                continue
            weight = coefficient
        history.add(agent, spend, weight)
    return history


@dataclass
class BudgetRun:
    """Every budget's replay over one range."""

    start: datetime
    end: datetime
    step: timedelta
    replays: list[BudgetReplay]
    queries: int = 0

    @property
    def grid(self) -> Grid:
        """The replay's grid (the backtest's)."""
        return Grid(self.start, self.end, self.step)


def _scope_warnings(doc: BudgetDoc) -> list[str]:
    out = []
    if doc.spec.selector is not None:
        out.append(
            "spec.selector picks agents by their workloads' labels, which the history does "
            "not carry: every agent of the namespaces with history counts"
        )
    selector = getattr(doc.spec, "namespace_selector", None)
    if selector is not None and doc.selected is None:
        out.append(
            "spec.namespaceSelector needs the cluster's Namespaces: only spec.namespaces "
            "are replayed"
        )
    return out


def _history_warnings(history: SpendHistory, source: CostSource) -> list[str]:
    out = []
    if history.born:
        out.append(
            f"{history.born} series appeared during the history; their first value was "
            "counted from zero"
        )
    if source == CostSource.PRICE_LIST and history.unpriced:
        out.append(
            "no price for model(s) "
            + ", ".join(sorted(history.unpriced))
            + ": their tokens are not in the spend; add them to the --price-list file"
        )
    return out


async def replay_budgets(
    backend: MetricsBackend,
    docs: Sequence[BudgetDoc],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    namespace_label: str = "namespace",
    agents: Sequence[str] | None = None,
    prices: PriceBook | None = None,
    prices_source: str = "",
    on_query: OnQuery | None = None,
) -> BudgetRun:
    """Fetch the spend the budgets need (one query per cost source and chunk) and replay
    each budget over ``[start, end]``."""
    grid, first = budget_grid(docs, start, end, step)
    run = BudgetRun(start=start, end=end, step=step, replays=[])
    histories: dict[CostSource, SpendHistory] = {}
    for source in CostSource:
        scoped = [d for d in docs if d.spec.cost_source == source]
        namespaces = sorted({n for d in scoped for n in d.namespaces})
        if not namespaces:
            continue
        histories[source] = await fetch_spend(
            backend, grid, source, namespaces,
            namespace_label=namespace_label, prices=prices, on_query=on_query,
        )  # fmt: skip
        run.queries += len(grid.chunks(MAX_POINTS))
    for doc in docs:
        history = histories.get(doc.spec.cost_source, SpendHistory())
        wanted = set(doc.namespaces)
        steps = {
            a: column
            for a, column in history.steps.items()
            if a.namespace in wanted and (not agents or a.name in agents)
        }
        replay = replay_budget(doc, grid, steps, first)
        replay.warnings += _scope_warnings(doc) + _history_warnings(history, doc.spec.cost_source)
        if not steps:
            replay.warnings.append(
                f"no agent of {', '.join(sorted(wanted))} has {doc.spec.cost_source.value} "
                "cost history in the range"
            )
        if doc.spec.cost_source == CostSource.PRICE_LIST:
            replay.prices = prices_source
        run.replays.append(replay)
    return run
