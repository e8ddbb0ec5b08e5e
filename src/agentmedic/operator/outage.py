"""The metrics-outage policy: no evidence, no remediation.

A policy any of whose queries failed is not evaluated that cycle (its engine state kept).
:meth:`OutagePolicy.unavailable` sets ``MetricsAvailable=False`` naming the fault, logs
when the outage starts, and once it has lasted ``noData.after`` posts a Warning Event and
a message to the ``noData`` channels, said again while the outage lasts as a firing episode
is (every repostInterval of an Alertmanager channel, so that Alertmanager keeps the alert
active; every renotifyAfter of the others); :meth:`OutagePolicy.back` resolves that message
when metrics return.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from agentmedic.api.durations import format_duration
from agentmedic.metrics import MetricsError, MetricsUnavailable
from agentmedic.notify import MessageState
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.notices import Deliveries
from agentmedic.operator.status import outage_conditions
from agentmedic.operator.status_writer import PolicyWriter
from agentmedic.operator.telemetry import Telemetry

__all__ = ["OutagePolicy"]

log = logging.getLogger(__name__)


class OutagePolicy:
    """What a policy without usable metrics gets: a condition, then an Event and a page."""

    def __init__(self, writer: PolicyWriter, deliveries: Deliveries, telemetry: Telemetry) -> None:
        self._writer = writer
        self._deliveries = deliveries
        self._telemetry = telemetry

    async def unavailable(
        self, entry: PolicyEntry, exc: MetricsError, now: datetime, *, key: str = ""
    ) -> None:
        """No evidence this cycle. ``key`` names the failed query's series when one query
        failed."""
        self._telemetry.errors.labels("metrics").inc()
        what = key + (str(exc) if isinstance(exc, MetricsUnavailable) else f"{exc.reason}: {exc}")
        if entry.metrics_down_since is None:
            entry.metrics_down_since = now
            log.warning("policy %s/%s not evaluated: %s", entry.namespace, entry.name, what[:500])
        since = entry.metrics_down_since
        if not entry.metrics_down_notified and now - since >= entry.spec.no_data.after:
            entry.metrics_down_notified = True
            entry.metrics_down_posted = now
            await self._announce(entry, str(exc.reason), what, since, now)
        elif entry.metrics_down_notified and _repost_due(entry, now):
            entry.metrics_down_posted = now
            await self._deliveries.fleet_message(
                entry, MessageState.FIRING, _summary(now - since, what), since, now
            )
        await self._writer.status(entry, conditions=outage_conditions(str(exc.reason), what, since))

    async def _announce(
        self, entry: PolicyEntry, reason: str, what: str, since: datetime, now: datetime
    ) -> None:
        lasted = format_duration(now - since)
        await self._writer.event(
            entry,
            reason,
            f"no usable metrics for {lasted}: {what[:500]}; no action until they return",
            warning=True,
        )
        await self._deliveries.fleet_message(
            entry, MessageState.FIRING, _summary(now - since, what), since, now
        )

    async def back(self, entry: PolicyEntry, now: datetime) -> None:
        """Metrics answered again: end the outage, resolve its message if one was sent."""
        since = entry.metrics_down_since
        if since is None:
            return
        entry.metrics_down_since = None
        log.info(
            "policy %s/%s has metrics again after %s",
            entry.namespace,
            entry.name,
            format_duration(now - since),
        )
        if entry.metrics_down_notified:
            entry.metrics_down_notified = False
            entry.metrics_down_posted = None
            await self._deliveries.fleet_message(
                entry,
                MessageState.RESOLVED,
                f"metrics backend available again after {format_duration(now - since)}",
                since,
                now,
            )


def _summary(lasted: timedelta, what: str) -> str:
    return (
        f"metrics backend unavailable for {format_duration(lasted)}: {what}; "
        "agentmedic takes no action until it returns"
    )


def _repost_due(entry: PolicyEntry, now: datetime) -> bool:
    """Whether the outage message is due again: the soonest repostInterval (Alertmanager)
    or renotifyAfter of the noData channels has passed since it was last sent. The
    channels' ledgers still decide per channel, as for any firing episode."""
    wanted = set(entry.spec.no_data.channels)
    every = [
        ch.alertmanager.repost_interval if ch.alertmanager else ch.renotify_after
        for ch in entry.spec.notifications.channels
        if ch.name in wanted
    ]
    last = entry.metrics_down_posted
    return bool(every) and last is not None and now - last >= min(every)
