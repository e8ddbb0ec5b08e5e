"""The report step: a policy's status after an evaluated cycle, written only on change.

Conditions come from :func:`~agentmedic.operator.status.cycle_conditions`; spend is shown
coarsely (:func:`~agentmedic.operator.status.coarse_spend`) and, when nothing else in
status changes, refreshed at most once per ``spendRefreshSeconds``: a fleet that only
spends costs a bounded trickle of writes, a flat fleet none. A budget stage that changes,
a new budget period, or any other change of status carries the fresh spend at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from agentmedic.api import lint
from agentmedic.api.types import RecentAction, Spend
from agentmedic.engine import CycleResult
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.reverts import REVERTED_CONDITION, revert_events, reverted_condition
from agentmedic.operator.silences import SILENCED_CONDITION, silenced_condition
from agentmedic.operator.status import coarse_spend, cycle_conditions
from agentmedic.operator.status_writer import PolicyWriter
from agentmedic.operator.telemetry import Telemetry

__all__ = ["Reporter", "lint_warnings", "spend_due"]


class Reporter:
    """Status and gauges of an evaluated policy."""

    def __init__(
        self, writer: PolicyWriter, telemetry: Telemetry, *, spend_refresh: timedelta
    ) -> None:
        self._writer = writer
        self._telemetry = telemetry
        self._spend_refresh = spend_refresh

    async def report(
        self,
        entry: PolicyEntry,
        outcome: CycleResult,
        recent: list[RecentAction],
        query_errors: Sequence[str],
        *,
        selected: int,
        budget_changed: bool,
        now: datetime,
    ) -> None:
        counts = outcome.counts
        for state_name, value in counts.model_dump().items():
            if state_name != "total":
                self._telemetry.agents.labels(entry.namespace, entry.name, state_name).set(value)
        spend = self._spend(entry, outcome)
        due = spend is not None and spend_due(
            entry, spend, now, self._spend_refresh, budget_changed=budget_changed
        )
        conditions = cycle_conditions(
            counts,
            selected=selected,
            selector=entry.selector,
            interval=entry.spec.interval,
            query_errors=query_errors,
            warnings=lint_warnings(entry, selected),
        )
        shown = entry.status.conditions if entry.status else []
        if outcome.silences or any(c.type == SILENCED_CONDITION for c in shown):
            # Silenced appears with the first silence and stays, False, once they end.
            conditions.append(silenced_condition(outcome.silences))
        if outcome.reverts or any(c.type == REVERTED_CONDITION for c in shown):
            conditions.append(reverted_condition(outcome.reverts))  # likewise
        await revert_events(self._writer, entry, outcome)
        written = await self._writer.status(
            entry,
            conditions=conditions,
            counts=counts,
            spend=spend,
            spend_due=due,
            recent=recent,
        )
        if written and spend is not None:
            entry.spend_written_at = now

    def _spend(self, entry: PolicyEntry, outcome: CycleResult) -> Spend | None:
        if outcome.spend is None:
            return None
        budget = entry.spec.budget
        agents = (
            len(outcome.spend.per_agent) if budget is not None and budget.scope == "agent" else 1
        )
        shown = entry.status.spend if entry.status else None
        return coarse_spend(outcome.spend.to_status(), shown, agents=agents)


def spend_due(
    entry: PolicyEntry,
    spend: Spend,
    now: datetime,
    refresh: timedelta,
    *,
    budget_changed: bool,
) -> bool:
    """Whether this spend must reach status even if nothing else in it changes."""
    shown = entry.status.spend if entry.status else None
    if shown is None or entry.spend_written_at is None or budget_changed:
        return True
    if shown.period_start != spend.period_start or shown.limit_usd != spend.limit_usd:
        return True  # a new period (or limit) is news, not a trickle
    return now - entry.spend_written_at >= refresh


def lint_warnings(entry: PolicyEntry, selected: int) -> str:
    """The linter's warnings for the policy over ``selected`` agents, as Ready's message
    carries them; computed again only when the spec or the fleet size changed."""
    key = (entry.generation, selected)
    if entry.lint is None or entry.lint[0] != key:
        found = lint.lint_policy(entry.spec, selected, lint.operator_scrape_interval())
        entry.lint = (key, lint.summary(found, max_chars=700))
    return entry.lint[1]
