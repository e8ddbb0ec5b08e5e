"""Spend for finance's budgets: agent-reported cost, or tokens by model and type.

``costSource: reported`` reads ``agent_cost_usd_total`` through the batch layer like a
policy's budget (:func:`~agentmedic.metrics.batch.fetch_samples`, one query per window).
``costSource: priceList`` needs the token counters split by model and token type, which
the batch layer's ``by (agent, namespace)`` answers cannot give: :func:`fetch_tokens` sends
one query per window for all the agents that need it::

    sum by (agent, namespace, model, type) (increase(agent_tokens_total{agent=~"a|b"}[w]))

``increase`` handles counter resets. An agent with no token series in the answer has no
data (not zero spend); a non-finite value is not evidence either: the agent has no data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from agentmedic.api.metric_names import TOKENS_TOTAL
from agentmedic.engine.series import AgentId
from agentmedic.metrics import promql
from agentmedic.metrics.backend import MetricsBackend
from agentmedic.metrics.errors import QueryError

__all__ = ["TokenCounts", "fetch_tokens", "tokens_query"]

TokenCounts = dict[AgentId, dict[tuple[str, str], float]]
"""Per agent, tokens by (model, type) over the window."""


def tokens_query(
    window: timedelta, names: Iterable[str], agent_label: str, namespace_label: str | None
) -> str:
    """The PromQL of :func:`fetch_tokens`."""
    matcher = promql.agent_matcher(agent_label, names)
    by = ", ".join(x for x in (agent_label, namespace_label, "model", "type") if x)
    span = promql.duration(window)
    return f"sum by ({by}) (increase({TOKENS_TOTAL}{{{matcher}}}[{span}]))"


async def fetch_tokens(
    backend: MetricsBackend,
    window: timedelta,
    agents: Iterable[AgentId],
    at: datetime,
    *,
    agent_label: str = "agent",
    namespace_label: str | None = "namespace",
) -> TokenCounts:
    """Each agent's tokens by (model, type) over ``window`` ending ``at``; raises the metrics
    layer's errors when the backend cannot answer or the answer is not a vector."""
    wanted = set(agents)
    if not wanted:
        return {}
    query = tokens_query(window, (a.name for a in wanted), agent_label, namespace_label)
    result = await backend.query(query, at)
    if result.result_type != "vector":
        raise QueryError(f"expected a vector, got a {result.result_type}", query=query)
    by_name: dict[str, list[AgentId]] = {}
    for a in wanted:
        by_name.setdefault(a.name, []).append(a)
    out: TokenCounts = {}
    broken: set[AgentId] = set()
    for sample in result.samples:
        labels = sample.labels
        name = labels.get(agent_label)
        if name is None:
            continue
        ns = labels.get(namespace_label) if namespace_label else None
        candidates = by_name.get(name, [])
        if ns is not None:
            candidates = [a for a in candidates if a.namespace == ns]
        if len(candidates) != 1:
            continue  # not one of ours, or ambiguous without a namespace label
        agent = candidates[0]
        if not math.isfinite(sample.value):
            broken.add(agent)
            continue
        slot = (labels.get("model", ""), labels.get("type", ""))
        counts = out.setdefault(agent, {})
        counts[slot] = counts.get(slot, 0.0) + sample.value
    for agent in broken:
        out.pop(agent, None)
    return out
