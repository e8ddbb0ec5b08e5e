"""A budget's reached stage told to the budget's own channels, once per (stage, period).

The budget's ledger lives on the budget itself, in its status (the operator may write a
budget's status and nothing else of it): the condition ``StagesNotified`` whose message
lists ``<stage>@<period start>: reserved|sent`` entries, which finance can read too. A
stage newly reached is *reserved* there, in one status PATCH conditional on the object's
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
import dataclasses
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
from agentmedic.api.refs import ChannelReference
from agentmedic.api.types import GROUP, VERSION, ConditionStatus, Severity, StatusCondition
from agentmedic.api.units import format_timestamp
from agentmedic.engine.finance import BudgetEvaluation
from agentmedic.kube import CustomObjects, KubeError
from agentmedic.notify import ChannelConfigError, Notifier, ResolvedChannel, resolve_channel
from agentmedic.notify.message import Message, MessageState
from agentmedic.notify.report import Outcome
from agentmedic.operator.budgets import BudgetEntry
from agentmedic.operator.refs import RefResolver, SharedChannel
from agentmedic.operator.status import set_condition

__all__ = ["NOTIFIED", "BudgetNotices", "ledger_of"]

log = logging.getLogger(__name__)

NOTIFIED = "StagesNotified"
"""The status condition that holds the ledger."""
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
        refs: RefResolver | None = None,
    ) -> None:
        self._refs = refs
        """Shared channels (channelRef entries), as the policies' deliveries resolve them."""
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
        period = "rolling" if ev.period.rolling else format_timestamp(ev.period.start)
        stages = {s.name: s for s in spec.stages if s.channels}
        ledger = ledger_of(entry)
        if ev.period.rolling:
            # A rolling stage left is forgotten, so reaching it again is told again.
            ledger = {k: v for k, v in ledger.items() if k.split("@")[0] in reached}
        else:
            ledger = {k: v for k, v in ledger.items() if k.endswith(f"@{period}")}
        wanted = [f"{name}@{period}" for name in sorted(reached) if name in stages]
        new = [k for k in wanted if k not in ledger]
        if new or ledger != ledger_of(entry):
            ledger.update({k: "reserved" for k in new})
            if not await self._persist(entry, ledger, now):
                return  # another writer: the next run reads its ledger first
        for key in [k for k, v in ledger.items() if v == "reserved"]:
            stage = stages.get(key.split("@")[0])
            if stage is None:
                continue
            if await self._send(entry, ev, stage.name, stage.response, stage.channels, now):
                ledger[key] = "sent"
                await self._persist(entry, ledger, now)

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
            source=str(entry.ref),
        )
        report = await self._notifier.notify(message, channels)
        ok = all(r.outcome is not Outcome.FAILED for r in report.results)
        if ok:
            self.sent.append(message)
        return ok

    async def _channels(self, entry: BudgetEntry, names: set[str]) -> list[ResolvedChannel]:
        spec = entry.spec
        assert spec is not None
        out = []
        for channel in spec.notifications.channels:
            if channel.name not in names:
                continue
            namespace = entry.ref.namespace or self._operator_namespace
            shared_key = None
            if channel.channel_ref is not None:
                shared = self._shared(channel.channel_ref, entry)
                if not isinstance(shared, SharedChannel):
                    log.warning("channel %s of %s: %s", channel.name, entry.ref, shared)
                    continue
                namespace, shared_key = shared.secret_namespace, shared.key
                channel = shared.spec.as_channel(channel.name)

            def lookup(secret: str, key: str, namespace: str = namespace) -> str:
                return self._executor.read_secret_value(namespace, secret, key)

            try:
                resolved = await asyncio.to_thread(resolve_channel, channel, lookup)
                out.append(dataclasses.replace(resolved, shared_key=shared_key))
            except ChannelConfigError as exc:
                log.warning("channel %s of %s: %s", channel.name, entry.ref, exc)
        return out

    def _shared(self, ref: ChannelReference, entry: BudgetEntry) -> SharedChannel | str:
        """The shared channel a budget names (its kind is watched from the operator's
        start; ``want`` is a no-op then), or why it cannot be used yet."""
        if self._refs is None:
            return f"{ref}: shared channels are not available"
        self._refs.cache.want(ref.kind)
        found = self._refs.channel(ref, entry.ref.namespace or "")
        if found is None:
            return f"{ref}: not read yet"
        return found if isinstance(found, SharedChannel) else str(found)

    async def _persist(self, entry: BudgetEntry, ledger: dict[str, str], now: datetime) -> bool:
        if not self._leading():
            return False
        ref = entry.ref
        plural = BUDGET_PLURAL if ref.kind == BUDGET_KIND else CLUSTER_BUDGET_PLURAL
        prior = (entry.status or {}).get("conditions") or []
        conditions = [StatusCondition.model_validate(c) for c in prior]
        text = "; ".join(f"{k}: {v}" for k, v in sorted(ledger.items()))
        pending = any(v != "sent" for v in ledger.values())
        conditions = set_condition(
            conditions,
            NOTIFIED,
            ConditionStatus.TRUE if ledger else ConditionStatus.FALSE,
            "Pending" if pending else "Sent" if ledger else "NoStageReached",
            text,
            now=now,
            generation=entry.generation,
        )
        wire = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
        try:
            obj = await self._objects.patch_status(
                GROUP,
                VERSION,
                plural,
                ref.namespace or None,  # type: ignore[arg-type]
                ref.name,
                {"conditions": wire},
                resource_version=entry.resource_version or None,
            )
        except KubeError as exc:
            log.info("the notice ledger of %s was not written: %s", ref, exc.reason)
            return False
        entry.status = dict(obj.get("status") or {})
        entry.resource_version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return True


def ledger_of(entry: BudgetEntry) -> dict[str, str]:
    """The ledger as the budget's status holds it."""
    for c in (entry.status or {}).get("conditions") or []:
        if c.get("type") == NOTIFIED:
            out = {}
            for item in str(c.get("message") or "").split("; "):
                key, sep, state = item.rpartition(": ")
                if sep and key:
                    out[key] = state
            return out
    return {}


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
