"""The built-in metric names a policy condition may use, and the series they are read from.

The names and their meaning are part of the API; how each is computed (the PromQL
template) lives in :mod:`agentmedic.metrics.catalog`, which must cover exactly
these names (a test proves it) and may be overridden by operator settings.

The Prometheus series names below are the contract between the agent-side SDK
(:mod:`agentmedic.instrument.series` exports them), the metric catalog (its templates
read them) and the fleet and cost reports. They are defined here once. This module
imports only the standard library, so the SDK can import it without the operator's
dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGENT_INFO",
    "BUILTIN_METRICS",
    "COST_USD_TOTAL",
    "EXECUTIONS_TOTAL",
    "EXECUTION_DURATION_SECONDS",
    "GEN_AI_OPERATION_DURATION",
    "GEN_AI_TOKEN_USAGE",
    "QUALITY_SCORE",
    "TOKENS_TOTAL",
    "TOOL_CALLS_TOTAL",
    "TOOL_DURATION_SECONDS",
    "BuiltinMetric",
]

# The series the SDK exports (DESIGN.md §4). Counters are named as queried (with
# ``_total``), histograms by their base name.
EXECUTIONS_TOTAL = "agent_executions_total"
"""Counter: agent executions, labels agent, model, status (success | error)."""
EXECUTION_DURATION_SECONDS = "agent_execution_duration_seconds"
"""Histogram: wall-clock duration of executions, labels agent, model."""
TOKENS_TOTAL = "agent_tokens_total"
"""Counter: LLM tokens, labels agent, model, type (input | output)."""
COST_USD_TOTAL = "agent_cost_usd_total"
"""Counter: spend in USD from the SDK's price table, labels agent, model."""
TOOL_CALLS_TOTAL = "agent_tool_calls_total"
"""Counter: tool calls, labels agent, tool, status (success | error)."""
TOOL_DURATION_SECONDS = "agent_tool_duration_seconds"
"""Histogram: duration of tool calls, labels agent, tool."""
QUALITY_SCORE = "agent_quality_score"
"""Summary (``_sum`` and ``_count``): quality scores in [0, 1] an agent gave its own
executions (an eval, a user rating), labels agent, model, name. Their mean over a window is
the built-in metric ``quality_score``."""
AGENT_INFO = "agent_info"
"""Gauge (1): the model an agent runs, labels agent, model."""
GEN_AI_TOKEN_USAGE = "gen_ai_client_token_usage"
"""Histogram: OpenTelemetry GenAI ``gen_ai.client.token.usage`` in its Prometheus form."""
GEN_AI_OPERATION_DURATION = "gen_ai_client_operation_duration_seconds"
"""Histogram: OpenTelemetry GenAI ``gen_ai.client.operation.duration``."""


@dataclass(frozen=True)
class BuiltinMetric:
    name: str
    unit: str
    description: str
    per_execution: bool
    """True when the value is a ratio or quantile over executions, so ``minSamples`` applies."""


BUILTIN_METRICS: dict[str, BuiltinMetric] = {
    m.name: m
    for m in (
        BuiltinMetric("executions", "executions", "Executions in the window.", False),
        BuiltinMetric("success_rate", "ratio 0..1", "Share of executions that succeeded.", True),
        BuiltinMetric("error_rate", "ratio 0..1", "Share of executions that failed.", True),
        BuiltinMetric("latency_p50_ms", "ms", "Median execution latency.", True),
        BuiltinMetric("latency_p95_ms", "ms", "95th percentile execution latency.", True),
        BuiltinMetric("latency_p99_ms", "ms", "99th percentile execution latency.", True),
        BuiltinMetric("tokens", "tokens", "Tokens (input + output) in the window.", False),
        BuiltinMetric(
            "tokens_per_execution", "tokens", "Mean tokens (input + output) per execution.", True
        ),
        BuiltinMetric("cost_usd", "USD", "Spend in the window.", False),
        BuiltinMetric("cost_per_execution", "USD", "Mean spend per execution.", True),
        BuiltinMetric("tool_error_rate", "ratio 0..1", "Share of tool calls that failed.", True),
        BuiltinMetric("tool_latency_p95_ms", "ms", "95th percentile tool-call latency.", True),
        BuiltinMetric(
            "quality_score",
            "ratio 0..1",
            "Mean quality score (ex.score, every name) of the executions that gave one.",
            True,
        ),
    )
}
