"""Finance's budgets evaluated on a coalesced schedule of their own.

:class:`BudgetService` watches AgentBudgets, ClusterAgentBudgets and ModelPriceLists (and
Namespaces' labels while a ClusterAgentBudget selects namespaces by label) and evaluates
every budget together every :data:`BUDGET_INTERVAL` (or the shortest interval of the
policies they act through, when shorter), or at once (coalesced) when one of them
changes. One evaluation:

1. select each valid budget's agents among the agents of the AgentPolicies this replica
   evaluates (:meth:`~agentmedic.operator.budgets.BudgetBook.select`);
2. fetch spend, one query per (metric, window) for all budgets: ``cost_usd`` over each
   elapsed period and each forecastWindow (costSource reported), token counts by model
   and type (costSource priceList) priced by the named ModelPriceList;
3. :func:`~agentmedic.engine.finance.evaluate_budget` per budget, and the verdicts per
   agent published for the policies' cycles, which act on them;
4. status through the status subresource, only when it changed
   (:mod:`~agentmedic.operator.budget_status`);
5. a reached stage told to its channels once per (budget, stage, period)
   (:mod:`~agentmedic.operator.budget_notices`).

A budget whose queries failed is held: its previous verdicts stand (so nothing the
budget started is undone or repeated on a backend's fault) and MetricsAvailable=False
says why. Only the leader evaluates and writes.

A rolling period's stages are held until spend falls below 90% of their threshold. The
first evaluation of a budget after start-up, and after this replica became leader again,
takes what is held from the budget's status (heldStages) as the API server shows it, so a
restart neither releases a held stage nor reaches it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from agentmedic.api.budget import (
    BUDGET_KIND,
    BUDGET_PLURAL,
    CLUSTER_BUDGET_KIND,
    CLUSTER_BUDGET_PLURAL,
    PRICE_LIST_PLURAL,
    CostSource,
)
from agentmedic.api.types import GROUP, VERSION
from agentmedic.engine.finance import AgentSpendFigures, BudgetVerdict, evaluate_budget
from agentmedic.engine.periods import elapsed_window, period_of
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.kube import AsyncKube, CustomObjects, KubeError
from agentmedic.metrics import Catalog, MetricsBackend, MetricsError, fetch_samples
from agentmedic.metrics.budget_spend import TokenCounts, fetch_tokens
from agentmedic.operator.budget_notices import BudgetNotices
from agentmedic.operator.budget_scope import BudgetScopes
from agentmedic.operator.budget_status import (
    build_status,
    held_from_status,
    invalid_status,
    not_ready_status,
    price_list_status,
    status_due,
    status_patch,
    wire,
)
from agentmedic.operator.budget_watch import ResourceWatch, budget_paths, namespaces_path
from agentmedic.operator.budgets import BudgetBook, BudgetEntry, Selected, price_list_problems
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.refs import RefProblem, RefResolver
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.watch import WorkloadCache

__all__ = ["BUDGET_INTERVAL", "BudgetService"]

log = logging.getLogger(__name__)

BUDGET_INTERVAL = timedelta(seconds=60)
"""How often every budget is evaluated when nothing changes (a change evaluates at once)."""

_CLUSTER_SCOPED: Any = None
"""The namespace argument of a cluster-scoped object's path."""

_PLURAL = {BUDGET_KIND: BUDGET_PLURAL, CLUSTER_BUDGET_KIND: CLUSTER_BUDGET_PLURAL}


