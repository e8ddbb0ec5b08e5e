"""Finance's budgets as the operator holds them: parsed, selected, their latest verdicts.

A budget's agents are the workloads it selects — an AgentBudget: those of its namespace; a
ClusterAgentBudget: those of ``namespaces`` or of the namespaces whose labels match
``namespaceSelector`` — narrowed by ``selector``, that are agents of some AgentPolicy this
replica evaluates. The verdicts of the latest evaluation
(:mod:`agentmedic.operator.budget_cycle`) reach the policies' cycles through
:meth:`BudgetBook.verdicts_for`: an agent selected by several policies gets them through
one, the first by namespace and name, so that one change is decided once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmedic.api.budget import (
    BUDGET_KIND,
    PRICE_LIST_KIND,
    AgentBudget,
    AgentBudgetSpec,
    ClusterAgentBudget,
    ClusterAgentBudgetSpec,
    ModelPriceList,
)
from agentmedic.api.budget_validation import validate_budget
from agentmedic.api.types import API_VERSION, LabelSelector
from agentmedic.engine.finance import BudgetEvaluation, BudgetRef, BudgetVerdict
from agentmedic.engine.series import AgentId
from agentmedic.metrics.pricing import PriceBook

__all__ = [
    "BudgetBook",
    "BudgetEntry",
    "Selected",
    "matches",
    "parse_budget",
    "parse_price_list",
    "price_list_problems",
]


def matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes' label selector semantics (an absent or empty selector matches all)."""
    if selector is None:
        return True
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and (not present or labels[req.key] not in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


@dataclass
class BudgetEntry:
    """One AgentBudget or ClusterAgentBudget, as last seen, with what was evaluated."""

    ref: BudgetRef
    uid: str
    generation: int
    resource_version: str
    spec: AgentBudgetSpec | None
    """None when the spec is invalid (``problems`` says why)."""
    problems: list[str]
    status: dict[str, Any] | None
    """The status as last read or written."""
    annotations: dict[str, str] = field(default_factory=dict)
    evaluation: BudgetEvaluation | None = None
    evaluated_at: datetime | None = None
    spend_written_at: datetime | None = None

    @property
    def cluster(self) -> ClusterAgentBudgetSpec | None:
        """The spec when it is a ClusterAgentBudget's."""
        return self.spec if isinstance(self.spec, ClusterAgentBudgetSpec) else None

    def in_scope(self, namespace: str, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
        """Whether agents of ``namespace`` can be this budget's."""
        cluster = self.cluster
        if cluster is None:
            return namespace == self.ref.namespace
        if namespace in cluster.namespaces:
            return True
        if cluster.namespace_selector is None:
            return False
        labels = namespace_labels.get(namespace)
        return labels is not None and matches(cluster.namespace_selector, labels)


def parse_budget(obj: Mapping[str, Any]) -> BudgetEntry:
    """An AgentBudget or ClusterAgentBudget object as an entry; an invalid spec gives an
    entry without spec whose problems name each field and the fix
    (:func:`~agentmedic.api.budget_validation.validate_budget`, as ``agentmedic validate``)."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    namespace = (meta.get("namespace") or "") if kind == BUDGET_KIND else ""
    ref = BudgetRef(kind, namespace, str(meta.get("name") or ""))
    doc = {k: v for k, v in obj.items() if k != "status"}
    doc.setdefault("apiVersion", API_VERSION)
    parsed, problems = validate_budget(doc)
    spec = None
    if not problems and isinstance(parsed, AgentBudget | ClusterAgentBudget):
        spec = parsed.spec
    return BudgetEntry(
        ref=ref,
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        spec=spec,
        problems=[str(p) for p in problems],
        status=dict(obj["status"]) if isinstance(obj.get("status"), Mapping) else None,
        annotations=dict(meta.get("annotations") or {}),
    )


def parse_price_list(obj: Mapping[str, Any]) -> PriceBook | None:
    """A ModelPriceList's PriceBook, or None when it is invalid."""
    return price_list_problems(obj)[0]


def price_list_problems(obj: Mapping[str, Any]) -> tuple[PriceBook | None, list[str]]:
    """A ModelPriceList's PriceBook (None when invalid) and its problems."""
    doc = {k: v for k, v in obj.items() if k != "status"}
    doc.setdefault("apiVersion", API_VERSION)
    doc.setdefault("kind", PRICE_LIST_KIND)
    parsed, problems = validate_budget(doc)
    if problems or not isinstance(parsed, ModelPriceList):
        return None, [str(p) for p in problems] or ["not a ModelPriceList"]
    return PriceBook.from_spec(parsed.spec), []


def _newer(ours: str, seen: str) -> bool:
    """Whether resourceVersion ``ours`` is later than ``seen`` (both etcd revisions; an
    unknown form is never taken as later)."""
    return ours.isdigit() and seen.isdigit() and int(ours) > int(seen)


@dataclass(frozen=True)
class Selected:
    """A budget's agents this evaluation."""

    agents: dict[AgentId, str]
    """Agent → the key of the policy whose verdicts it gets (``namespace/name``)."""
    no_tiers: list[AgentId]
    """Agents whose policy has no spec.model (a downgrade cannot be applied to them)."""


class BudgetBook:
    """Every budget and price list this replica knows, and the latest verdicts."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], BudgetEntry] = {}
        self.price_lists: dict[str, PriceBook | None] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self._verdicts: dict[AgentId, tuple[str, tuple[BudgetVerdict, ...]]] = {}
        self.published = False
        """The budgets were evaluated at least once (their verdicts are known)."""

    def upsert(self, obj: Mapping[str, Any]) -> BudgetEntry:
        """A budget seen (again): keep what was evaluated of the same object."""
        entry = parse_budget(obj)
        key = (entry.ref.kind, entry.ref.namespace, entry.ref.name)
        old = self.entries.get(key)
        if old is not None and old.uid == entry.uid:
            entry.evaluation = old.evaluation
            entry.evaluated_at = old.evaluated_at
            entry.spend_written_at = old.spend_written_at
            if _newer(old.resource_version, entry.resource_version):
                # our own write, newer than what the watch delivered so far
                entry.status = old.status
                entry.resource_version = old.resource_version
        self.entries[key] = entry
        return entry

    def sync(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Make the entries exactly these objects."""
        seen = set()
        for obj in objects:
            e = self.upsert(obj)
            seen.add((e.ref.kind, e.ref.namespace, e.ref.name))
        for key in [k for k in self.entries if k not in seen]:
            del self.entries[key]

    def price_book(self, name: str) -> PriceBook | None:
        """The named ModelPriceList's prices; the SDK's table when no such list exists;
        None when it exists and is invalid (spend cannot be priced: no data)."""
        if name not in self.price_lists:
            return PriceBook.default()
        return self.price_lists[name]

    def select(
        self,
        entry: BudgetEntry,
        policies: Iterable[tuple[str, Iterable[tuple[AgentId, Mapping[str, str]]], bool]],
    ) -> Selected:
        """The agents ``entry`` selects among the policies' agents: ``policies`` gives each
        policy's key (sorted first by the caller), its agents with their workload labels,
        and whether it has model tiers."""
        spec = entry.spec
        assert spec is not None
        agents: dict[AgentId, str] = {}
        no_tiers: list[AgentId] = []
        for key, members, has_tiers in policies:
            for agent, labels in members:
                if agent in agents or not entry.in_scope(agent.namespace, self.namespace_labels):
                    continue
                if matches(spec.selector, labels):
                    agents[agent] = key
                    if not has_tiers:
                        no_tiers.append(agent)
        return Selected(agents, no_tiers)

    def publish(self, verdicts: Mapping[AgentId, tuple[str, tuple[BudgetVerdict, ...]]]) -> None:
        """Replace the verdicts the policies' cycles read."""
        self._verdicts = dict(verdicts)
        self.published = True

    def verdicts_for(self, policy: str, agent: AgentId) -> tuple[BudgetVerdict, ...]:
        """What the budgets say of ``agent``, for the policy ``namespace/name`` that acts on
        it for them (empty for any other policy)."""
        got = self._verdicts.get(agent)
        if got is None or got[0] != policy:
            return ()
        return got[1]
