"""One evaluation cycle as short named steps: gather → fetch → decide → act → persist → report.

- :func:`gather`: each policy of the interval with its agents from the workload cache and
  the engine's view of them (models read from ConfigMaps once);
- :func:`fetch`: every policy's needs merged, one query per distinct need, within the
  cycle's deadline;
- :func:`decide`: the evidence rule (a policy with a failed query is held), then the pure
  engine;
- :func:`act`: across policies the strongest change per agent, carried out by the
  :class:`~agentmedic.operator.dispatch.Dispatcher`;
- persist (:class:`~agentmedic.operator.memory.Memory`) and report
  (:class:`~agentmedic.operator.report.Reporter`), policy by policy.

:class:`Cycle` runs them in that order; each step is a function of what the previous one
gave, so each can be read (and tested) alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentmedic.api.types import RecentAction
from agentmedic.engine import (
    AgentId,
    CycleResult,
    PolicyInput,
    PolicyState,
    Silence,
    evaluate,
    requirements,
    strongest_per_agent,
)
from agentmedic.engine.finance import BudgetVerdict
from agentmedic.engine.requirements import probation_only
from agentmedic.metrics import (
    Catalog,
    FetchStats,
    MetricsBackend,
    MetricsError,
    MetricsUnavailable,
    UnavailableReason,
    fetch_samples,
    merge_needs,
)
from agentmedic.operator.configmaps import ModelReads
from agentmedic.operator.dispatch import Dispatcher, Order
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.memory import rebuild_state
from agentmedic.operator.outage import OutagePolicy
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.watch import CachedWorkload, WorkloadCache

__all__ = [
    "Evaluated",
    "Fetched",
    "Gathered",
    "act",
    "budget_stages",
    "decide",
    "fetch",
    "gather",
    "held",
]

Samples = dict[AgentId, dict[Any, float | None]]


@dataclass
class Gathered:
    """One policy ready to evaluate."""

    entry: PolicyEntry
    input: PolicyInput
    agents: dict[AgentId, CachedWorkload]
    needs: set[Any]
    """The series keys its rules and budget need this cycle."""


@dataclass
class Fetched:
    """The cycle's samples, or why there are none."""

    samples: Samples
    stats: FetchStats
    unavailable: MetricsError | None = None


@dataclass
class Evaluated:
    """One policy the engine evaluated."""

    gathered: Gathered
    outcome: CycleResult
    budget_changed: bool
    """A budget stage started, ended or moved to another period this cycle."""

    @property
    def entry(self) -> PolicyEntry:
        return self.gathered.entry


# ---------------------------------------------------------------------- gather


async def gather(
    entries: Iterable[PolicyEntry],
    cache: WorkloadCache,
    reads: ModelReads,
    settings: OperatorSettings,
    now: datetime,
    budgets: Callable[[str, AgentId], tuple[BudgetVerdict, ...]] | None = None,
    budgets_known: bool = True,
    silences: Callable[[str], Awaitable[tuple[Silence, ...] | None]] | None = None,
) -> list[Gathered]:
    """The policies to evaluate and their agents; a policy whose watch (of its workloads
    or of its namespace's AgentSilences) has not listed yet, or that this term has not read
    from the API server, waits for a later cycle.
    ``budgets`` gives what finance's budgets say of an agent, for the policy that acts
    on it for them; ``budgets_known`` is False until they were evaluated once."""
    out = []
    for entry in entries:
        if not entry.fresh:
            continue  # not read from the API server in this term (see Operator.refresh)
        workloads = cache.workloads(entry.namespace, entry.selector)
        silenced = () if silences is None else await silences(entry.namespace)
        if workloads is None or silenced is None:
            continue  # a watch has not listed yet
        agents: dict[AgentId, CachedWorkload] = {}
        for w in workloads:
            agents.setdefault(AgentId(entry.namespace, w.agent), w)
        if entry.state is None:
            entry.state = rebuild_state(entry, agents)
        spec = entry.spec
        if settings.dry_run and not spec.guardrails.dry_run:
            spec = spec.model_copy(
                update={"guardrails": spec.guardrails.model_copy(update={"dry_run": True})}
            )
        policy_input = PolicyInput(
            spec=spec,
            namespace=entry.namespace,
            name=entry.name,
            uid=entry.uid,
            agents={a: await reads.engine_workload(w, spec) for a, w in agents.items()},
            silences=silenced,
        )
        if budgets is not None:
            policy_input = _with_budgets(policy_input, budgets)
        if not budgets_known:
            policy_input = dataclasses.replace(policy_input, budgets_known=False)
        out.append(Gathered(entry, policy_input, agents, requirements(spec, now)))
    return out


def _with_budgets(
    policy_input: PolicyInput, budgets: Callable[[str, AgentId], tuple[BudgetVerdict, ...]]
) -> PolicyInput:
    """The policy's agents with the verdicts of the budgets that act through it."""
    key = f"{policy_input.namespace}/{policy_input.name}"
    agents = dict(policy_input.agents)
    changed = False
    for agent, workload in agents.items():
        verdicts = budgets(key, agent)
        if verdicts:
            agents[agent] = dataclasses.replace(workload, budgets=verdicts)
            changed = True
    return dataclasses.replace(policy_input, agents=agents) if changed else policy_input


# ---------------------------------------------------------------------- fetch


