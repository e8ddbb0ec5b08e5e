"""Evaluation cycles on APScheduler, one job per distinct interval.

Policies that share an interval are evaluated together in one cycle, so the metrics layer
can send each identical query once. A job never overlaps itself (``max_instances=1``);
a cycle still running when the next is due makes APScheduler skip that run, which is
counted as an overrun rather than stacked; missed runs are coalesced into one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agentmedic.api.durations import format_duration
from agentmedic.operator.telemetry import Telemetry

__all__ = ["CycleScheduler"]

log = logging.getLogger(__name__)

RunCycle = Callable[[timedelta], Awaitable[None]]


class CycleScheduler:
    """Keeps one APScheduler job per interval that at least one policy uses."""

    def __init__(self, run_cycle: RunCycle, telemetry: Telemetry) -> None:
        self._run_cycle = run_cycle
        self._telemetry = telemetry
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._intervals: set[timedelta] = set()
        self._triggered: dict[str, bool] = {}

    @staticmethod
    def job_id(interval: timedelta) -> str:
        return f"cycle-{format_duration(interval)}"

    def start(self) -> None:
        """Start in the running event loop (kopf's)."""
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def intervals(self) -> set[timedelta]:
        return set(self._intervals)

    def sync(self, intervals: set[timedelta]) -> None:
        """Add jobs for new intervals and remove jobs no policy needs any more."""
        for interval in intervals - self._intervals:
            seconds = max(interval.total_seconds(), 1.0)
            self._scheduler.add_job(
                self._run_cycle,
                IntervalTrigger(seconds=seconds, timezone=UTC),
                args=[interval],
                id=self.job_id(interval),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(seconds / 2)),
                next_run_time=datetime.now(UTC),
                replace_existing=True,
            )
            log.info("evaluation cycle every %s scheduled", format_duration(interval))
        for interval in self._intervals - intervals:
            job = self._scheduler.get_job(self.job_id(interval))
            if job is not None:
                job.remove()
            log.info("evaluation cycle every %s removed", format_duration(interval))
        self._intervals = set(intervals)

    def trigger_now(self, interval: timedelta) -> None:
        """Run the interval's cycle as soon as possible (a policy changed, its agents listed)."""
        job = self._scheduler.get_job(self.job_id(interval))
        if job is not None:
            self._triggered[job.id] = True
            job.modify(next_run_time=datetime.now(UTC))

    def _on_skip(self, event: JobExecutionEvent) -> None:
        if self._triggered.pop(event.job_id, False):
            return  # an early run asked for while a cycle ran: that cycle covers it
        interval = event.job_id.removeprefix("cycle-")
        self._telemetry.overruns.labels(interval).inc()
        log.warning("evaluation cycle %s skipped: the previous one is still running", interval)
