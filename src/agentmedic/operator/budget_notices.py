"""A budget's reached stage told to the budget's own channels, once per (stage, period).

The budget's ledger lives on the budget itself, in the annotation
``agentmedic.io/budget-notices`` (``{"<stage>@<period start>": "reserved" | "sent"}``): a
stage newly reached is *reserved* there, in one PATCH conditional on the object's
resourceVersion, before anything is sent, and marked *sent* once every channel took it.
A replica that takes over (or a restarted operator) reads the annotation: what is sent is
never sent again, what was reserved and not confirmed is sent again (PagerDuty and
Alertmanager deduplicate it by its key; a chat channel may show it twice, as with the
policies' outbox), and a conflict with another writer leaves the send to the next run.
Entries of earlier periods are dropped. A rolling period's stage is told once while it
stays reached, and again only after it was left.

Secrets come from the budget's namespace; a ClusterAgentBudget's from the operator's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime

from agentmedic.actions import ActionExecutor
from agentmedic.api.budget import (
    BUDGET_KIND,
    BUDGET_PLURAL,
    CLUSTER_BUDGET_PLURAL,
    BudgetAppliesTo,
    StageResponse,
)
from agentmedic.api.types import GROUP, VERSION, Severity
from agentmedic.engine.finance import BudgetEvaluation
from agentmedic.kube import CustomObjects, KubeError
from agentmedic.notify import ChannelConfigError, Notifier, ResolvedChannel, resolve_channel
from agentmedic.notify.message import Message, MessageState
from agentmedic.notify.report import Outcome
from agentmedic.operator.budgets import BudgetEntry

__all__ = ["NOTICES_ANNOTATION", "BudgetNotices"]

log = logging.getLogger(__name__)

NOTICES_ANNOTATION = f"{GROUP}/budget-notices"
_SEVERITY = {
    StageResponse.NOTIFY: Severity.MEDIUM,
    StageResponse.DOWNGRADE: Severity.MEDIUM,
    StageResponse.STOP: Severity.HIGH,
}
_DOING = {
    StageResponse.NOTIFY: "no change to the agents (notify)",
    StageResponse.DOWNGRADE: "each agent moves one model tier down through its AgentPolicy",
    StageResponse.STOP: "each agent is scaled to zero through its AgentPolicy",
}


class BudgetNotices:
    """Sends budget stage messages and keeps their ledger on the budget."""

    def __init__(
        self,
        notifier: Notifier,
        executor: ActionExecutor,
        objects: CustomObjects,
        operator_namespace: str,
        leading: Callable[[], bool],
    ) -> None:
        self._notifier = notifier
        self._executor = executor
        self._objects = objects
        self._operator_namespace = operator_namespace
        self._leading = leading
        self.sent: list[Message] = []
        """Messages delivered by this process (for tests and the demo's summary)."""

    async def announce(self, entry: BudgetEntry, ev: BudgetEvaluation, now: datetime) -> None:
        """Tell the channels of every stage reached and not yet told this period."""
        spec = entry.spec
        assert spec is not None
        reached = set().union(*ev.reached.values()) if ev.reached else set()
        period = "rolling" if ev.period.rolling else str(int(ev.period.start.timestamp()))
        stages = {s.name: s for s in spec.stages if s.channels}
        ledger = _ledger(entry)
        if ev.period.rolling:
            # A rolling stage left is forgotten, so reaching it again is told again.
            ledger = {k: v for k, v in ledger.items() if k.split("@")[0] in reached}
        else:
            ledger = {k: v for k, v in ledger.items() if k.endswith(f"@{period}")}
        wanted = [f"{name}@{period}" for name in sorted(reached) if name in stages]
        new = [k for k in wanted if k not in ledger]
        if new or ledger != _ledger(entry):
            ledger.update({k: "reserved" for k in new})
            if not await self._persist(entry, ledger):
                return  # another writer: the next run reads its ledger first
        for key in [k for k, v in ledger.items() if v == "reserved"]:
            stage = stages.get(key.split("@")[0])
            if stage is None:
                continue
            if await self._send(entry, ev, stage.name, stage.response, stage.channels, now):
                ledger[key] = "sent"
                await self._persist(entry, ledger)

    async def _send(
        self,
        entry: BudgetEntry,
        ev: BudgetEvaluation,
        stage: str,
        response: StageResponse,
        channel_names: list[str],
        now: datetime,
    ) -> bool:
        spec = entry.spec
        assert spec is not None
        channels = await self._channels(entry, set(channel_names))
        if not channels:
            return False
        message = Message(
            episode=f"{entry.uid}:*:{entry.ref.rule(stage)}:{int(ev.period.start.timestamp())}",
            policy_namespace=entry.ref.namespace or self._operator_namespace,
            policy_name=f"{entry.ref.kind}/{entry.ref.name}",
            agent=None,
            rule=entry.ref.rule(stage),
            severity=_SEVERITY[response],
            state=MessageState.FIRING,
            summary=_summary(entry, ev, stage),
            time=now,
            action=_DOING[response],
        )
        report = await self._notifier.notify(message, channels)
        ok = all(r.outcome is not Outcome.FAILED for r in report.results)
        if ok:
            self.sent.append(message)
        return ok

    async def _channels(self, entry: BudgetEntry, names: set[str]) -> list[ResolvedChannel]:
        spec = entry.spec
        assert spec is not None
        namespace = entry.ref.namespace or self._operator_namespace
        out = []
        for channel in spec.notifications.channels:
            if channel.name not in names:
                continue

            def lookup(secret: str, key: str) -> str:
                return self._executor.read_secret_value(namespace, secret, key)

            try:
                out.append(await asyncio.to_thread(resolve_channel, channel, lookup))
            except ChannelConfigError as exc:
                log.warning("channel %s of %s: %s", channel.name, entry.ref, exc)
        return out

    async def _persist(self, entry: BudgetEntry, ledger: dict[str, str]) -> bool:
        if not self._leading():
            return False
        ref = entry.ref
        plural = BUDGET_PLURAL if ref.kind == BUDGET_KIND else CLUSTER_BUDGET_PLURAL
        text = json.dumps(ledger, sort_keys=True, separators=(",", ":"))
        try:
            obj = await self._objects.patch_annotations(
                GROUP,
                VERSION,
                plural,
                ref.namespace or None,  # type: ignore[arg-type]
                ref.name,
                {NOTICES_ANNOTATION: text},
                resource_version=entry.resource_version or None,
            )
        except KubeError as exc:
            log.info("the notice ledger of %s was not written: %s", ref, exc.reason)
            return False
        meta = obj.get("metadata") or {}
        entry.annotations = dict(meta.get("annotations") or {})
        entry.resource_version = str(meta.get("resourceVersion", ""))
        return True


def _ledger(entry: BudgetEntry) -> dict[str, str]:
    raw = entry.annotations.get(NOTICES_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _summary(entry: BudgetEntry, ev: BudgetEvaluation, stage: str) -> str:
    spec = entry.spec
    assert spec is not None
    if spec.applies_to == BudgetAppliesTo.TOTAL:
        for v in ev.verdicts.values():
            if v.evidence:
                return f"{v.evidence.rsplit('; stage ', 1)[0]}; stage {stage} reached"
    over = [a for a, names in ev.reached.items() if a is not None and stage in names]
    shown = ", ".join(str(a) for a in sorted(over)[:5])
    return f"{entry.ref}: {len(over)} agents reached stage {stage} ({shown})"