async def fetch(
    backend: MetricsBackend,
    catalog: Catalog,
    settings: OperatorSettings,
    gathered: Sequence[Gathered],
    now: datetime,
    interval: timedelta,
) -> Fetched:
    """This cycle's samples, or why there are none. The fetch has a deadline of its own
    (``cycle_deadline_seconds``, below the interval): a backend that answers slowly ends
    this cycle's fetching rather than delaying the next cycle."""
    merged = merge_needs(*({key: set(g.agents) for key in g.needs} for g in gathered))
    if not merged:
        return Fetched({}, FetchStats())
    deadline = settings.cycle_deadline(interval)
    try:
        async with asyncio.timeout(deadline):
            samples, stats = await fetch_samples(
                backend,
                merged,
                now,
                catalog,
                namespace_label=settings.namespace_label,
                max_concurrency=settings.max_concurrent_queries,
            )
    except TimeoutError:
        reason = MetricsUnavailable(
            UnavailableReason.TIMEOUT,
            f"the cycle's queries did not all answer within its deadline of "
            f"{deadline:g}s (cycleDeadlineSeconds)",
        )
        return Fetched({}, FetchStats(), reason)
    except MetricsError as exc:
        return Fetched({}, FetchStats(), exc)
    return Fetched(samples, stats)


# ---------------------------------------------------------------------- decide


async def decide(
    gathered: Sequence[Gathered], fetched: Fetched, outage: OutagePolicy, now: datetime
) -> list[Evaluated]:
    """The evidence rule, then the engine. A policy is evaluated only on good answers to
    every query it needs: any failed query (unavailable, malformed, refused as wrong
    PromQL) holds the whole policy this cycle, state untouched, since evaluating it without
    the series would read the failure as the agents' missing data (noData stances)."""
    out = []
    for g in gathered:
        entry = g.entry
        if fetched.unavailable is not None:
            await outage.unavailable(entry, fetched.unavailable, now)
            continue
        errors = fetched.stats.errors
        failed = next(((k, e) for k, e in errors.items() if k in g.needs), None)
        if failed is not None:
            await outage.unavailable(entry, failed[1], now, key=f"{failed[0]}: ")
            continue
        await outage.back(entry, now)
        prior = entry.state
        assert prior is not None  # rebuilt by gather
        holding = g.needs - probation_only(g.input.spec, now)  # probation: NaN is no data
        undefined = undefined_agents(fetched.stats, holding, g.agents)
        policy_input = held(g.input, undefined) if undefined else g.input
        outcome = evaluate(policy_input, fetched.samples, prior, now)
        changed = g.input.spec.budget is not None and (
            budget_stages(prior) != budget_stages(outcome.state)
        )
        out.append(Evaluated(dataclasses.replace(g, input=policy_input), outcome, changed))
    return out


def undefined_agents(
    stats: FetchStats, needed: set[Any], agents: Mapping[AgentId, CachedWorkload]
) -> set[AgentId]:
    """The policy's agents with a NaN among the values it needs."""
    out: set[AgentId] = set()
    for key, undefined in stats.undefined.items():
        if key in needed:
            out.update(a for a in undefined if a in agents)
    return out


def held(policy_input: PolicyInput, agents: set[AgentId]) -> PolicyInput:
    """The policy as the engine sees it, with ``agents`` held this cycle. A NaN (0/0: a
    ratio over an empty window) is not evidence that the agent is healthy, breaching or
    gone, so the engine is told its metrics are unknown: it is neither judged nor given a
    noData stance, gets no decision of any kind (a timed recovery waits for a cycle with
    numbers), and its rules are kept as they are."""
    return dataclasses.replace(
        policy_input,
        agents={
            a: dataclasses.replace(w, metrics_unknown=True) if a in agents else w
            for a, w in policy_input.agents.items()
        },
    )


def budget_stages(state: PolicyState) -> frozenset[tuple[str, str, bool]]:
    """Which budget stages are pending or firing, per agent ('' for the policy scope)."""
    out = {("", name, rs.firing) for name, rs in state.budget.items() if rs.pending_since}
    for agent, agent_state in state.agents.items():
        for name, rs in agent_state.rules.items():
            if name.startswith("budget") and rs.pending_since is not None:
                out.add((str(agent), name, rs.firing))
    return frozenset(out)


# ---------------------------------------------------------------------- act


async def act(
    dispatcher: Dispatcher, evaluated: Sequence[Evaluated]
) -> dict[tuple[str, str], list[RecentAction]]:
    """One workload change per agent per cycle, across every policy that selects it; what
    each policy's decisions came to, for its status."""
    winners = {
        id(d) for d in strongest_per_agent(d for e in evaluated for d in e.outcome.decisions)
    }
    orders = [
        Order(
            e.entry, e.gathered.input.spec, d, e.gathered.agents, d.applies and id(d) not in winners
        )
        for e in evaluated
        for d in e.outcome.decisions
    ]
    results = await dispatcher.run(orders)
    recent: dict[tuple[str, str], list[RecentAction]] = {e.entry.key: [] for e in evaluated}
    for order, result in zip(orders, results, strict=True):
        recent[order.entry.key].append(result)
    for e in evaluated:
        if e.outcome.probation:
            recent[e.entry.key] += await dispatcher.verdicts(e.entry, e.outcome.probation)
    return recent
