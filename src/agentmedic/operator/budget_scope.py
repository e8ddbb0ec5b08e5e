"""The workloads a budget selects whether or not an AgentPolicy manages them.

A budget acts only through AgentPolicies, so a workload it selects that no policy selects
is neither counted nor acted on; its status says so (ActionsLimited, NotManaged). To see
those workloads, each budget subscribes its selector in each namespace of its scope to
the workload cache (one label-selected list+watch per distinct namespace and selector,
shared with the policies'); subscriptions follow the budget's scope as it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agentmedic.actions import label_selector_string
from agentmedic.engine.series import AgentId
from agentmedic.operator.budgets import BudgetEntry
from agentmedic.operator.watch import WorkloadCache

__all__ = ["BudgetScopes"]


class BudgetScopes:
    """Each budget's workload subscriptions, and the agents no policy manages."""

    def __init__(self, cache: WorkloadCache) -> None:
        self._cache = cache
        self._subscribed: dict[str, frozenset[tuple[str, str]]] = {}

    @staticmethod
    def _user(entry: BudgetEntry) -> str:
        return f"budget:{entry.ref.kind}/{entry.ref.namespace}/{entry.ref.name}"

    def _scope(
        self, entry: BudgetEntry, namespace_labels: Mapping[str, Mapping[str, str]]
    ) -> frozenset[tuple[str, str]]:
        spec = entry.spec
        if spec is None:
            return frozenset()
        selector = label_selector_string(spec.selector) if spec.selector is not None else ""
        cluster = entry.cluster
        if cluster is None:
            namespaces: Iterable[str] = [entry.ref.namespace]
        else:
            known = set(cluster.namespaces) | set(namespace_labels)
            namespaces = [ns for ns in sorted(known) if entry.in_scope(ns, namespace_labels)]
        return frozenset((ns, selector) for ns in namespaces)

    def sync(
        self, entries: Iterable[BudgetEntry], namespace_labels: Mapping[str, Mapping[str, str]]
    ) -> None:
        """Subscribe each budget's scope; drop the subscriptions of budgets gone."""
        wanted = {self._user(e): self._scope(e, namespace_labels) for e in entries}
        for user in [u for u in self._subscribed if u not in wanted]:
            self._cache.unsubscribe(user)
            del self._subscribed[user]
        for user, scope in wanted.items():
            if self._subscribed.get(user) == scope:
                continue
            self._cache.unsubscribe(user)
            for ns, selector in scope:
                self._cache.subscribe(user, ns, selector, ())
            self._subscribed[user] = scope

    def unmanaged(self, entry: BudgetEntry, managed: Iterable[AgentId]) -> list[AgentId]:
        """Workloads the budget selects that no policy manages (those listed so far)."""
        known = set(managed)
        out: set[AgentId] = set()
        for ns, selector in self._subscribed.get(self._user(entry), frozenset()):
            for w in self._cache.workloads(ns, selector) or []:
                agent = AgentId(ns, w.agent)
                if agent not in known:
                    out.add(agent)
        return sorted(out)

    def close(self) -> None:
        for user in list(self._subscribed):
            self._cache.unsubscribe(user)
        self._subscribed.clear()
