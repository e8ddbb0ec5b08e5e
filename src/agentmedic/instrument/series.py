"""The Prometheus series the SDK exports: names, labels, buckets.

The names are defined once in :mod:`agentmedic.api.metric_names` (standard library
only), where :mod:`agentmedic.metrics.catalog` reads them too (a contract test proves the
two agree). The ``gen_ai_*`` histograms are the OpenTelemetry GenAI client metrics
(semantic conventions, development status) in their Prometheus form: dots become
underscores, the ``{token}`` unit adds no suffix, seconds add ``_seconds``, and attribute
names become label names (``gen_ai.request.model`` → ``gen_ai_request_model``).

=========================================  =========  ==============================================
series                                     type       labels
=========================================  =========  ==============================================
agent_executions_total                     counter    agent, model, status (success | error)
agent_execution_duration_seconds           histogram  agent, model
agent_tokens_total                         counter    agent, model, type (input | output |
                                                      cached_input)
agent_cost_usd_total                       counter    agent, model
agent_tool_calls_total                     counter    agent, tool, status (success | error)
agent_tool_duration_seconds                histogram  agent, tool
agent_quality_score                        summary    agent, model, name (``_sum`` and ``_count``
                                                      of the scores in [0, 1] given with
                                                      ``ex.score``)
agent_info                                 gauge (1)  agent, model
gen_ai_client_token_usage                  histogram  agent, gen_ai_operation_name,
                                                      gen_ai_provider_name, gen_ai_request_model,
                                                      gen_ai_response_model, gen_ai_token_type
gen_ai_client_operation_duration_seconds   histogram  agent, gen_ai_operation_name,
                                                      gen_ai_provider_name, gen_ai_request_model,
                                                      gen_ai_response_model, error_type
=========================================  =========  ==============================================

``model`` on the agent-level series is the execution's model (the one the operator
switches); the models of individual LLM calls are on the ``gen_ai_*`` series.
``agent_tokens_total`` counts input tokens including cached ones, as the provider reports
them; ``type="cached_input"`` counts the cached ones again (a subset of ``input``, so that
a price list can price them at the cache discount; sum only input and output for the
tokens used). The cached_input series appears with an agent's first cached token. The
Kubernetes ``namespace`` label is added by the scrape configuration, not here.

How values are kept: an agent updates a dozen series per execution, and prometheus_client's
metric objects take a lock and validate for every single increment (about 20 µs per
execution in all on a slow machine). The SDK therefore keeps its values in plain cells
behind one lock per registry, taken once per execution, and exposes them through a custom
collector registered in the registry (the documented prometheus_client extension point):
same names, labels and exposition. In prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set, e.g. gunicorn workers) values must live in the shared
files, so the SDK uses prometheus_client's own Counter/Histogram/Gauge objects instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

from agentmedic.api.metric_names import (
    AGENT_INFO,
    COST_USD_TOTAL,
    EXECUTION_DURATION_SECONDS,
    EXECUTIONS_TOTAL,
    GEN_AI_OPERATION_DURATION,
    GEN_AI_TOKEN_USAGE,
    QUALITY_SCORE,
    TOKENS_TOTAL,
    TOOL_CALLS_TOTAL,
    TOOL_DURATION_SECONDS,
)

# prometheus_client's own formatting of bucket bounds, so `le` reads the same as its
# Histogram's ("120.0", "+Inf").
_format_le = cast(Callable[[float], str], floatToGoString)

__all__ = [
    "AGENT_INFO",
    "COST_USD_TOTAL",
    "EXECUTIONS_TOTAL",
    "EXECUTION_DURATION_BUCKETS",
    "EXECUTION_DURATION_SECONDS",
    "FAMILIES",
    "GEN_AI_OPERATION_DURATION",
    "GEN_AI_OPERATION_DURATION_BUCKETS",
    "GEN_AI_TOKEN_USAGE",
    "GEN_AI_TOKEN_USAGE_BUCKETS",
    "QUALITY_SCORE",
    "TOKENS_TOTAL",
    "TOOL_CALLS_TOTAL",
    "TOOL_DURATION_BUCKETS",
    "TOOL_DURATION_SECONDS",
    "Family",
    "SeriesStore",
    "store_for",
]

EXECUTION_DURATION_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 45, 60, 90, 120, 180,
)  # fmt: skip
"""Seconds. Agent executions take from a fraction of a second to a couple of minutes; the
buckets are densest between 2 s and 15 s, where latency rules usually draw their lines
(a p95 above 8 s or 10 s), so ``histogram_quantile`` interpolates over narrow ranges."""

TOOL_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120,
)  # fmt: skip
"""Seconds. Tools range from in-process lookups to slow external APIs."""

GEN_AI_TOKEN_USAGE_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
"""The explicit bucket boundaries the GenAI semantic conventions recommend."""

GEN_AI_OPERATION_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""The explicit bucket boundaries the GenAI semantic conventions recommend."""

