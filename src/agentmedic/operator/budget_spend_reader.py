"""A budget's spend, read from its metrics backend for :class:`~agentmedic.operator.
budget_cycle.BudgetService`.

One query per (metric, window) per backend for every budget together: ``cost_usd`` over
each elapsed period and each forecastWindow (costSource reported), token counts by model
and type (costSource priceList) priced by the named ModelPriceList. A budget whose queries
failed, or whose backend reference does not resolve, gets a reason instead of figures; a
priceList budget also gets the models its price list cannot price (their tokens add
nothing, so its spend is a lower bound: status says so, condition Priced).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from agentmedic.api.budget import CostSource
from agentmedic.engine.finance import AgentSpendFigures
from agentmedic.engine.periods import elapsed_window, period_of
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import Catalog, MetricsBackend, MetricsError, fetch_samples
from agentmedic.metrics.budget_spend import TokenCounts, fetch_tokens
from agentmedic.metrics.pricing import PriceBook
from agentmedic.operator.budgets import BudgetBook, Selected
from agentmedic.operator.refs import RefProblem, RefResolver
from agentmedic.operator.settings import OperatorSettings

__all__ = ["Key", "Spend", "SpendReader"]

Key = tuple[str, str, str]
"""A budget's key in the book: (kind, namespace, name)."""


@dataclass
class Spend:
    """What one read found."""

    spend: dict[Key, dict[AgentId, AgentSpendFigures]]
    """Each budget's figures per agent (budgets read without a problem)."""
    errors: dict[Key, str]
    """Why a budget has no figures this run (no evidence: its verdicts are held)."""
    unpriced: dict[Key, frozenset[str]]
    """priceList budgets: the models with tokens that their price list cannot price."""


class SpendReader:
    """Reads every budget's spend; one per BudgetService."""

    def __init__(
        self,
        book: BudgetBook,
        backend: MetricsBackend,
        catalog: Catalog,
        settings: OperatorSettings,
        refs: RefResolver | None,
    ) -> None:
        self._book = book
        self._backend = backend
        self._catalog = catalog
        self._settings = settings
        self._refs = refs

    async def read(self, selected: Mapping[Key, Selected], now: datetime) -> Spend:
        """Each budget's spend per agent, from the backend it names (the operator's by
        default), one query per (metric, window) per backend; and why a budget has none
        this run (its backend reference does not resolve: no evidence, verdicts held)."""
        groups: dict[str, tuple[MetricsBackend, dict[Key, Selected]]] = {}
        errors: dict[Key, str] = {}
        for key, sel in selected.items():
            spec = self._book.entries[key].spec
            assert spec is not None
            ref = spec.metrics_backend_ref
            if ref is None or self._refs is None:
                groups.setdefault("", (self._backend, {}))[1][key] = sel
                continue
            route = await self._refs.backend(ref, self._book.entries[key].ref.namespace or "")
            if route is None:
                errors[key] = f"{ref}: not read yet"
            elif isinstance(route, RefProblem):
                errors[key] = str(route)
            else:
                groups.setdefault(route.backend_id, (route.backend, {}))[1][key] = sel
        out = Spend({}, errors, {})
        for backend, members in groups.values():
            await self._read_from(backend, members, now, out)
        return out

    async def _read_from(
        self,
        backend: MetricsBackend,
        selected: Mapping[Key, Selected],
        now: datetime,
        out: Spend,
    ) -> None:
        """The budgets of one backend into ``out``: their spend per agent, why a budget has
        none, the models priceList budgets cannot price."""
        reported: dict[SeriesKey, set[AgentId]] = {}
        tokens: dict[timedelta, set[AgentId]] = {}
        plan: dict[Key, tuple[timedelta, timedelta]] = {}
        for key, sel in selected.items():
            spec = self._book.entries[key].spec
            assert spec is not None
            if not sel.agents:
                continue
            elapsed = elapsed_window(period_of(spec.period, spec.time_zone, now), now)
            windows = (elapsed, spec.forecast_window)
            plan[key] = windows
            for w in windows:
                if spec.cost_source == CostSource.REPORTED:
                    reported.setdefault(SeriesKey("cost_usd", None, w), set()).update(sel.agents)
                else:
                    tokens.setdefault(w, set()).update(sel.agents)
        samples, counted, failed = await self._query(backend, reported, tokens, now)
        errors = out.errors
        for key, (elapsed, recent) in plan.items():
            entry = self._book.entries[key]
            spec = entry.spec
            assert spec is not None
            chosen = selected[key].agents
            if spec.cost_source == CostSource.REPORTED:
                ks, kb = SeriesKey("cost_usd", None, elapsed), SeriesKey("cost_usd", None, recent)
                problem = failed.get(ks) or failed.get(kb)
                if problem is not None:
                    errors[key] = problem
                    continue
                out.spend[key] = {
                    a: AgentSpendFigures(
                        (samples.get(a) or {}).get(ks), (samples.get(a) or {}).get(kb)
                    )
                    for a in chosen
                }
                continue
            problem = failed.get(elapsed) or failed.get(recent)
            book = self._book.price_book(spec.price_list)
            if problem is None and book is None:
                problem = f"the ModelPriceList {spec.price_list} is invalid; fix it to price tokens"
            if problem is not None:
                errors[key] = problem
                continue
            assert book is not None
            unpriced: set[str] = set()
            out.spend[key] = {
                a: AgentSpendFigures(
                    _priced(book, counted[elapsed].get(a), unpriced),
                    _priced(book, counted[recent].get(a), unpriced),
                )
                for a in chosen
            }
            out.unpriced[key] = frozenset(unpriced)
        for key in selected:
            if key not in plan:
                out.spend[key] = {}

    async def _query(
        self,
        backend: MetricsBackend,
        reported: Mapping[SeriesKey, set[AgentId]],
        tokens: Mapping[timedelta, set[AgentId]],
        now: datetime,
    ) -> tuple[
        Mapping[AgentId, Mapping[SeriesKey, float | None]],
        dict[timedelta, TokenCounts],
        dict[SeriesKey | timedelta, str],
    ]:
        """One query per (metric, window): the cost samples, the token counts, and what
        failed (by key or window)."""
        samples: Mapping[AgentId, Mapping[SeriesKey, float | None]] = {}
        failed: dict[SeriesKey | timedelta, str] = {}
        if reported:
            try:
                samples, stats = await fetch_samples(
                    backend,
                    reported,
                    now,
                    self._catalog,
                    namespace_label=self._settings.namespace_label,
                    max_concurrency=self._settings.max_concurrent_queries,
                )
                failed.update({k: str(e) for k, e in stats.errors.items()})
            except MetricsError as exc:
                failed.update({k: str(exc) for k in reported})
        counted: dict[timedelta, TokenCounts] = {}
        for window, agents in tokens.items():
            try:
                counted[window] = await fetch_tokens(
                    backend,
                    window,
                    agents,
                    now,
                    namespace_label=self._settings.namespace_label,
                )
            except (MetricsError, ValueError) as exc:
                failed[window] = str(exc)
        return samples, counted, failed


def _priced(
    book: PriceBook, counts: Mapping[tuple[str, str], float] | None, unpriced: set[str]
) -> float | None:
    """USD for an agent's token counts; None without counts. Tokens of a model the book
    cannot price add nothing (the figure is then a lower bound); the model is added to
    ``unpriced``."""
    if counts is None:
        return None
    usd, missing = book.spend(counts)
    unpriced.update(missing)
    return float(usd)
