"""Run a backtest: agents, history, replay, and the systemic episodes' reach.

The replay uses the engine's :func:`~agentmedic.engine.replay.replay` with ``apply=True``:
the policy's own decisions count as carried out for the engine's memory (a disabled agent
is not disabled twice, a downgraded one steps down from its new model, cooldowns and
``maxActionsPerHour`` count the earlier changes, ``maxDisabledPercent`` counts the agents
it disabled). The history itself stays what it was: an agent the policy would have
disabled kept running in reality, and its later metrics are still in the history (the
engine holds a disabled agent's rules, so they do not fire again). A backtest shows what
the policy *would have decided* given the history, not what the fleet would have done
under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from agentmedic.api.types import AgentPolicy, AgentPolicySpec
from agentmedic.backtest.history import (
    CHUNK_POINTS,
    Grid,
    History,
    HistoryFeed,
    NoHistoryError,
    OnQuery,
    discover_agents,
    fetch_history,
)
from agentmedic.backtest.report import BacktestResult, SystemicEpisodeReport, Timings
from agentmedic.engine.conditions import BREACH, compile_rule
from agentmedic.engine.inputs import AgentInput, PolicyInput
from agentmedic.engine.outcome import DecisionKind
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.replay import TimelineEntry, replay
from agentmedic.engine.requirements import requirements
from agentmedic.engine.series import AgentId
from agentmedic.metrics import DEFAULT_CATALOG, Catalog, MetricsBackend

__all__ = ["BacktestOptions", "policy_input", "replay_history", "run_backtest"]


@dataclass(frozen=True)
class BacktestOptions:
    """What to replay and how to fetch it."""

    start: datetime
    end: datetime
    step: timedelta = timedelta(minutes=1)
    namespace: str | None = None
    """The agents' namespace; default: the policy's."""
    agents: Sequence[str] | None = None
    """Agent names; default: every agent with history in the namespace."""
    namespace_label: str | None = "namespace"
    """The metrics label carrying the workload's namespace; None when the metrics carry none."""
    respect_dry_run: bool = False
    """Replay a dryRun policy as dry run (every decision DryRun) instead of as enabled."""
    catalog: Catalog = DEFAULT_CATALOG
    max_points: int = CHUNK_POINTS
    """Points per range query (at most 11,000, Prometheus' limit per series)."""
    max_concurrency: int = 4


def effective_spec(policy: AgentPolicy, respect_dry_run: bool) -> tuple[AgentPolicySpec, bool]:
    """The spec to replay and whether its dryRun was switched off for the replay."""
    spec = policy.spec
    if spec.guardrails.dry_run and not respect_dry_run:
        guardrails = spec.guardrails.model_copy(update={"dry_run": False})
        return spec.model_copy(update={"guardrails": guardrails}), True
    return spec, False


def policy_input(
    policy: AgentPolicy,
    spec: AgentPolicySpec,
    agents: Sequence[AgentId],
    models: dict[AgentId, str | None],
) -> PolicyInput:
    """The engine's view of the policy and its agents at the start of the range: each agent
    a Deployment of its name, replicas unknown, running the model the history shows."""
    meta = policy.metadata
    name = str(meta.get("name", "backtest"))
    return PolicyInput(
        spec=spec,
        namespace=str(meta.get("namespace", "default")),
        name=name,
        uid=str(meta.get("uid") or f"backtest-{name}"),
        agents={a: AgentInput(kind="Deployment", name=a.name, model=models.get(a)) for a in agents},
    )


def replay_history(
    policy: AgentPolicy, history: History, *, dry_run_ignored: bool = False, backend_url: str = ""
) -> BacktestResult:
    """Replay the engine over a fetched history and gather the result."""
    started = time.perf_counter()
    the_input = policy_input(policy, history.spec, history.agents, history.models)
    timeline = replay(the_input, history.timeline(), apply=True)
    return _result(
        policy, history, timeline, time.perf_counter() - started, dry_run_ignored, backend_url
    )


def _result(
    policy: AgentPolicy,
    history: History,
    timeline: list[TimelineEntry],
    replay_seconds: float,
    dry_run_ignored: bool,
    backend_url: str,
) -> BacktestResult:
    started = time.perf_counter()
    systemic = systemic_episodes(history, timeline)
    result = BacktestResult(
        policy=policy,
        history=history,
        timeline=timeline,
        backend_url=backend_url,
        dry_run_ignored=dry_run_ignored,
        systemic=systemic,
        timings=Timings(fetch=history.fetch_seconds),
    )
    result.timings.replay = replay_seconds + time.perf_counter() - started
    return result