_GEN_AI_COMMON = (
    "agent",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)


@dataclass(frozen=True)
class Family:
    """One exported metric family."""

    name: str
    """As queried: counters end in ``_total``, histograms are named by their base."""
    kind: Literal["counter", "histogram", "gauge", "summary"]
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family(
        EXECUTIONS_TOTAL, "counter", "Agent executions by outcome.", ("agent", "model", "status")
    ),
    Family(
        EXECUTION_DURATION_SECONDS,
        "histogram",
        "Wall-clock duration of agent executions.",
        ("agent", "model"),
        EXECUTION_DURATION_BUCKETS,
    ),
    Family(
        TOKENS_TOTAL,
        "counter",
        "LLM tokens used by agent executions (input includes cached input; cached_input is "
        "the cached part of input).",
        ("agent", "model", "type"),
    ),
    Family(
        COST_USD_TOTAL,
        "counter",
        "Spend in USD of agent executions, from the SDK's price table; "
        "calls to models without a price are not counted.",
        ("agent", "model"),
    ),
    Family(
        TOOL_CALLS_TOTAL,
        "counter",
        "Tool calls made by agents, by outcome.",
        ("agent", "tool", "status"),
    ),
    Family(
        TOOL_DURATION_SECONDS,
        "histogram",
        "Duration of tool calls.",
        ("agent", "tool"),
        TOOL_DURATION_BUCKETS,
    ),
    Family(
        QUALITY_SCORE,
        "summary",
        "Quality scores in [0, 1] agents gave their executions (an eval, a user rating).",
        ("agent", "model", "name"),
    ),
    Family(
        AGENT_INFO, "gauge", "1 for the model the agent currently runs with.", ("agent", "model")
    ),
    Family(
        GEN_AI_TOKEN_USAGE,
        "histogram",
        "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage).",
        (*_GEN_AI_COMMON, "gen_ai_token_type"),
        GEN_AI_TOKEN_USAGE_BUCKETS,
    ),
    Family(
        GEN_AI_OPERATION_DURATION,
        "histogram",
        "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration).",
        (*_GEN_AI_COMMON, "error_type"),
        GEN_AI_OPERATION_DURATION_BUCKETS,
    ),
)
"""Everything the SDK exports (see the table in the module docstring)."""


# -- cells: what the monitor updates -----------------------------------------------------------


