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
   and type (costSource priceList) priced by the named ModelPriceList
   (:mod:`~agentmedic.operator.budget_spend_reader`; models it cannot price make the
   condition Priced False, and never a response);
3. :func:`~agentmedic.engine.finance.evaluate_budget` per budget, and the verdicts per
   agent published for the policies' cycles, which act on them;
4. status through the status subresource, only when it changed
   (:mod:`~agentmedic.operator.budget_status`);
5. a reached stage told to its channels once per (budget, stage, period)
   (:mod:`~agentmedic.operator.budget_notices`), and what changed in status posted as
   Events on the budget (:mod:`~agentmedic.operator.budget_events`).

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
    AgentBudgetSpec,
    CostSource,
)
from agentmedic.api.types import GROUP, VERSION
from agentmedic.engine.finance import (
    AgentSpendFigures,
    BudgetEvaluation,
    BudgetVerdict,
    evaluate_budget,
)
from agentmedic.engine.series import AgentId
from agentmedic.kube import AsyncKube, CustomObjects, KubeError
from agentmedic.metrics import Catalog, MetricsBackend
from agentmedic.operator.budget_events import BudgetEvents, transitions
from agentmedic.operator.budget_notices import BudgetNotices
from agentmedic.operator.budget_scope import BudgetScopes
from agentmedic.operator.budget_spend_reader import Key, Spend, SpendReader
from agentmedic.operator.budget_status import (
    build_status,
    held_from_status,
    invalid_status,
    not_ready_status,
    price_list_status,
    status_due,
    status_patch,
    unread_status,
    wire,
)
from agentmedic.operator.budget_watch import ResourceWatch, budget_paths, namespaces_path
from agentmedic.operator.budgets import BudgetBook, BudgetEntry, Selected, price_list_problems
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.refs import RefResolver
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
        events: BudgetEvents | None = None,
    ) -> None:
        self._events = events
        """Posts the Events of each status change on the budget."""
        self.book = BudgetBook()
        self._reader = SpendReader(self.book, backend, catalog, settings, refs)
        """Reads spend from the backend each budget names (spec.metricsBackendRef)."""
        self._http = http
        self._objects = objects
        self._notices = notices
        self._settings = settings
        self._clock = clock
        self._leading = leading
        self.wake = asyncio.Event()
        self.watches: dict[str, list[ResourceWatch]] = {}
        self._namespaces: ResourceWatch | None = None
        self._lock = asyncio.Lock()
        self._scopes: BudgetScopes | None = None
        self._price_lists_due: list[tuple[dict[str, Any], int | None, list[str]]] = []
        self._unpriced: dict[str, frozenset[str]] = {}
        """Price list → the models its budgets met that it does not price."""
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

    def leadership_changed(self, leading: bool) -> None:
        """A new term (or its end): the next evaluation starts from what the API server
        shows, not from this replica's memory of an earlier term."""
        self._lapsed = True
        if leading:
            self.wake.set()

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
            read = await self._reader.read(selected, now)
            self._note_unpriced(selected, read)
            await self._write_price_lists(now)
            verdicts: dict[AgentId, tuple[str, list[BudgetVerdict]]] = {}
            for key, entry in self.book.entries.items():
                sel = selected.get(key)
                if entry.spec is None:
                    await self._write(entry, wire(invalid_status(entry, now)), now)
                elif sel is None:
                    await self._not_selected(entry, now)
                else:
                    unmanaged = self._scopes.unmanaged(entry, managed)
                    ev = await self._evaluate(entry, sel, read, unmanaged, now)
                    for agent, verdict in ev.verdicts.items() if ev is not None else ():
                        owner = sel.agents.get(agent)
                        if owner is not None:
                            verdicts.setdefault(agent, (owner, []))[1].append(verdict)
            self.book.publish(
                {
                    a: (owner, tuple(sorted(vs, key=lambda v: v.budget)))
                    for a, (owner, vs) in verdicts.items()
                }
            )
            self.evaluations += 1
            return len(selected)

    async def _not_selected(self, entry: BudgetEntry, now: datetime) -> None:
        """A ClusterAgentBudget whose namespaceSelector cannot be matched yet: said in
        status when Namespaces cannot be listed."""
        failing = self._namespaces.failing if self._namespaces is not None else None
        if failing is None:
            return
        message = (
            f"Namespaces cannot be listed ({failing}), so namespaceSelector cannot be "
            "matched; name them in spec.namespaces, or grant the operator list and watch on "
            "namespaces"
        )
        status = not_ready_status(entry, "NamespacesUnreadable", message, now)
        await self._write(entry, wire(status), now)

    async def _evaluate(
        self,
        entry: BudgetEntry,
        sel: Selected,
        read: Spend,
        unmanaged: list[AgentId],
        now: datetime,
    ) -> BudgetEvaluation | None:
        """One budget evaluated (or held: its last evaluation stands when its spend could
        not be read), its status written and its reached stages told."""
        key = (entry.ref.kind, entry.ref.namespace, entry.ref.name)
        spec = entry.spec
        assert spec is not None
        error = read.errors.get(key)
        if error is None:
            got = {a: read.spend[key].get(a, AgentSpendFigures(None)) for a in sel.agents}
            held = (
                entry.evaluation.reached
                if entry.evaluation is not None
                else held_from_status(entry.status)
            )
            entry.evaluation = evaluate_budget(entry.ref, spec, got, now, held)
            entry.evaluated_at = now
        ev = entry.evaluation
        if ev is None:
            if error is not None:  # nothing was ever evaluated: say why there is no figure
                await self._write(entry, unread_status(entry, error, now), now)
            return None
        status = build_status(
            entry,
            ev,
            agents=len(sel.agents),
            no_tiers=sel.no_tiers,
            not_managed=unmanaged,
            metrics_error=error,
            now=now,
            unpriced=read.unpriced.get(key),
            price_list=self._price_list_named(spec),
        )
        await self._write(entry, wire(status), now, ev)
        await self._notices.announce(entry, ev, now)
        return ev

    def _price_list_named(self, spec: AgentBudgetSpec) -> tuple[str, bool] | None:
        """A priceList budget's price list: its name and whether it exists."""
        if spec.cost_source != CostSource.PRICE_LIST:
            return None
        return spec.price_list, spec.price_list in self.book.price_lists

    # ------------------------------------------------------------------ status

    def _note_unpriced(self, selected: Mapping[Key, Selected], read: Spend) -> None:
        """Each price list's unpriced models: those of its budgets read this run; as they
        were for a list none of whose budgets could be read; none for a list no budget
        uses."""
        named: dict[str, set[str] | None] = {}
        for key in selected:
            spec = self.book.entries[key].spec
            if spec is None or spec.cost_source != CostSource.PRICE_LIST:
                continue
            models = read.unpriced.get(key)
            seen = named.setdefault(spec.price_list, None)
            if models is not None:
                named[spec.price_list] = (seen or set()) | models
        self._unpriced = {
            name: frozenset(models) if models is not None else self._unpriced.get(name, frozenset())
            for name, models in named.items()
        }

    async def _write_price_lists(self, now: datetime) -> None:
        """Each ModelPriceList's status, written when it changed."""
        due, self._price_lists_due = self._price_lists_due, []
        for obj, models, problems in due:
            name = (obj.get("metadata") or {}).get("name", "")
            unpriced = sorted(self._unpriced.get(name, ()))
            wanted = price_list_status(obj, models, problems, now, unpriced)
            if wanted == (obj.get("status") or {}) or not self._leading():
                continue
            try:
                await self._objects.patch_status(
                    GROUP,
                    VERSION,
                    PRICE_LIST_PLURAL,
                    _CLUSTER_SCOPED,
                    name,
                    status_patch(obj.get("status"), wanted),
                )
            except KubeError as exc:
                log.warning("writing the status of ModelPriceList %s failed: %s", name, exc.reason)

    async def _write(
        self,
        entry: BudgetEntry,
        wanted: dict[str, Any],
        now: datetime,
        ev: BudgetEvaluation | None = None,
    ) -> None:
        """Write the status when it is due; then post the Events of what changed in it
        (``ev``: the evaluation it shows)."""
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
        shown = entry.status
        entry.status = dict(obj.get("status") or wanted)
        entry.resource_version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        entry.spend_written_at = now
        if self._events is not None:
            await self._events.post(entry, transitions(entry, shown, wanted, ev))


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