def systemic_episodes(
    history: History, timeline: list[TimelineEntry]
) -> list[SystemicEpisodeReport]:
    """Each systemic episode with the agents breaching its rule while it lasted.

    The engine announces a systemic episode with one fleet notification (reason
    SystemicOutage) and ends it with a resolved one (OutageOver); in between, the agents
    breaching the rule get no notification of their own. Which agents those were is
    re-derived from the history with the engine's own rule verdicts.
    """
    spec = history.spec
    rules = {r.name: compile_rule(r, spec.agent_label) for r in spec.rules}
    notifying = {name for name, r in rules.items() if r.channels}
    starts: dict[str, tuple[int, str, datetime]] = {}
    spans: list[tuple[str, int, int | None, datetime, datetime | None]] = []
    for i, entry in enumerate(timeline):
        for n in entry.notifications:
            if n.agent is not None or n.rule not in rules:
                continue
            if n.state == "firing" and n.reason_code == DecisionReason.SYSTEMIC_OUTAGE:
                starts[n.episode] = (i, n.rule, entry.time)
            elif n.state == "resolved" and n.episode in starts:
                lo, rule, t0 = starts.pop(n.episode)
                spans.append((rule, lo, i, t0, entry.time))
    spans += [(rule, lo, None, t0, None) for lo, rule, t0 in starts.values()]
    # A rule without notify channels never announces its systemic episodes; its workload
    # changes are still suppressed (counted under SystemicOutage), but the span is unknown.
    out: list[SystemicEpisodeReport] = []
    sample = history.sampler()
    for rule, lo, hi, t0, t1 in sorted(spans, key=lambda s: s[3]):
        compiled = rules[rule]
        last = hi if hi is not None else history.grid.size
        agents: set[AgentId] = set()
        down = _disabled_before(timeline, 0, lo, set())
        for i in range(lo, last):
            if i > lo:
                down = _disabled_before(timeline, i - 1, i, down)
            for agent, values in sample(i).items():
                if agent in agents or agent in down:
                    continue  # a disabled agent is not judged, so it is not in the outage
                if compiled.verdict(values, False) == BREACH:
                    agents.add(agent)
        out.append(SystemicEpisodeReport(rule, t0, t1, tuple(sorted(agents)), rule in notifying))
    return out


def _disabled_before(
    timeline: list[TimelineEntry], lo: int, hi: int, down: set[AgentId]
) -> set[AgentId]:
    """``down`` (the agents scaled to zero and not restored before step ``lo``) updated
    with the decisions of steps ``lo`` to ``hi - 1``."""
    for entry in timeline[lo:hi]:
        for d in entry.decisions:
            if not d.applies:
                continue
            if d.kind == DecisionKind.SCALE_TO_ZERO:
                down.add(d.agent)
            elif d.kind == DecisionKind.RESTORE and d.restore is not None and d.restore.replicas:
                down.discard(d.agent)
    return down


async def run_backtest(
    policy: AgentPolicy,
    backend: MetricsBackend,
    options: BacktestOptions,
    *,
    backend_url: str = "",
    on_query: OnQuery | None = None,
) -> BacktestResult:
    """Discover the agents, fetch the history, replay the policy over it.

    Raises :class:`~agentmedic.backtest.history.NoHistoryError` when the range holds no
    agents or no data for the policy's metrics, and
    :class:`~agentmedic.backtest.history.BacktestDataError` when the backend fails.
    """
    started = time.perf_counter()
    spec, ignored = effective_spec(policy, options.respect_dry_run)
    grid = Grid(options.start, options.end, options.step)
    namespace = options.namespace or str(policy.metadata.get("namespace") or "default")
    agents, models = await _discover(
        backend, spec, grid, namespace, options, backend_url=backend_url, on_query=on_query
    )
    # The replay runs in a thread beside the fetch, each moment as soon as its data is in:
    # the engine's work overlaps Prometheus' instead of following it.
    feed = HistoryFeed()
    the_input = policy_input(policy, spec, agents, models)

    def replay_fed() -> tuple[list[TimelineEntry], float]:
        cpu = time.thread_time()
        entries = replay(the_input, feed.moments(grid), apply=True)
        return entries, time.thread_time() - cpu

    replaying = asyncio.ensure_future(asyncio.to_thread(replay_fed))
    try:
        history = await fetch_history(
            backend,
            spec,
            grid,
            agents,
            models,
            catalog=options.catalog,
            namespace_label=options.namespace_label,
            max_points=options.max_points,
            max_concurrency=options.max_concurrency,
            on_query=on_query,
            feed=feed,
        )
        if not history.has_data():
            keys = ", ".join(sorted(str(k) for k in requirements(spec, grid.start)))
            raise NoHistoryError(
                f"the range {_between(grid)} holds no data for the policy's metrics ({keys}) "
                f"for {len(agents)} agent(s) in namespace {namespace!r}; check --from/--to "
                "and that the agents export the agent_* series"
            )
    except BaseException:
        feed.abort()
        with contextlib.suppress(Exception):
            await asyncio.shield(replaying)  # the thread ends at its next moment
        raise
    history.fetch_seconds = time.perf_counter() - started
    timeline, replay_cpu = await replaying
    return _result(policy, history, timeline, replay_cpu, ignored, backend_url)


def _between(grid: Grid) -> str:
    return f"between {grid.start.isoformat()} and {grid.last.isoformat()}"


async def _discover(
    backend: MetricsBackend,
    spec: AgentPolicySpec,
    grid: Grid,
    namespace: str,
    options: BacktestOptions,
    *,
    backend_url: str,
    on_query: OnQuery | None,
) -> tuple[list[AgentId], dict[AgentId, str | None]]:
    """The agents to replay and their first models; the two queries count as progress
    steps 1 and 2."""
    done = 0

    def discovered(what: str) -> None:
        nonlocal done
        done += 1
        if on_query is not None:
            on_query(done, 2, what)

    agents, models, _ = await discover_agents(
        backend,
        grid,
        agent_label=spec.agent_label,
        namespace=namespace,
        namespace_label=options.namespace_label,
        names=options.agents,
        on_query=discovered,
    )
    if not agents:
        raise NoHistoryError(
            f"no agents in namespace {namespace!r} have agent_info or agent_executions_total "
            f"samples {_between(grid)}{' at ' + backend_url if backend_url else ''}; check "
            "--from/--to and --namespace (default: the policy's namespace), or name the agents "
            "with --agents"
        )
    return agents, models
