"""The vocabulary shared by the engine and the metrics layer: which series, for which agent.

The engine says what it needs (:class:`SeriesKey` values, from
:func:`agentmedic.engine.requirements`); the metrics layer fetches each key once per
cycle for all agents and hands back :data:`Samples`. Neither knows how the other works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["AgentId", "Samples", "SeriesKey"]


@dataclass(frozen=True, order=True)
class AgentId:
    """An agent: the namespace of its workload and its name in the metrics' agent label."""

    namespace: str
    name: str

    # Agent ids and series keys are hashed hundreds of thousands of times per cycle (every
    # samples lookup); the generated dataclass hash rebuilds a tuple each time, so compute
    # it once. Pickling rebuilds the object, so a hash never crosses processes.
    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:
        h: int = self.__dict__["_hash"]
        return h

    def __reduce__(self) -> tuple[type[AgentId], tuple[str, str]]:
        return (AgentId, (self.namespace, self.name))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One value per agent: a built-in metric or a raw PromQL query, over a window.

    Exactly one of ``metric`` and ``query`` is set. ``agent_label`` is the metrics label
    that carries the agent name (``spec.agentLabel``).
    """

    metric: str | None
    query: str | None
    window: timedelta
    agent_label: str = "agent"

    def __post_init__(self) -> None:
        key = (self.metric, self.query, self.window, self.agent_label)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        h: int = self.__dict__["_hash"]
        return h

    def __reduce__(self) -> tuple[type[SeriesKey], tuple[str | None, str | None, timedelta, str]]:
        return (SeriesKey, (self.metric, self.query, self.window, self.agent_label))

    def __str__(self) -> str:
        what = self.metric if self.metric is not None else f"query({self.query})"
        return f"{what}[{int(self.window.total_seconds())}s]"


Samples = Mapping[AgentId, Mapping[SeriesKey, float | None]]
"""Per agent, the value of each series; ``None`` (or a missing key) means no data, which is
never the same as 0."""
