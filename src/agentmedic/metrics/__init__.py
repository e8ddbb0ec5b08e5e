"""The metrics layer: agents' health and spend from a Prometheus-compatible backend.

- :mod:`~agentmedic.metrics.backend`: the :class:`MetricsBackend` protocol and its results
  (and :class:`AgentQueryBackend`, the by-agent fast path).
- :mod:`~agentmedic.metrics.prometheus`: :class:`PrometheusBackend` over httpx;
  :mod:`~agentmedic.metrics.config` its :class:`BackendConfig`,
  :mod:`~agentmedic.metrics.answers` the decoding of answers,
  :mod:`~agentmedic.metrics.failures` what a failed attempt means.
- :mod:`~agentmedic.metrics.catalog`: built-in metric names → PromQL templates.
- :mod:`~agentmedic.metrics.promql`: escaping and matchers, so names never become syntax.
- :mod:`~agentmedic.metrics.batch`: one query per series per cycle, joined per agent.
- :mod:`~agentmedic.metrics.errors`: ``MetricsError`` and its two kinds.
"""

from agentmedic.metrics.backend import (
    AgentQueryBackend,
    AgentSamples,
    MetricsBackend,
    QueryResult,
    RangeResult,
    RangeSeries,
    Sample,
    Timing,
)
from agentmedic.metrics.batch import (
    FetchStats,
    RangeTable,
    SampleTable,
    build_query,
    fetch_range,
    fetch_samples,
    merge_needs,
)
from agentmedic.metrics.catalog import (
    DEFAULT_CATALOG,
    EXECUTIONS,
    SERIES,
    Catalog,
    executions_key,
    load_catalog,
)
from agentmedic.metrics.errors import (
    MetricsError,
    MetricsUnavailable,
    QueryError,
    UnavailableReason,
)
from agentmedic.metrics.prometheus import (
    BackendConfig,
    PrometheusBackend,
    backend_config_from_files,
)

__all__ = [
    "DEFAULT_CATALOG",
    "EXECUTIONS",
    "SERIES",
    "AgentQueryBackend",
    "AgentSamples",
    "BackendConfig",
    "Catalog",
    "FetchStats",
    "MetricsBackend",
    "MetricsError",
    "MetricsUnavailable",
    "PrometheusBackend",
    "QueryError",
    "QueryResult",
    "RangeResult",
    "RangeSeries",
    "RangeTable",
    "Sample",
    "SampleTable",
    "Timing",
    "UnavailableReason",
    "backend_config_from_files",
    "build_query",
    "executions_key",
    "fetch_range",
    "fetch_samples",
    "load_catalog",
    "merge_needs",
]
