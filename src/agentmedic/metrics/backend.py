"""What the operator needs from a metrics backend, and the shape of its answers.

:class:`MetricsBackend` is the seam: :class:`~agentmedic.metrics.prometheus.PrometheusBackend`
implements it over the Prometheus HTTP API (Prometheus, Thanos, Mimir, Cortex,
VictoriaMetrics); tests of the batching logic may implement it in a few lines.

:class:`AgentQueryBackend` is the optional fast path the batch layer uses when a backend
offers it: an instant vector read straight into per-agent values (:class:`AgentSamples`),
with no per-sample objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

__all__ = [
    "AgentQueryBackend",
    "AgentSamples",
    "AgentValues",
    "MetricsBackend",
    "QueryResult",
    "RangeResult",
    "RangeSeries",
    "Sample",
    "Timing",
    "to_unix",
]


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector: its labels and value (NaN and ±Inf are kept)."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a matrix: its labels and ``(unix_seconds, value)`` points in time order."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Timing:
    """Where the time of one request went, in seconds."""

    request: float = 0.0
    """Client-side round trip of the HTTP request(s), retries and back-off included."""
    server: float | None = None
    """The backend's own evaluation time when it reports one (Prometheus ``stats=all``)."""
    parse: float = 0.0
    """Client-side time to decode the JSON and build the result."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to an instant query.

    ``samples`` holds a vector; ``series`` a matrix (an instant query of a range selector);
    ``scalar`` a scalar (or a string result parsed as a number when it is one).
    """

    result_type: Literal["vector", "matrix", "scalar", "string"]
    samples: tuple[Sample, ...] = ()
    series: tuple[RangeSeries, ...] = ()
    scalar: float | None = None
    warnings: tuple[str, ...] = ()
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class RangeResult:
    """The answer to a range query: a matrix."""

    series: tuple[RangeSeries, ...] = ()
    warnings: tuple[str, ...] = ()
    timing: Timing = field(default_factory=Timing)


AgentValues = dict[str | None, dict[str, float]]
"""Namespace (``None``: the sample carries no namespace label) → agent name → value."""


@dataclass(frozen=True, slots=True)
class AgentSamples:
    """An instant vector of at most one sample per agent, keyed by namespace and agent name.

    Values are finite or NaN (an infinity is never read into this form)."""

    values: AgentValues
    warnings: tuple[str, ...] = ()
    timing: Timing = field(default_factory=Timing)


class MetricsBackend(Protocol):
    """A Prometheus-compatible query API.

    Implementations raise :class:`~agentmedic.metrics.errors.MetricsUnavailable` when the
    backend cannot answer and :class:`~agentmedic.metrics.errors.QueryError` when it rejects
    the query; never anything else for a failed request.
    """

    async def query(self, promql: str, at: datetime) -> QueryResult:
        """Evaluate ``promql`` at the instant ``at`` (timezone-aware)."""
        ...

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        """Evaluate ``promql`` at every ``step`` from ``start`` to ``end`` inclusive."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...


class AgentQueryBackend(MetricsBackend, Protocol):
    """A backend that can also read an instant vector straight into per-agent values."""

    async def query_agents(
        self, promql: str, at: datetime, agent_label: str, namespace_label: str | None
    ) -> AgentSamples | QueryResult:
        """Like :meth:`MetricsBackend.query`, as :class:`AgentSamples` when the answer is a
        vector whose every sample carries ``agent_label`` (and at most ``namespace_label``
        besides), one per agent, no infinity; otherwise the general :class:`QueryResult`."""
        ...


def to_unix(at: datetime) -> float:
    """Seconds since the epoch of a timezone-aware datetime; naive ones are refused."""
    if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
        raise ValueError(
            f"{at.isoformat()} has no time zone; pass an aware datetime such as datetime.now(UTC)"
        )
    return at.timestamp()


def from_unix(seconds: float) -> datetime:
    """The UTC datetime of a Unix timestamp."""
    return datetime.fromtimestamp(seconds, UTC)