class CounterCell:
    """A counter's value. Update only while holding the store's lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def add(self, amount: float) -> None:
        self.value += amount


class HistogramCell:
    """A histogram's non-cumulative bucket counts (the last is ``+Inf``) and sum. Update
    only while holding the store's lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # le is inclusive: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class SummaryCell:
    """A summary's count and sum (no quantiles). Update only while holding the store's lock."""

    __slots__ = ("count", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value


class _ClientCell:
    """A prometheus_client child metric behind the SDK's cell interface."""

    __slots__ = ("_child",)

    def __init__(self, child: Any) -> None:
        self._child = child


class _ClientCounter(_ClientCell):
    __slots__ = ()

    def add(self, amount: float) -> None:
        self._child.inc(amount)


class _ClientHistogram(_ClientCell):
    __slots__ = ()

    def observe(self, value: float) -> None:
        self._child.observe(value)


# -- stores -------------------------------------------------------------------------------------


class SeriesStore:
    """The SDK's series in one registry, shared by every monitor using that registry.

    Monitors take :attr:`lock` once around a batch of updates to cells obtained from
    :meth:`counter` and :meth:`histogram`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._counters: dict[str, dict[tuple[str, ...], CounterCell]] = {}
        self._histograms: dict[str, dict[tuple[str, ...], HistogramCell]] = {}
        self._gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self._summaries: dict[str, dict[tuple[str, ...], SummaryCell]] = {}
        self._families = {f.name: f for f in FAMILIES}

    def counter(self, family: str, labels: tuple[str, ...]) -> Any:
        """The counter cell for these label values (created at 0)."""
        with self.lock:
            cells = self._counters.setdefault(family, {})
            cell = cells.get(labels)
            if cell is None:
                cell = cells[labels] = CounterCell()
            return cell

    def histogram(self, family: str, labels: tuple[str, ...]) -> Any:
        """The histogram cell for these label values (created empty)."""
        with self.lock:
            cells = self._histograms.setdefault(family, {})
            cell = cells.get(labels)
            if cell is None:
                cell = cells[labels] = HistogramCell(self._families[family].buckets)
            return cell

    def summary(self, family: str, labels: tuple[str, ...]) -> Any:
        """The summary cell for these label values (created empty)."""
        with self.lock:
            cells = self._summaries.setdefault(family, {})
            cell = cells.get(labels)
            if cell is None:
                cell = cells[labels] = SummaryCell()
            return cell

    def set_gauge(self, family: str, labels: tuple[str, ...], value: float | None) -> None:
        """Set a gauge, or remove the series when ``value`` is ``None``."""
        with self.lock:
            series = self._gauges.setdefault(family, {})
            if value is None:
                series.pop(labels, None)
            else:
                series[labels] = value

    # prometheus_client's Collector protocol

    def describe(self) -> list[Metric]:
        return [self._empty(f) for f in FAMILIES]

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counters = {n: [(k, c.value) for k, c in s.items()] for n, s in self._counters.items()}
            histograms = {
                n: [(k, list(c.counts), c.sum) for k, c in s.items()]
                for n, s in self._histograms.items()
            }
            gauges = {n: list(s.items()) for n, s in self._gauges.items()}
            summaries = {
                n: [(k, c.count, c.sum) for k, c in s.items()] for n, s in self._summaries.items()
            }
        for family in FAMILIES:
            metric = self._empty(family)
            if family.kind == "counter":
                for labels, value in counters.get(family.name, ()):
                    metric.add_metric(labels, value)
            elif family.kind == "gauge":
                for labels, value in gauges.get(family.name, ()):
                    metric.add_metric(labels, value)
            elif family.kind == "summary":
                for labels, count, total in summaries.get(family.name, ()):
                    metric.add_metric(labels, count_value=count, sum_value=total)
            else:
                les = [_format_le(b) for b in family.buckets] + ["+Inf"]
                for labels, counts, total in histograms.get(family.name, ()):
                    cumulative, running = [], 0
                    for le, count in zip(les, counts, strict=True):
                        running += count
                        cumulative.append((le, float(running)))
                    metric.add_metric(labels, cumulative, total)
            yield metric

    @staticmethod
    def _empty(family: Family) -> Any:
        labels = list(family.labels)
        if family.kind == "counter":
            return CounterMetricFamily(family.name, family.documentation, labels=labels)
        if family.kind == "gauge":
            return GaugeMetricFamily(family.name, family.documentation, labels=labels)
        if family.kind == "summary":
            return SummaryMetricFamily(family.name, family.documentation, labels=labels)
        return HistogramMetricFamily(family.name, family.documentation, labels=labels)


class _ClientStore(SeriesStore):
    """The same interface over prometheus_client's metric objects, for its multiprocess
    mode, where values must live in the files the workers share."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._metrics: dict[str, Any] = {}
        for f in FAMILIES:
            if f.kind == "counter":
                metric: Any = Counter(f.name, f.documentation, f.labels, registry=registry)
            elif f.kind == "gauge":
                metric = Gauge(
                    f.name, f.documentation, f.labels, registry=registry, multiprocess_mode="max"
                )
            elif f.kind == "summary":
                metric = Summary(f.name, f.documentation, f.labels, registry=registry)
            else:
                metric = Histogram(
                    f.name, f.documentation, f.labels, buckets=f.buckets, registry=registry
                )
            self._metrics[f.name] = metric

    def counter(self, family: str, labels: tuple[str, ...]) -> Any:
        return _ClientCounter(self._metrics[family].labels(*labels))

    def histogram(self, family: str, labels: tuple[str, ...]) -> Any:
        return _ClientHistogram(self._metrics[family].labels(*labels))

    def summary(self, family: str, labels: tuple[str, ...]) -> Any:
        return _ClientHistogram(self._metrics[family].labels(*labels))

    def set_gauge(self, family: str, labels: tuple[str, ...], value: float | None) -> None:
        metric = self._metrics[family]
        if value is None:
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
        else:
            metric.labels(*labels).set(value)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return iter(())


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, SeriesStore] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def _multiprocess() -> bool:
    # prometheus_client's own test (values.get_value_class).
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def store_for(registry: CollectorRegistry | None = None) -> SeriesStore:
    """The SDK's series in ``registry`` (the default registry when ``None``), registered on
    first use. Several agents in one process share one store per registry, because a
    registry refuses the same name twice."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        store = _by_registry.get(registry)
        if store is None:
            if _multiprocess():
                store = _ClientStore(registry)
            else:
                store = SeriesStore()
                registry.register(store)
            _by_registry[registry] = store
        return store
