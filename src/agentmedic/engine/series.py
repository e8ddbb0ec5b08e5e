"""The vocabulary shared by the engine and the metrics layer: which series, for which agent.

The engine says what it needs (:class:`SeriesKey` values, from
:func:`agentmedic.engine.requirements`); the metrics layer fetches each key once per
cycle for all agents and hands back :data:`Samples`. Neither knows how the other works.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import NamedTuple

from agentmedic.api.durations import format_duration

__all__ = ["AgentId", "Samples", "SeriesKey"]


class AgentId(NamedTuple):
    """An agent: the namespace of its workload and its name in the metrics' agent label.

    A named tuple, like :class:`SeriesKey`, so that it hashes in C: agent ids key every
    per-agent dict of every cycle.
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class SeriesKey(NamedTuple):
    """One value per agent: a built-in metric or a raw PromQL query, over a window.

    Exactly one of ``metric`` and ``query`` is set. ``agent_label`` is the metrics label
    that carries the agent name (``spec.agentLabel``).

    A named tuple rather than a dataclass: series keys are hashed millions of times in a
    backtest (every samples dict is keyed by them), and a tuple hashes in C where a
    dataclass calls a Python ``__hash__``.
    """

    metric: str | None
    query: str | None
    window: timedelta
    agent_label: str = "agent"

    def __str__(self) -> str:
        what = self.metric if self.metric is not None else f"query({self.query})"
        return f"{what}[{format_duration(self.window)}]"


Samples = Mapping[AgentId, Mapping[SeriesKey, float | None]]
"""Per agent, the value of each series; ``None`` (or a missing key) means no data, which is
never the same as 0."""
