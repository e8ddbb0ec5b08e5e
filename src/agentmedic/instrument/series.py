"""The Prometheus series the SDK exports: names, labels, buckets.

The agent-level names are the contract with :mod:`agentmedic.metrics.catalog` (a
contract test proves the two agree). The ``gen_ai_*`` histograms are the OpenTelemetry
GenAI client metrics (semantic conventions, development status) in their Prometheus
form: dots become underscores, the ``{token}`` unit adds no suffix, seconds add
``_seconds``, and attribute names become label names (``gen_ai.request.model`` →
``gen_ai_request_model``).

=========================================  =========  ==============================================
series                                     type       labels
=========================================  =========  ==============================================
agent_executions_total                     counter    agent, model, status (success | error)
agent_execution_duration_seconds           histogram  agent, model
agent_tokens_total                         counter    agent, model, type (input | output)
agent_cost_usd_total                       counter    agent, model
agent_tool_calls_total                     counter    agent, tool, status (success | error)
agent_tool_duration_seconds                histogram  agent, tool
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
them. The Kubernetes ``namespace`` label is added by the scrape configuration, not here.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "AGENT_INFO",
    "COST_USD_TOTAL",
    "EXECUTIONS_TOTAL",
    "EXECUTION_DURATION_BUCKETS",
    "EXECUTION_DURATION_SECONDS",
    "GEN_AI_OPERATION_DURATION",
    "GEN_AI_OPERATION_DURATION_BUCKETS",
    "GEN_AI_TOKEN_USAGE",
    "GEN_AI_TOKEN_USAGE_BUCKETS",
    "TOKENS_TOTAL",
    "TOOL_CALLS_TOTAL",
    "TOOL_DURATION_BUCKETS",
    "TOOL_DURATION_SECONDS",
    "SeriesFamilies",
    "families_for",
]

EXECUTIONS_TOTAL = "agent_executions_total"
EXECUTION_DURATION_SECONDS = "agent_execution_duration_seconds"
TOKENS_TOTAL = "agent_tokens_total"
COST_USD_TOTAL = "agent_cost_usd_total"
TOOL_CALLS_TOTAL = "agent_tool_calls_total"
TOOL_DURATION_SECONDS = "agent_tool_duration_seconds"
AGENT_INFO = "agent_info"
GEN_AI_TOKEN_USAGE = "gen_ai_client_token_usage"
GEN_AI_OPERATION_DURATION = "gen_ai_client_operation_duration_seconds"

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


@dataclass(frozen=True, slots=True)
class SeriesFamilies:
    """The metric families registered in one registry, shared by all monitors using it."""

    executions: Counter
    execution_duration: Histogram
    tokens: Counter
    cost: Counter
    tool_calls: Counter
    tool_duration: Histogram
    info: Gauge
    gen_ai_token_usage: Histogram
    gen_ai_operation_duration: Histogram


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, SeriesFamilies] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def families_for(registry: CollectorRegistry | None = None) -> SeriesFamilies:
    """The SDK's metric families in ``registry`` (the default registry when ``None``),
    registered on first use. Several agents in one process share one set of families,
    because a registry refuses the same name twice."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        families = _by_registry.get(registry)
        if families is None:
            families = _register(registry)
            _by_registry[registry] = families
        return families


def _register(registry: CollectorRegistry) -> SeriesFamilies:
    return SeriesFamilies(
        executions=Counter(
            EXECUTIONS_TOTAL,
            "Agent executions by outcome.",
            ["agent", "model", "status"],
            registry=registry,
        ),
        execution_duration=Histogram(
            EXECUTION_DURATION_SECONDS,
            "Wall-clock duration of agent executions.",
            ["agent", "model"],
            buckets=EXECUTION_DURATION_BUCKETS,
            registry=registry,
        ),
        tokens=Counter(
            TOKENS_TOTAL,
            "LLM tokens used by agent executions (input includes cached input).",
            ["agent", "model", "type"],
            registry=registry,
        ),
        cost=Counter(
            COST_USD_TOTAL,
            "Spend in USD of agent executions, from the SDK's price table; "
            "calls to models without a price are not counted.",
            ["agent", "model"],
            registry=registry,
        ),
        tool_calls=Counter(
            TOOL_CALLS_TOTAL,
            "Tool calls made by agents, by outcome.",
            ["agent", "tool", "status"],
            registry=registry,
        ),
        tool_duration=Histogram(
            TOOL_DURATION_SECONDS,
            "Duration of tool calls.",
            ["agent", "tool"],
            buckets=TOOL_DURATION_BUCKETS,
            registry=registry,
        ),
        info=Gauge(
            AGENT_INFO,
            "1 for the model the agent currently runs with.",
            ["agent", "model"],
            registry=registry,
        ),
        gen_ai_token_usage=Histogram(
            GEN_AI_TOKEN_USAGE,
            "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage).",
            [*_GEN_AI_COMMON, "gen_ai_token_type"],
            buckets=GEN_AI_TOKEN_USAGE_BUCKETS,
            registry=registry,
        ),
        gen_ai_operation_duration=Histogram(
            GEN_AI_OPERATION_DURATION,
            "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration).",
            [*_GEN_AI_COMMON, "error_type"],
            buckets=GEN_AI_OPERATION_DURATION_BUCKETS,
            registry=registry,
        ),
    )
