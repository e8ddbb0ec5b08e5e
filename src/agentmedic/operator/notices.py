"""Notifications of a policy: reserved in the ledger, stored in the outbox, then sent.

A message is never sent before the state that announces it is stored together with the
reservation of each send (the outbox in ``agentmedic.io/notifications``): :meth:`reserve`
admits sends into the outbox, the cycle persists it, :meth:`send` delivers in the
background and settles each send in the ledger and the stored outbox. A crash between the
receiver's answer and that write sends the message again from the next term: at least
once, with the same PagerDuty dedup_key and webhook delivery id (see
docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from agentmedic.actions import ActionExecutor
from agentmedic.api.types import Severity
from agentmedic.engine import Notification
from agentmedic.notify import (
    ChannelConfigError,
    Evidence,
    Message,
    MessageState,
    Notifier,
    ResolvedChannel,
    resolve_channel,
)
from agentmedic.notify.ledger import Admission
from agentmedic.notify.report import Outcome as DeliveryOutcome
from agentmedic.operator.entry import PolicyEntry, dumps
from agentmedic.operator.persistence import NOTIFICATIONS_ANNOTATION
from agentmedic.operator.refs import RefResolver, SharedChannel
from agentmedic.operator.status_writer import PolicyWriter
from agentmedic.operator.telemetry import Telemetry

__all__ = ["METRICS_RULE", "Deliveries", "message_of"]

log = logging.getLogger(__name__)

METRICS_RULE = "metricsUnavailable"
"""The rule name of the fleet-wide message about a metrics outage."""


class Deliveries:
    """The outbox of every policy and the background tasks that send it."""

    def __init__(
        self,
        notifier: Notifier,
        executor: ActionExecutor,
        writer: PolicyWriter,
        telemetry: Telemetry,
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
    ) -> None:
        self.notifier = notifier
        self._executor = executor
        self._writer = writer
        self._telemetry = telemetry
        self._clock = clock
        self._leading = leading
        self.tasks: set[asyncio.Task[None]] = set()
        """Sends (and other background work of the cycles) still running."""
        self._in_flight: set[tuple[str, str, str]] = set()
        self.refs: RefResolver | None = None
        """Resolves the entries that name a shared channel (channelRef)."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run in the background; :meth:`drain` waits for it at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel_all(self) -> None:
        """A term ended: what the sends had reserved is in the outbox for the next leader."""
        for task in list(self.tasks):
            task.cancel()

    async def drain(self, seconds: float) -> None:
        """Let sends in flight finish and settle, within ``seconds``; a cycle still running
        may spawn more, so wait until none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)

    def in_flight(self, entry: PolicyEntry, item: str) -> bool:
        """A send of this process is delivering that outbox item now."""
        return (entry.namespace, entry.name, item) in self._in_flight

    async def channels(self, entry: PolicyEntry, names: set[str]) -> list[ResolvedChannel]:
        """The policy's channels of these names, their secrets read; a misconfigured one is
        reported on the policy and left out."""
        out = []
        for channel in entry.spec.notifications.channels:
            if channel.name not in names:
                continue
            namespace, shared_key = entry.namespace, None
            if channel.channel_ref is not None:
                shared = (
                    self.refs.channel(channel.channel_ref, entry.namespace) if self.refs else None
                )
                if not isinstance(shared, SharedChannel):
                    why = shared or f"{channel.channel_ref}: not read yet"
                    await self._writer.event(entry, "ChannelMisconfigured", str(why), warning=True)
                    continue
                namespace, shared_key = shared.secret_namespace, shared.key
                channel = shared.spec.as_channel(channel.name)

            def lookup(secret: str, key: str, namespace: str = namespace) -> str:
                return self._executor.read_secret_value(namespace, secret, key)

            try:
                resolved = await asyncio.to_thread(resolve_channel, channel, lookup)
                out.append(dataclasses.replace(resolved, shared_key=shared_key))
            except ChannelConfigError as exc:
                self._telemetry.errors.labels("notify").inc()
                await self._writer.event(entry, "ChannelMisconfigured", str(exc), warning=True)
        return out

    async def reserve(
        self, entry: PolicyEntry, due: list[Notification], now: datetime
    ) -> tuple[list[str], dict[str, ResolvedChannel]]:
        """Ask the ledger which channel gets which message; put the admitted sends in the
        outbox (not yet persisted). Returns their ids and the channels resolved."""
        if not due:
            return [], {}
        names = {c for n in due for c in n.channels}
        channels = {c.name: c for c in await self.channels(entry, names)}
        ids: list[str] = []
        for n in due:
            targets = [channels[c] for c in n.channels if c in channels]
            if not targets:
                continue
            message = message_of(entry, n, now)
            admitted, suppressed = self.notifier.reserve(message, targets)
            for result in suppressed:
                self._telemetry.notifications.labels(result.channel, str(result.outcome)).inc()
            for channel, admission in admitted:
                state = admission.state.value
                key = f"{channel.name}|{admission.episode}|{state}|{admission.sent_ts}"
                entry.outbox[key] = {
                    "channel": channel.name,
                    "message": message.to_json(),
                    "admission": admission.to_json(),
                }
                ids.append(key)
        return ids, channels

    def unreserve(self, entry: PolicyEntry, ids: list[str]) -> None:
        """The reservations were not stored, so they are not sent: the next cycle decides
        again from what the API server holds."""
        for i in ids:
            item = entry.outbox.pop(i)
            self.notifier.settle(Admission.from_json(item["admission"]), delivered=False)

    def notes(self, entry: PolicyEntry) -> str:
        """The value of ``agentmedic.io/notifications``: the ledger and the outbox."""
        ledger = self.notifier.ledger.export_policy(entry.namespace, entry.name, self._clock())
        return dumps({"ledger": ledger, "outbox": entry.outbox})

    async def send(
        self,
        entry: PolicyEntry,
        ids: list[str],
        channels: dict[str, ResolvedChannel] | None = None,
    ) -> None:
        """Send reserved messages, then settle each in the ledger and the stored outbox."""
        items = [(i, entry.outbox[i]) for i in ids if i in entry.outbox]
        if not items:
            return
        if channels is None:
            wanted = {str(item["channel"]) for _, item in items}
            channels = {c.name: c for c in await self.channels(entry, wanted)}
        await asyncio.gather(*(self._send_one(entry, i, item, channels) for i, item in items))

    async def _send_one(
        self,
        entry: PolicyEntry,
        item_id: str,
        item: dict[str, Any],
        channels: dict[str, ResolvedChannel],
    ) -> None:
        marker = (entry.namespace, entry.name, item_id)
        self._in_flight.add(marker)
        try:
            try:
                message = Message.from_json(item["message"])
                admission = Admission.from_json(item["admission"])
            except (KeyError, TypeError, ValueError):
                log.warning("dropping an unreadable reserved message of %s/%s", *entry.key)
            else:
                channel = channels.get(str(item.get("channel")))
                if not self._leading():
                    return  # the next leader sends it
                if channel is None:  # the channel left the spec meanwhile
                    self.notifier.settle(admission, delivered=False)
                else:
                    await self._deliver(channel, message, admission)
            async with entry.lock:
                entry.outbox.pop(item_id, None)
                await self._writer.annotations(entry, {NOTIFICATIONS_ANNOTATION: self.notes(entry)})
        finally:
            self._in_flight.discard(marker)

    async def _deliver(
        self, channel: ResolvedChannel, message: Message, admission: Admission
    ) -> None:
        result = await self.notifier.send_reserved(channel, message, admission)
        self._telemetry.notifications.labels(result.channel, str(result.outcome)).inc()
        if result.outcome is not DeliveryOutcome.SENT:
            log.warning(
                "episode %s (%s) not delivered to %s: %s",
                message.episode,
                message.state.value,
                channel.name,
                result.detail,
            )

    async def fleet_message(
        self, entry: PolicyEntry, state: MessageState, summary: str, since: datetime, now: datetime
    ) -> None:
        """A message about the whole policy (a metrics outage) to its ``noData`` channels."""
        if not entry.spec.no_data.channels:
            return
        channels = await self.channels(entry, set(entry.spec.no_data.channels))
        if not channels:
            return
        message = Message(
            episode=f"{entry.uid}:*:{METRICS_RULE}:{int(since.timestamp())}",
            policy_namespace=entry.namespace,
            policy_name=entry.name,
            agent=None,
            rule=METRICS_RULE,
            severity=Severity.HIGH,
            state=state,
            summary=summary,
            time=now,
        )
        await self.notifier.notify(message, channels)


def message_of(entry: PolicyEntry, n: Notification, now: datetime) -> Message:
    """The engine's notification as a channel-neutral message."""
    evidence: tuple[Evidence, ...] = ()
    if n.evidence is not None:
        evidence = tuple(
            Evidence(
                condition=f"{c.metric or 'query'} {c.op.value} {c.threshold:g}",
                value=c.observed,
                threshold=c.threshold,
                window=c.window,
            )
            for c in n.evidence.conditions
        )
    return Message(
        episode=n.episode,
        policy_namespace=entry.namespace,
        policy_name=entry.name,
        agent=n.agent,
        rule=n.rule,
        severity=n.severity,
        state=MessageState(n.state),
        summary=n.summary,
        time=n.at or now,
        evidence=evidence,
        action=n.action,
        undo=n.undo,
        dry_run=n.dry_run,
    )
