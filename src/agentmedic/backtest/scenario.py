"""Synthetic fleet histories with known behaviour, in the SDK's series, for backfill.

A :class:`Scenario` scripts each agent as a sequence of :class:`Phase` values (executions
per minute, error ratio, latency profile, cost per execution) and renders the series
``agentmedic.instrument`` exports for it: ``agent_executions_total{status}``,
``agent_execution_duration_seconds`` (a classic histogram with the SDK's buckets),
``agent_cost_usd_total``, ``agent_info`` and optionally ``agent_tokens_total``. Counters
start at 0 at ``start`` and are sampled every ``resolution``; the phase in force at the
beginning of an interval decides what happens during it. Everything is deterministic, so
a test knows when a rule must start to breach.

:func:`standard_scenario` is the history the backtest is tested on (six agents, six
hours); :func:`fleet_scenario` is the benchmark's (a hundred agents, a week). Turn either
into OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics`` with
:func:`agentmedic_sandbox.prometheus.openmetrics_text` (each item of
:meth:`Scenario.series` is a ``(name, labels, points)`` triple, the fields of its
``Series``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from agentmedic.api.metric_names import AGENT_INFO
from agentmedic.instrument.series import EXECUTION_DURATION_BUCKETS
from agentmedic.metrics.catalog import SERIES

__all__ = [
    "Phase",
    "Scenario",
    "ScenarioSeries",
    "ScriptedAgent",
    "fleet_scenario",
    "splice",
    "standard_scenario",
]

ScenarioSeries = tuple[str, dict[str, str], list[tuple[float, float]]]
"""``(sample name, labels, [(unix seconds, value), ...])``, points in time order."""

HEALTHY_LATENCY: tuple[tuple[float, float], ...] = ((1.5, 0.6), (2.5, 0.35), (3.5, 0.05))
"""Seconds and the share of executions taking that long: p95 about 3.5 s."""
SLOW_LATENCY: tuple[tuple[float, float], ...] = ((7.0, 0.3), (11.0, 0.5), (14.0, 0.2))
"""p95 about 14.5 s: far above an 8 s or 10 s latency rule."""


@dataclass(frozen=True)
class Phase:
    """What an agent does from ``at`` (an offset from the scenario's start) on."""

    at: timedelta = timedelta(0)
    executions_per_minute: float = 20.0
    error_ratio: float = 0.02
    latency: tuple[tuple[float, float], ...] = HEALTHY_LATENCY
    """``(seconds, share)`` pairs; shares add up to 1."""
    cost_per_execution: float = 0.002
    """USD."""
    tokens_per_execution: tuple[float, float] = (800.0, 200.0)
    """Input and output tokens (only rendered when the scenario has ``tokens=True``)."""


@dataclass(frozen=True)
class ScriptedAgent:
    """One agent: its name, namespace, model and phases (the first must start at 0)."""

    name: str
    phases: tuple[Phase, ...] = (Phase(),)
    namespace: str = "agents"
    model: str = "gpt-4o"

    def __post_init__(self) -> None:
        if not self.phases or self.phases[0].at != timedelta(0):
            raise ValueError(f"agent {self.name}: the first phase must start at 0")
        offsets = [p.at for p in self.phases]
        if offsets != sorted(offsets):
            raise ValueError(f"agent {self.name}: phases must be in time order")


@dataclass(frozen=True)
class Scenario:
    """A fleet's history from ``start`` for ``duration``, sampled every ``resolution``."""

    start: datetime
    duration: timedelta
    agents: tuple[ScriptedAgent, ...]
    resolution: timedelta = timedelta(minutes=1)
    buckets: tuple[float, ...] = EXECUTION_DURATION_BUCKETS
    """Finite upper bounds of the latency histogram, in seconds."""
    tokens: bool = False
    """Also render ``agent_tokens_total``."""
    events: dict[str, list[str]] = field(default_factory=dict, compare=False)
    """What the script makes happen, for people reading a test: agent → descriptions."""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if self.resolution <= timedelta(0) or self.duration <= timedelta(0):
            raise ValueError("resolution and duration must be positive")

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def times(self) -> list[float]:
        """Sample times in unix seconds, from start to end inclusive."""
        t0 = self.start.timestamp()
        res = self.resolution.total_seconds()
        n = int(self.duration.total_seconds() // res)
        return [t0 + k * res for k in range(n + 1)]

    def series(self) -> Iterator[ScenarioSeries]:
        """Every series of every agent, agent by agent."""
        times = self.times()
        for agent in self.agents:
            yield from self._agent_series(agent, times)

    def agent_series(self, agent: ScriptedAgent) -> list[ScenarioSeries]:
        """The series of one agent."""
        return list(self._agent_series(agent, self.times()))

    def _agent_series(
        self, agent: ScriptedAgent, times: Sequence[float]
    ) -> Iterator[ScenarioSeries]:
        base = {"agent": agent.name, "namespace": agent.namespace, "model": agent.model}
        minutes = self.resolution.total_seconds() / 60
        starts = [self.start.timestamp() + p.at.total_seconds() for p in agent.phases]
        bounds = self.buckets
        ok: list[tuple[float, float]] = []
        err: list[tuple[float, float]] = []
        cost: list[tuple[float, float]] = []
        tok_in: list[tuple[float, float]] = []
        tok_out: list[tuple[float, float]] = []
        info: list[tuple[float, float]] = []
        hist_sum: list[tuple[float, float]] = []
        hist: list[list[tuple[float, float]]] = [[] for _ in range(len(bounds) + 1)]
        n_ok = n_err = usd = t_in = t_out = total_s = 0.0
        per_bucket = [0.0] * (len(bounds) + 1)
        for k, t in enumerate(times):
            if k > 0:
                phase = agent.phases[bisect.bisect_right(starts, times[k - 1]) - 1]
                n = phase.executions_per_minute * minutes
                n_err += n * phase.error_ratio
                n_ok += n * (1 - phase.error_ratio)
                usd += n * phase.cost_per_execution
                t_in += n * phase.tokens_per_execution[0]
                t_out += n * phase.tokens_per_execution[1]
                for seconds, share in phase.latency:
                    per_bucket[bisect.bisect_left(bounds, seconds)] += n * share
                    total_s += n * share * seconds
            ok.append((t, round(n_ok, 6)))
            err.append((t, round(n_err, 6)))
            cost.append((t, round(usd, 9)))
            tok_in.append((t, round(t_in, 3)))
            tok_out.append((t, round(t_out, 3)))
            info.append((t, 1.0))
            hist_sum.append((t, round(total_s, 6)))
            cumulative = 0.0
            for i, c in enumerate(per_bucket):
                cumulative += c
                hist[i].append((t, round(cumulative, 6)))
        executions = SERIES["executions"]
        yield executions, base | {"status": "success"}, ok
        yield executions, base | {"status": "error"}, err
        yield SERIES["cost"], base, cost
        if self.tokens:
            yield SERIES["tokens"], base | {"type": "input"}, tok_in
            yield SERIES["tokens"], base | {"type": "output"}, tok_out
        yield AGENT_INFO, base, info
        duration = SERIES["execution_duration"]
        les = [_le(b) for b in bounds] + ["+Inf"]
        for le, points in zip(les, hist, strict=True):
            yield f"{duration}_bucket", base | {"le": le}, points
        yield f"{duration}_sum", base, hist_sum
        yield f"{duration}_count", base, hist[-1]


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def splice(
    phases: Sequence[Phase], start: timedelta, end: timedelta, **changes: object
) -> tuple[Phase, ...]:
    """``phases`` with ``changes`` applied from ``start`` to ``end``: whatever the agent was
    doing goes on, altered (an outage on top of its story), and resumes at ``end``."""

    def in_force(offset: timedelta) -> Phase:
        return [p for p in phases if p.at <= offset][-1]

    out = [p for p in phases if p.at < start]
    out.append(replace(in_force(start), at=start, **changes))  # type: ignore[arg-type]
    out += [replace(p, **changes) for p in phases if start < p.at < end]  # type: ignore[arg-type]
    out.append(replace(in_force(end), at=end))
    out += [p for p in phases if p.at > end]
    return tuple(out)


def standard_scenario(start: datetime, namespace: str = "agents") -> Scenario:
    """Six agents over six hours at a one-minute resolution, each with one story.

    - ``healthy-1`` .. ``healthy-3``: 20 executions a minute, 2% errors, p95 about 3.5 s,
      $0.002 an execution ($2.40 an hour);
    - ``erring``: its error ratio jumps from 2% to 40% at +2h;
    - ``slow``: its latency jumps to a p95 of about 14.5 s from +3h to +4h;
    - ``spender``: $0.0505 an execution, $1.01 a minute from the start: past $80 at +80m
      (79.2m) and past $100 at +100m (99.0m), never exactly on a step;
    - everyone: from +5h to +5h20m the model provider fails 90% of executions (an outage
      a policy must treat as systemic).
    """
    h = timedelta(hours=1)
    outage = (5 * h, 5 * h + timedelta(minutes=20))

    def story(*phases: Phase) -> tuple[Phase, ...]:
        return splice(phases, *outage, error_ratio=0.9)

    agents = [ScriptedAgent(f"healthy-{i}", story(Phase()), namespace) for i in (1, 2, 3)]
    agents += [
        ScriptedAgent("erring", story(Phase(), Phase(at=2 * h, error_ratio=0.4)), namespace),
        ScriptedAgent(
            "slow",
            story(Phase(), Phase(at=3 * h, latency=SLOW_LATENCY), Phase(at=4 * h)),
            namespace,
        ),
        ScriptedAgent("spender", story(Phase(cost_per_execution=0.0505)), namespace),
    ]
    return Scenario(
        start=start,
        duration=6 * h,
        agents=tuple(agents),
        events={
            "erring": ["error ratio 2% -> 40% at +2h"],
            "slow": ["p95 latency ~3.5s -> ~14.5s from +3h to +4h"],
            "spender": ["$1.01 a minute from the start: past $80 at +80m, past $100 at +100m"],
            "*": ["90% errors for everyone from +5h to +5h20m (provider outage)"],
        },
    )


FLEET_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 3, 5, 8, 10, 15, 30, 60)
"""A coarser latency histogram for the large benchmark history (smaller TSDB, same maths)."""


def fleet_scenario(
    start: datetime,
    *,
    agents: int = 100,
    days: int = 7,
    resolution: timedelta = timedelta(minutes=1),
    namespace: str = "fleet",
) -> Scenario:
    """``agents`` agents over ``days`` days from ``start`` (a midnight): most healthy, some
    with scripted troubles.

    Agent ``i`` with ``i % 10 == 0`` has an error burst (45%) of two hours on day
    ``i % days`` from 10:00 plus ``i`` minutes; ``i % 10 == 3`` a latency spike of ninety
    minutes the day after; ``i % 10 == 7`` spends $0.04 an execution (hundreds of dollars a
    day). A provider outage fails every agent for 20 minutes on the middle day at 14:00.
    """
    day, h = timedelta(days=1), timedelta(hours=1)
    horizon = days * day
    outage = ((days // 2) * day + 14 * h, (days // 2) * day + 14 * h + timedelta(minutes=20))
    scripted: list[ScriptedAgent] = []
    for i in range(agents):
        base = Phase(executions_per_minute=10.0 + i % 17)
        phases = [base]
        trouble = (i % days) * day + 10 * h + timedelta(minutes=i)
        if i % 10 == 0:
            phases += [
                replace(base, at=trouble, error_ratio=0.45),
                replace(base, at=trouble + 2 * h),
            ]
        elif i % 10 == 3:
            trouble = (trouble + day) % horizon
            phases += [
                replace(base, at=trouble, latency=SLOW_LATENCY),
                replace(base, at=trouble + timedelta(minutes=90)),
            ]
        elif i % 10 == 7:
            phases = [replace(base, cost_per_execution=0.04)]
        phases = [p for p in phases if p.at < horizon]
        scripted.append(
            ScriptedAgent(f"agent-{i:03d}", splice(phases, *outage, error_ratio=0.9), namespace)
        )
    return Scenario(
        start=start,
        duration=horizon,
        agents=tuple(scripted),
        resolution=resolution,
        buckets=FLEET_BUCKETS,
    )
