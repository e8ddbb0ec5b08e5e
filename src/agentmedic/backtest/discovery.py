"""Which agents a backtest replays: those the history shows, and the model each started on.

Every ``(agent, namespace)`` with ``agent_info`` or ``agent_executions_total`` samples in
the range, from one coarse range query each, which also gives each agent's model at its
first appearance: the workload's model the engine starts from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from agentmedic.api.metric_names import AGENT_INFO
from agentmedic.backtest.columns import BacktestDataError, Grid
from agentmedic.engine.series import AgentId
from agentmedic.metrics import SERIES, MetricsBackend, MetricsError, promql

__all__ = ["MODEL_LABEL", "discover_agents"]

MODEL_LABEL = "model"
"""The SDK's label for the model an agent runs (``agent_info``, ``agent_executions_total``)."""


def _selector(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={promql.quote_string(v)}" for k, v in sorted(labels.items()))


async def discover_agents(
    backend: MetricsBackend,
    grid: Grid,
    *,
    agent_label: str,
    namespace: str,
    namespace_label: str | None,
    names: Sequence[str] | None = None,
    on_query: Callable[[str], None] | None = None,
) -> tuple[list[AgentId], dict[AgentId, str | None], int]:
    """The agents with ``agent_info`` or ``agent_executions_total`` samples in the range,
    and the model each ran at its first appearance; returns ``(agents, models, queries)``.

    With ``names``, only those agents are looked up (and returned even without data).
    """
    promql.check_label_name(agent_label, "agent label")
    if namespace_label is not None:
        promql.check_label_name(namespace_label, "namespace label")
    matchers = {namespace_label: namespace} if namespace_label else {}
    sel = _selector(matchers)
    if names:
        sel = ", ".join(s for s in (sel, promql.agent_matcher(agent_label, names)) if s)
    by = ", ".join(x for x in (agent_label, namespace_label, MODEL_LABEL) if x)
    # One point per 1/240 of the range (at least one per step): cheap, and an agent seen in
    # any window shows up because each point looks back over its whole stride.
    stride = max(
        grid.step, timedelta(seconds=math.ceil((grid.end - grid.start).total_seconds() / 240))
    )
    window = promql.duration(stride)
    first_seen: dict[AgentId, tuple[float, int, str | None]] = {}
    queries = 0
    for rank, series in enumerate((AGENT_INFO, SERIES["executions"])):
        query = f"group by ({by}) (last_over_time({series}{{{sel}}}[{window}]))"
        try:
            result = await backend.query_range(query, grid.start, grid.end, stride)
        except MetricsError as exc:
            raise BacktestDataError(f"discovering agents failed: {exc}") from exc
        queries += 1
        if on_query is not None:
            on_query(f"agents from {series}")
        for s in result.series:
            name = s.labels.get(agent_label)
            if not name or not s.points:
                continue
            ns = s.labels.get(namespace_label, namespace) if namespace_label else namespace
            if ns != namespace:
                continue
            agent = AgentId(ns, name)
            seen = (s.points[0][0], rank, s.labels.get(MODEL_LABEL))
            if agent not in first_seen or seen < first_seen[agent]:
                first_seen[agent] = seen
    models = {a: v[2] for a, v in first_seen.items()}
    if names:
        agents = sorted(AgentId(namespace, n) for n in set(names))
        for a in agents:
            models.setdefault(a, None)
    else:
        agents = sorted(first_seen)
    return agents, models, queries