class BudgetService:
    """The watches, the book, one evaluation at a time, and its writes."""

    def __init__(
        self,
        http: AsyncKube,
        objects: CustomObjects,
        notices: BudgetNotices,
        backend: MetricsBackend,
        catalog: Catalog,
        settings: OperatorSettings,
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
        refs: RefResolver | None = None,
    ) -> None:
        self._refs = refs
        """Resolves a budget's spec.metricsBackendRef (a team's own tenant)."""
        self.book = BudgetBook()
        self._http = http
        self._objects = objects
        self._notices = notices
        self._backend = backend
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._leading = leading
        self.wake = asyncio.Event()
        self.watches: dict[str, list[ResourceWatch]] = {}
        self._namespaces: ResourceWatch | None = None
        self._lock = asyncio.Lock()
        self._scopes: BudgetScopes | None = None
        self._price_lists_due: list[tuple[dict[str, Any], int | None, list[str]]] = []
        self._lapsed = False
        """Leadership was lost since the last evaluation: what is in memory may be stale."""
        self.evaluations = 0

    # ------------------------------------------------------------------ watches

    def start(self) -> None:
        for plural, paths in budget_paths(
            self._settings.namespaces, self._settings.read_cluster_kinds
        ).items():
            self.watches[plural] = [
                ResourceWatch(self._http, p, self.wake.set, optional=optional)
                for p, optional in paths
            ]
            for w in self.watches[plural]:
                w.start()

    async def aclose(self) -> None:
        if self._scopes is not None:
            self._scopes.close()
        for w in self._all_watches():
            await w.aclose()

    def _all_watches(self) -> list[ResourceWatch]:
        out = [w for ws in self.watches.values() for w in ws]
        return out + ([self._namespaces] if self._namespaces is not None else [])

    def _items(self, plural: str) -> list[dict[str, Any]] | None:
        """The objects of a kind; None until every watch of it has listed."""
        out: list[dict[str, Any]] = []
        for w in self.watches.get(plural, []):
            if not w.synced.is_set():
                return None
            out.extend(w.items.values())
        return out

    def _sync_book(self) -> bool:
        """Bring the book in line with the watches; False while they have not listed."""
        budgets = self._items(BUDGET_PLURAL)
        cluster = self._items(CLUSTER_BUDGET_PLURAL)
        prices = self._items(PRICE_LIST_PLURAL)
        if budgets is None or cluster is None or prices is None:
            return False
        for obj in budgets:
            obj.setdefault("kind", BUDGET_KIND)
        for obj in cluster:
            obj.setdefault("kind", CLUSTER_BUDGET_KIND)
        self.book.sync([*budgets, *cluster])
        self.book.price_lists = {}
        for obj in prices:
            book, problems = price_list_problems(obj)
            self.book.price_lists[(obj.get("metadata") or {}).get("name", "")] = book
            self._price_lists_due.append((obj, None if book is None else len(book), problems))
        wants_labels = any(
            e.cluster is not None and e.cluster.namespace_selector is not None
            for e in self.book.entries.values()
        )
        if wants_labels and self._namespaces is None:
            self._namespaces = ResourceWatch(self._http, namespaces_path(), self.wake.set)
            self._namespaces.start()
        if self._namespaces is not None and self._namespaces.synced.is_set():
            self.book.namespace_labels = {
                name: dict((obj.get("metadata") or {}).get("labels") or {})
                for (_, name), obj in self._namespaces.items.items()
            }
        return True

    def _labels_ready(self, entry: BudgetEntry) -> bool:
        cluster = entry.cluster
        if cluster is None or cluster.namespace_selector is None:
            return True
        return self._namespaces is not None and self._namespaces.synced.is_set()

    # ------------------------------------------------------------------ the loop

    async def loop(
        self, policies: Callable[[], Iterable[PolicyEntry]], cache: WorkloadCache
    ) -> None:
        """Evaluate every BUDGET_INTERVAL, or at once after a change; never raises."""
        while True:
            shortest = min(
                (e.spec.interval for e in policies() if e.policy is not None),
                default=BUDGET_INTERVAL,
            )
            try:
                async with asyncio.timeout(min(shortest, BUDGET_INTERVAL).total_seconds()):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            await asyncio.sleep(0.2)  # coalesce a burst of watch events into one run
            if not self._leading():
                self._lapsed = True
                continue
            try:
                await self.run(policies(), cache)
            except Exception:
                log.exception("evaluating the budgets failed")

    async def run(self, policies: Iterable[PolicyEntry], cache: WorkloadCache) -> int:
        """One evaluation of every budget; how many were evaluated."""
        async with self._lock:
            if not self._sync_book():
                return 0
            if self._lapsed:
                # Another replica may have evaluated meanwhile: start again from status.
                for entry in self.book.entries.values():
                    entry.evaluation = None
                self._lapsed = False
            now = self._clock()
            await self._write_price_lists(now)
            members = _policy_members(policies, cache)
            managed = {a for _, agents, _ in members for a, _ in agents}
            selected: dict[tuple[str, str, str], Selected] = {}
            for key, entry in self.book.entries.items():
                if entry.spec is not None and self._labels_ready(entry):
                    selected[key] = self.book.select(entry, members)
            if self._scopes is None:
                self._scopes = BudgetScopes(cache)
            ready = [self.book.entries[k] for k in selected]
            self._scopes.sync(ready, self.book.namespace_labels)
            spend, errors = await self._fetch(selected, now)
            verdicts: dict[AgentId, tuple[str, list[BudgetVerdict]]] = {}
            for key, entry in self.book.entries.items():
                if entry.spec is None:
                    await self._write(entry, wire(invalid_status(entry, now)), now)
                    continue
                sel = selected.get(key)
                if sel is None:
                    failing = self._namespaces.failing if self._namespaces is not None else None
                    if failing is not None:
                        message = (
                            f"Namespaces cannot be listed ({failing}), so namespaceSelector "
                            "cannot be matched; name them in spec.namespaces, or grant the "
                            "operator list and watch on namespaces"
                        )
                        status = not_ready_status(entry, "NamespacesUnreadable", message, now)
                        await self._write(entry, wire(status), now)
                    continue
                error = errors.get(key)
                if error is None:
                    spec = entry.spec
                    got = {a: spend[key].get(a, AgentSpendFigures(None)) for a in sel.agents}
                    held = (
                        entry.evaluation.reached
                        if entry.evaluation is not None
                        else held_from_status(entry.status)
                    )
                    entry.evaluation = evaluate_budget(entry.ref, spec, got, now, held)
                    entry.evaluated_at = now
                ev = entry.evaluation
                if ev is None:
                    continue
                for agent, verdict in ev.verdicts.items():
                    owner = sel.agents.get(agent)
                    if owner is not None:
                        verdicts.setdefault(agent, (owner, []))[1].append(verdict)
                status = build_status(
                    entry,
                    ev,
                    agents=len(sel.agents),
                    no_tiers=sel.no_tiers,
                    not_managed=self._scopes.unmanaged(entry, managed),
                    metrics_error=error,
                    now=now,
                )
                await self._write(entry, wire(status), now)
                await self._notices.announce(entry, ev, now)
            self.book.publish(
                {
                    a: (owner, tuple(sorted(vs, key=lambda v: v.budget)))
                    for a, (owner, vs) in verdicts.items()
                }
            )
            self.evaluations += 1
            return len(selected)

    # ------------------------------------------------------------------ spend

    async def _fetch(
        self, selected: Mapping[tuple[str, str, str], Selected], now: datetime
    ) -> tuple[dict[tuple[str, str, str], dict[AgentId, AgentSpendFigures]], dict[Any, str]]:
        """Each budget's spend per agent, from the backend it names (the operator's by
        default), one query per (metric, window) per backend; and why a budget has none
        this run (its backend reference does not resolve: no evidence, verdicts held)."""
        groups: dict[str, tuple[MetricsBackend, dict[tuple[str, str, str], Selected]]] = {}
        errors: dict[Any, str] = {}
        for key, sel in selected.items():
            spec = self.book.entries[key].spec
            assert spec is not None
            ref = spec.metrics_backend_ref
            if ref is None or self._refs is None:
                groups.setdefault("", (self._backend, {}))[1][key] = sel
                continue
            route = await self._refs.backend(ref, self.book.entries[key].ref.namespace or "")
            if route is None:
                errors[key] = f"{ref}: not read yet"
            elif isinstance(route, RefProblem):
                errors[key] = str(route)
            else:
                groups.setdefault(route.backend_id, (route.backend, {}))[1][key] = sel
        out: dict[tuple[str, str, str], dict[AgentId, AgentSpendFigures]] = {}
        for backend, members in groups.values():
            spend, failed = await self._fetch_from(backend, members, now)
            out.update(spend)
            errors.update(failed)
        return out, errors

    async def _fetch_from(
        self,
        backend: MetricsBackend,
        selected: Mapping[tuple[str, str, str], Selected],
        now: datetime,
    ) -> tuple[dict[tuple[str, str, str], dict[AgentId, AgentSpendFigures]], dict[Any, str]]:
        """The budgets of one backend: their spend per agent, and why a budget has none."""
        reported: dict[SeriesKey, set[AgentId]] = {}
        tokens: dict[timedelta, set[AgentId]] = {}
        plan: dict[tuple[str, str, str], tuple[timedelta, timedelta]] = {}
        for key, sel in selected.items():
            spec = self.book.entries[key].spec
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
        out: dict[tuple[str, str, str], dict[AgentId, AgentSpendFigures]] = {}
        errors: dict[Any, str] = {}
        for key, (elapsed, recent) in plan.items():
            entry = self.book.entries[key]
            spec = entry.spec
            assert spec is not None
            chosen = selected[key].agents
            if spec.cost_source == CostSource.REPORTED:
                ks, kb = SeriesKey("cost_usd", None, elapsed), SeriesKey("cost_usd", None, recent)
                problem = failed.get(ks) or failed.get(kb)
                if problem is not None:
                    errors[key] = problem
                    continue
                out[key] = {
                    a: AgentSpendFigures(
                        (samples.get(a) or {}).get(ks), (samples.get(a) or {}).get(kb)
                    )
                    for a in chosen
                }
                continue
            problem = failed.get(elapsed) or failed.get(recent)
            book = self.book.price_book(spec.price_list)
            if problem is None and book is None:
                problem = f"the ModelPriceList {spec.price_list} is invalid; fix it to price tokens"
            if problem is not None:
                errors[key] = problem
                continue
            assert book is not None
            out[key] = {
                a: AgentSpendFigures(
                    _priced(book, counted[elapsed].get(a)), _priced(book, counted[recent].get(a))
                )
                for a in chosen
            }
        for key in selected:
            if key not in plan:
                out[key] = {}
        return out, errors

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

    # ------------------------------------------------------------------ status

    async def _write_price_lists(self, now: datetime) -> None:
        """Each ModelPriceList's status, written when it changed."""
        due, self._price_lists_due = self._price_lists_due, []
        for obj, models, problems in due:
            wanted = price_list_status(obj, models, problems, now)
            if wanted == (obj.get("status") or {}) or not self._leading():
                continue
            name = (obj.get("metadata") or {}).get("name", "")
            try:
                await self._objects.patch_status(
                    GROUP,
                    VERSION,
                    PRICE_LIST_PLURAL,
                    _CLUSTER_SCOPED,
                    name,
                    wanted,
                )
            except KubeError as exc:
                log.warning("writing the status of ModelPriceList %s failed: %s", name, exc.reason)

    async def _write(self, entry: BudgetEntry, wanted: dict[str, Any], now: datetime) -> None:
        if not status_due(entry, wanted, now, self._settings.spend_refresh_seconds):
            return
        if not self._leading():
            return
        ref = entry.ref
        try:
            obj = await self._objects.patch_status(
                GROUP,
                VERSION,
                _PLURAL[ref.kind],
                ref.namespace or None,  # type: ignore[arg-type]
                ref.name,
                status_patch(entry.status, wanted),
            )
        except KubeError as exc:
            log.warning("writing the status of %s failed: %s", ref, exc.reason)
            return
        entry.status = dict(obj.get("status") or wanted)
        entry.resource_version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        entry.spend_written_at = now


def _priced(book: Any, counts: Mapping[tuple[str, str], float] | None) -> float | None:
    """USD for an agent's token counts; None without counts. Tokens of a model the book
    cannot price add nothing (the figure is then a lower bound) and are logged."""
    if counts is None:
        return None
    usd, unpriced = book.spend(counts)
    if unpriced:
        log.info("models without a price are left out of budget spend: %s", sorted(unpriced))
    return float(usd)


def _policy_members(
    policies: Iterable[PolicyEntry], cache: WorkloadCache
) -> list[tuple[str, list[tuple[AgentId, Mapping[str, str]]], bool]]:
    """Each valid policy's agents with their labels, the policies by namespace and name."""
    out: list[tuple[str, list[tuple[AgentId, Mapping[str, str]]], bool]] = []
    for entry in sorted(policies, key=lambda e: (e.namespace, e.name)):
        if entry.policy is None:
            continue
        workloads = cache.workloads(entry.namespace, entry.selector)
        if workloads is None:
            continue
        members: list[tuple[AgentId, Mapping[str, str]]] = [
            (AgentId(entry.namespace, w.agent), w.labels) for w in workloads
        ]
        out.append((f"{entry.namespace}/{entry.name}", members, entry.spec.model is not None))
    return out
