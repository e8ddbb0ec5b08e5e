"""The built-in metric names a policy condition may use.

The names and their meaning are part of the API; how each is computed (the PromQL
template) lives in :mod:`agentmedic.metrics.catalog`, which must cover exactly
these names (a test proves it) and may be overridden by operator settings.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILTIN_METRICS", "BuiltinMetric"]


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
    )
}
