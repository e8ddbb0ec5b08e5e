"""The cycle scheduler: a trigger during a cycle is queued and coalesced, a tick during a
cycle is an overrun, and APScheduler never finds a job still running."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from agentmedic.operator.scheduler import CycleScheduler
from agentmedic.operator.telemetry import Telemetry

INTERVAL = timedelta(seconds=30)


class BlockingCycles:
    """A run_cycle that records each run and waits until the test lets it finish."""

    def __init__(self) -> None:
        self.runs = 0
        self._started: asyncio.Queue[int] = asyncio.Queue()
        self._gate = asyncio.Semaphore(0)

    async def __call__(self, interval: timedelta) -> None:
        self.runs += 1
        self._started.put_nowait(self.runs)
        await self._gate.acquire()

    async def started(self) -> int:
        """Wait for the next run to start; its number."""
        return await self._started.get()

    def finish(self) -> None:
        """Let one run finish."""
        self._gate.release()


def overruns(telemetry: Telemetry) -> float:
    value = telemetry.registry.get_sample_value(
        "agentmedic_cycle_overruns_total", {"interval": "30s"}
    )
    return value or 0.0


async def test_triggers_during_a_cycle_are_coalesced_into_one_run_right_after_it() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    assert await cycles.started() == 1
    for _ in range(3):  # three policies registered while the cycle runs
        scheduler.trigger_now(INTERVAL)
    cycles.finish()
    assert await cycles.started() == 2  # the queued run starts without waiting for a tick
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 2, "the three triggers must coalesce into one run"


async def test_a_trigger_with_no_cycle_running_runs_once_when_triggers_settle() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    assert await cycles.started() == 1
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 1


async def test_a_tick_during_a_cycle_is_an_overrun_and_the_job_returns_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cycles = BlockingCycles()
    telemetry = Telemetry()
    scheduler = CycleScheduler(cycles, telemetry)
    scheduler.sync({INTERVAL})
    await scheduler.tick(INTERVAL)  # the job returns once the cycle is started
    assert await cycles.started() == 1
    with caplog.at_level(logging.WARNING):
        await scheduler.tick(INTERVAL)  # returns although the cycle still runs
    assert overruns(telemetry) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "evaluation cycle 30s skipped: the previous one is still running"
    ]
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 1, "a skipped tick is not queued"


async def test_after_shutdown_no_queued_run_starts() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    assert await cycles.started() == 1
    scheduler.trigger_now(INTERVAL)
    scheduler.shutdown()
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 1


async def test_drain_lets_a_running_cycle_finish_and_cancels_one_that_outlasts_it() -> None:
    # stop() drains before it closes the clients a running cycle uses: a cycle that ends
    # in time ends normally; one that does not is cancelled, which logs nothing.
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    assert await cycles.started() == 1
    scheduler.shutdown()
    drained = asyncio.create_task(scheduler.drain(30))
    await asyncio.sleep(0)
    assert not drained.done()  # it waits for the running cycle
    cycles.finish()
    await drained
    assert not scheduler.running(INTERVAL)

    stuck = BlockingCycles()
    other = CycleScheduler(stuck, Telemetry())
    other.sync({INTERVAL})
    other.trigger_now(INTERVAL)
    assert await stuck.started() == 1
    other.shutdown()
    await other.drain(0.05)  # never finished by the test: cancelled
    assert not other.running(INTERVAL)


async def test_a_trigger_for_an_interval_no_policy_uses_runs_nothing() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    scheduler.trigger_now(INTERVAL)
    await asyncio.sleep(0)
    assert not scheduler.running(INTERVAL)
    assert cycles.runs == 0


class Flag(logging.Handler):
    """Sets an event when a record with ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_apscheduler_never_finds_a_cycle_still_running_when_it_ticks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real APScheduler ticking every second over a cycle that does not end: the
    operator's own overrun line, never APScheduler's "maximum number of running
    instances"."""
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry())
    every_second = timedelta(seconds=1)
    flag = Flag("skipped: the previous one is still running")
    logging.getLogger("agentmedic.operator.scheduler").addHandler(flag)
    try:
        with caplog.at_level(logging.DEBUG):
            scheduler.start()
            scheduler.sync({every_second})
            await asyncio.wait_for(flag.seen.wait(), timeout=60)
            scheduler.shutdown()
            cycles.finish()
            await scheduler.idle(every_second)
    finally:
        logging.getLogger("agentmedic.operator.scheduler").removeHandler(flag)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "maximum number of running instances" in m]
    assert cycles.runs == 1


async def test_a_burst_of_triggers_makes_one_cycle_after_they_fall_quiet() -> None:
    """Start-up: policies register and their first lists arrive one after another; one
    cycle over them all, not one over the first and a second over the rest."""
    cycles = BlockingCycles()
    # A quiet period ten times the gap between triggers: a sleep overslept on a loaded
    # machine still falls within it.
    scheduler = CycleScheduler(cycles, Telemetry(), settle=1.0, settle_max=30)
    scheduler.sync({INTERVAL})
    loop = asyncio.get_running_loop()
    first = last = loop.time()
    for _ in range(5):
        last = loop.time()
        scheduler.trigger_now(INTERVAL)
        await asyncio.sleep(0.1)  # each trigger within the quiet period of the last
    assert cycles.runs == 0
    assert await cycles.started() == 1
    assert loop.time() >= last + 1.0  # quiet counted from the last trigger, not the first
    assert loop.time() >= first + 1.4
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 1


async def test_settling_ends_at_settle_max_however_many_triggers_come() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry(), settle=0.2, settle_max=0.3)
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)

    async def keep_triggering() -> None:
        while True:
            scheduler.trigger_now(INTERVAL)
            await asyncio.sleep(0.05)

    poker = asyncio.create_task(keep_triggering())
    try:
        # Never 0.2 s without a trigger: only settle_max ends the wait.
        assert await asyncio.wait_for(cycles.started(), 10) == 1
    finally:
        poker.cancel()
    assert scheduler.running(INTERVAL)
    cycles.finish()
    cycles.finish()  # and a run a last trigger may have queued
    await scheduler.idle(INTERVAL)


async def test_a_tick_while_a_trigger_settles_is_no_overrun_and_no_second_run() -> None:
    cycles = BlockingCycles()
    telemetry = Telemetry()
    scheduler = CycleScheduler(cycles, telemetry, settle=0.2)
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    await scheduler.tick(INTERVAL)
    assert cycles.runs == 0
    assert overruns(telemetry) == 0
    assert await cycles.started() == 1
    cycles.finish()
    await scheduler.idle(INTERVAL)
    assert cycles.runs == 1


async def test_shutdown_while_a_trigger_settles_runs_nothing() -> None:
    cycles = BlockingCycles()
    scheduler = CycleScheduler(cycles, Telemetry(), settle=0.2)
    scheduler.sync({INTERVAL})
    scheduler.trigger_now(INTERVAL)
    scheduler.shutdown()
    await scheduler.drain(5)
    await asyncio.sleep(0.3)
    assert cycles.runs == 0
    assert not scheduler.running(INTERVAL)
