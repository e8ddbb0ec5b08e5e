"""Kubernetes Events on AgentBudgets and ClusterAgentBudgets, for ``kubectl describe``.

An Event tells a transition the budget's status shows: a stage reached (``StageReached``)
or released (``StageReleased``), the budget not evaluated (its Ready condition's reason:
``InvalidSpec``, ``NamespacesUnreadable``), spend unreadable (``MetricsUnavailable``, and
``MetricsAvailable`` once it is read again) and models without a price
(``UnpricedModels``). Each is derived from the status as the API server showed it before
a write and the status written (:func:`transitions`), and posted only after that write
succeeded: an evaluation that changes nothing posts nothing, and a restarted operator,
which starts from the status the API server shows, does not post again what it says.

A ClusterAgentBudget is cluster-scoped: its Events go to the namespace ``default``, where
Kubernetes puts the Events of cluster-scoped objects (and where ``kubectl describe``
finds them); an AgentBudget's to its own namespace. Messages pass through the actions'
:func:`~agentmedic.actions.events.scrub`, as every Event of the operator's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentmedic.actions import ActionError, ActionExecutor
from agentmedic.api.budget import AgentBudgetSpec, BudgetAppliesTo
from agentmedic.api.types import API_VERSION
from agentmedic.api.units import format_usd
from agentmedic.engine.finance import BudgetEvaluation
from agentmedic.engine.periods import describe_period
from agentmedic.operator.budgets import BudgetEntry

__all__ = ["BudgetEvent", "BudgetEvents", "involved_object", "transitions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetEvent:
    """One Event to post on a budget."""

    reason: str
    message: str
    warning: bool = False


def involved_object(entry: BudgetEntry) -> dict[str, str]:
    """The Event's ``involvedObject``: no namespace for a ClusterAgentBudget."""
    ref = {"apiVersion": API_VERSION, "kind": entry.ref.kind, "name": entry.ref.name}
    if entry.ref.namespace:
        ref["namespace"] = entry.ref.namespace
    if entry.uid:
        ref["uid"] = entry.uid
    return ref


def _condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any]:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def transitions(
    entry: BudgetEntry,
    shown: Mapping[str, Any] | None,
    written: Mapping[str, Any],
    ev: BudgetEvaluation | None,
) -> list[BudgetEvent]:
    """The Events of going from status ``shown`` to ``written`` (``ev``: the evaluation
    ``written`` shows; None for a budget that was not evaluated)."""
    out: list[BudgetEvent] = []
    ready, was = _condition(written, "Ready"), _condition(shown, "Ready")
    key = ("status", "reason", "message")
    if ready.get("status") == "False" and [ready.get(k) for k in key] != [was.get(k) for k in key]:
        text = f"the budget is not evaluated: {ready.get('message', '')}"
        out.append(BudgetEvent(str(ready.get("reason") or "NotReady"), text, warning=True))
    metrics, had = _condition(written, "MetricsAvailable"), _condition(shown, "MetricsAvailable")
    if metrics.get("status") == "False" and had.get("status") != "False":
        text = f"spend cannot be read, stages held as they were: {metrics.get('message', '')}"
        out.append(BudgetEvent("MetricsUnavailable", text, warning=True))
    elif metrics.get("status") == "True" and had.get("status") == "False":
        out.append(BudgetEvent("MetricsAvailable", "spend is read again"))
    priced, before = _condition(written, "Priced"), _condition(shown, "Priced")
    if priced.get("status") == "False" and (
        before.get("status") != "False" or before.get("message") != priced.get("message")
    ):
        out.append(BudgetEvent("UnpricedModels", str(priced.get("message", "")), warning=True))
    if ev is not None and entry.spec is not None:
        out.extend(_stages(entry.spec, shown or {}, written, ev))
    return out


def _stages(
    spec: AgentBudgetSpec,
    shown: Mapping[str, Any],
    written: Mapping[str, Any],
    ev: BudgetEvaluation,
) -> list[BudgetEvent]:
    """StageReached or StageReleased when the furthest stage moved."""
    before, now = str(shown.get("stage") or ""), str(written.get("stage") or "")
    if before == now:
        return []
    at = {s.name: s.at_percent for s in spec.stages}
    figures = _figures(spec, ev)
    if now and (not before or at.get(now, 0) >= at.get(before, 0)):
        stage = next(s for s in spec.stages if s.name == now)
        who = _reached_by(spec, ev, now)
        text = f"stage {now} ({stage.response.value}) reached{who}: {figures}"
        return [BudgetEvent("StageReached", text, warning=stage.response.value != "notify")]
    if ev.period.rolling:
        why = "spend fell below 90 % of its threshold"
    elif shown.get("periodStart") != written.get("periodStart"):
        why = "a new period began"
    else:
        why = "the budget changed"
    left = f"stage {now} still reached" if now else "no stage reached"
    return [BudgetEvent("StageReleased", f"stage {before} released ({why}); {left}: {figures}")]


def _figures(spec: AgentBudgetSpec, ev: BudgetEvaluation) -> str:
    spent = "no data" if ev.spent is None else format_usd(ev.spent)
    limit = format_usd(spec.limit_usd)
    where = describe_period(spec.period, spec.time_zone, ev.period)
    if spec.applies_to == BudgetAppliesTo.PER_AGENT:
        return f"spend {spent} in {where}, limit {limit} per agent"
    share = "" if ev.spent is None else f" ({round(ev.spent / spec.limit_usd * 100)} %)"
    return f"spend {spent} of {limit}{share} in {where}"


def _reached_by(spec: AgentBudgetSpec, ev: BudgetEvaluation, stage: str) -> str:
    if spec.applies_to != BudgetAppliesTo.PER_AGENT:
        return ""
    agents = sorted(str(a) for a, names in ev.reached.items() if a is not None and stage in names)
    shown = ", ".join(agents[:5]) + (f" and {len(agents) - 5} more" if len(agents) > 5 else "")
    return f" by {len(agents)} agents ({shown})"


class BudgetEvents:
    """Posts a budget's Events (the leader only); a failure is logged, never raised."""

    def __init__(self, executor: ActionExecutor, leading: Callable[[], bool]) -> None:
        self._executor = executor
        self._leading = leading

    async def post(self, entry: BudgetEntry, events: Sequence[BudgetEvent]) -> None:
        if not events or not self._leading():
            return
        involved = involved_object(entry)
        for event in events:
            try:
                await asyncio.to_thread(
                    self._executor.emit_event,
                    involved,
                    event.reason,
                    event.message,
                    "Warning" if event.warning else "Normal",
                )
            except ActionError as exc:
                log.warning("cannot post Event %s on %s: %s", event.reason, entry.ref, exc)
