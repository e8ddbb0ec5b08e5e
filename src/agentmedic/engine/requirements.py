"""Which series a policy needs this cycle: what the metrics layer fetches before evaluate."""

from __future__ import annotations

from datetime import datetime

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine.conditions import executions_key
from agentmedic.engine.periods import spend_window
from agentmedic.engine.series import SeriesKey

__all__ = ["burn_key", "requirements", "spend_key"]


def spend_key(spec: AgentPolicySpec, now: datetime) -> SeriesKey | None:
    """``cost_usd`` over the elapsed part of the budget period (None without a budget)."""
    if spec.budget is None:
        return None
    return SeriesKey("cost_usd", None, spend_window(spec.budget, now), spec.agent_label)


def burn_key(spec: AgentPolicySpec) -> SeriesKey | None:
    """``cost_usd`` over budget.forecastWindow: the recent burn rate (None without a budget)."""
    if spec.budget is None:
        return None
    return SeriesKey("cost_usd", None, spec.budget.forecast_window, spec.agent_label)


def requirements(spec: AgentPolicySpec, now: datetime) -> set[SeriesKey]:
    """Every series :func:`~agentmedic.engine.evaluate` will look up for this policy at ``now``.

    Each condition's (metric or query, window); ``executions`` over the window of each
    condition with minSamples; and with a budget, ``cost_usd`` over the elapsed period
    (which changes every cycle for calendar periods) and over forecastWindow.
    """
    keys: set[SeriesKey] = set()
    label = spec.agent_label
    for rule in spec.rules:
        for c in (*rule.all_of, *rule.any_of):
            keys.add(SeriesKey(c.metric, c.query, c.window, label))
            if c.min_samples:
                keys.add(executions_key(c.window, label))
    spent, burn = spend_key(spec, now), burn_key(spec)
    if spent is not None and burn is not None:
        keys.update((spent, burn))
    return keys
