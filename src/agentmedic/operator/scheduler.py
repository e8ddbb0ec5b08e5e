"""Evaluation cycles on APScheduler, one job per distinct interval.

Policies that share an interval are evaluated together in one cycle, so the metrics layer
can send each identical query once. A cycle never overlaps itself, by design rather than
by APScheduler's ``max_instances``: the job only starts the interval's cycle as a task and
returns, so APScheduler never finds a job still running.

- A tick that comes while the interval's cycle still runs is skipped and counted as an
  overrun (``agentmedic_cycle_overruns_total``), one log line naming the interval.
- :meth:`CycleScheduler.trigger_now` (a policy registered or changed, its agents listed,
  this replica became the leader) runs the cycle soon: once triggers have been quiet for
  ``settle`` seconds (at most ``settle_max`` after the first), so that the burst of
  registrations and first lists at start-up makes one cycle over every policy rather than
  a cycle over the first few, then another over the rest. One that arrives while the cycle
  runs is queued, and any number of them coalesce into a single run right after it. So a
  policy registered during start-up is evaluated as soon as its agents are known, not a
  whole interval later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agentmedic.api.durations import format_duration
from agentmedic.operator.telemetry import Telemetry

__all__ = ["CycleScheduler"]

log = logging.getLogger(__name__)

RunCycle = Callable[[timedelta], Awaitable[None]]


class CycleScheduler:
    """Keeps one APScheduler job per interval that at least one policy uses."""

    def __init__(
        self,
        run_cycle: RunCycle,
        telemetry: Telemetry,
        *,
        settle: float = 0.5,
        settle_max: float = 3.0,
    ) -> None:
        self._run_cycle = run_cycle
        self._quiet = max(0.0, settle)
        self._settle_max = max(self._quiet, settle_max)
        self._settling: dict[timedelta, float] = {}
        """Intervals whose triggered cycle waits for quiet: the last trigger's time."""
        self._telemetry = telemetry
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._intervals: set[timedelta] = set()
        self._running: dict[timedelta, asyncio.Task[None]] = {}
        self._again: set[timedelta] = set()
        self._stopped = False

    @staticmethod
    def job_id(interval: timedelta) -> str:
        return f"cycle-{format_duration(interval)}"

    def start(self) -> None:
        """Start in the running event loop (kopf's)."""
        self._scheduler.start()

    def shutdown(self) -> None:
        """No new cycle starts; one that runs finishes (its sends are waited for)."""
        self._stopped = True
        self._again.clear()
        for interval in list(self._settling):  # these had not started their cycle
            self._settling.pop(interval)
            task = self._running.pop(interval, None)
            if task is not None:
                task.cancel()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def drain(self, seconds: float) -> None:
        """After :meth:`shutdown`: wait up to ``seconds`` for the running cycles to finish,
        then cancel what still runs (a cancelled cycle logs nothing: it is not an error)."""
        tasks = set(self._running.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def intervals(self) -> set[timedelta]:
        return set(self._intervals)

    def running(self, interval: timedelta) -> bool:
        """The interval's cycle runs now."""
        return interval in self._running

    def queued(self, interval: timedelta) -> bool:
        """A run of the interval's cycle is queued after the running one."""
        return interval in self._again

    async def idle(self, interval: timedelta) -> None:
        """Wait until the interval's cycle, and any run queued after it, has finished."""
        task = self._running.get(interval)
        if task is not None:
            await asyncio.wait({task})

    def sync(self, intervals: set[timedelta]) -> None:
        """Add jobs for new intervals and remove jobs no policy needs any more. A new job
        first ticks one interval from now: the registration that brought the interval
        triggers the first cycle itself, as soon as the policy's agents are listed."""
        for interval in intervals - self._intervals:
            seconds = max(interval.total_seconds(), 1.0)
            self._scheduler.add_job(
                self.tick,
                IntervalTrigger(seconds=seconds, timezone=UTC),
                args=[interval],
                id=self.job_id(interval),
                coalesce=True,
                misfire_grace_time=max(1, int(seconds / 2)),
                replace_existing=True,
            )
            log.info("evaluation cycle every %s scheduled", format_duration(interval))
        for interval in self._intervals - intervals:
            job = self._scheduler.get_job(self.job_id(interval))
            if job is not None:
                job.remove()
            self._again.discard(interval)
            log.info("evaluation cycle every %s removed", format_duration(interval))
        self._intervals = set(intervals)

    async def tick(self, interval: timedelta) -> None:
        """APScheduler's job: start the cycle unless it still runs (an overrun)."""
        if interval in self._settling:
            return  # a triggered run is about to start
        if interval in self._running:
            label = format_duration(interval)
            self._telemetry.overruns.labels(label).inc()
            log.warning("evaluation cycle %s skipped: the previous one is still running", label)
            return
        self._start(interval)

    def trigger_now(self, interval: timedelta) -> None:
        """Run the interval's cycle as soon as possible (a policy changed, its agents
        listed): now, or right after the running one (coalesced)."""
        if interval not in self._intervals or self._stopped:
            return
        if interval in self._settling:
            self._settling[interval] = asyncio.get_running_loop().time()
        elif interval in self._running:
            self._again.add(interval)
        else:
            self._start(interval, settle=True)

    def _start(self, interval: timedelta, *, settle: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if settle and self._quiet > 0:
            self._settling[interval] = loop.time()
        task = loop.create_task(self._drive(interval), name=f"cycle-{format_duration(interval)}")
        self._running[interval] = task

    async def _settle(self, interval: timedelta) -> None:
        """Wait until triggers have been quiet for ``settle`` seconds, or ``settle_max``."""
        loop = asyncio.get_running_loop()
        latest = loop.time() + self._settle_max
        try:
            while True:
                wait = min(self._settling[interval] + self._quiet, latest) - loop.time()
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
        finally:
            self._settling.pop(interval, None)

    async def _drive(self, interval: timedelta) -> None:
        try:
            if interval in self._settling:
                await self._settle(interval)
            while True:
                self._again.discard(interval)
                await self._run_cycle(interval)
                if interval not in self._again or self._stopped:
                    return
        finally:
            self._running.pop(interval, None)

    def _on_missed(self, event: JobExecutionEvent) -> None:
        # APScheduler logs the missed run itself (the event loop was blocked).
        self._telemetry.overruns.labels(event.job_id.removeprefix("cycle-")).inc()
