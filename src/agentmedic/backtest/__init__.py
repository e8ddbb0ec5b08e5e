"""Backtest: a policy tried on history before it is trusted.

``agentmedic backtest POLICY.yaml --prometheus URL --from now-7d --to now`` replays a
policy over the agents' past metrics with the operator's own engine and reports every
decision it would have made, with totals, as a table, JSON or a picture::

    result = await run_backtest(policy, backend, BacktestOptions(start=..., end=...))
    print(json.dumps(to_json(result)))          # schema: json_schema(), schemaVersion 1
    write_plot(result, Path("backtest.png"))    # or .html

How it works, and what it does not claim
----------------------------------------
1. Agents: ``--agents`` or every ``(agent, namespace)`` with ``agent_info`` or
   ``agent_executions_total`` samples in the range, in the policy's namespace (no
   cluster needed); each starts on the model the history shows for it then.
2. History (:mod:`~agentmedic.backtest.history`): one ``query_range`` per distinct series
   the engine asks for, for all agents at once, in chunks of at most 11,000 points. A
   calendar budget's spend so far (a different window every step) is the exact live
   query at each period's first step plus the per-step ``increase`` after it; it is
   exact when samples fall on step boundaries and otherwise close (the difference from
   the exact query at each period's end is measured and reported, with a warning above
   2%). The step must be at least twice the scrape interval.
3. Replay (:mod:`~agentmedic.backtest.runner`): :func:`agentmedic.engine.replay` with
   ``apply=True``: the policy's earlier decisions count as carried out for its memory
   (cooldown, maxActionsPerHour, maxDisabledPercent, a disabled agent held, a downgraded
   agent's model). The history stays what it was: an agent the policy would have
   disabled kept running in reality. The backtest shows what the policy *would have
   decided* given the history, not how the fleet would have behaved under it. A policy
   in dryRun is replayed as if enabled unless ``respect_dry_run``.
4. Report (:mod:`~agentmedic.backtest.report`, :mod:`~agentmedic.backtest.table`,
   :mod:`~agentmedic.backtest.plot`): decisions with time, agent, rule, action, outcome
   (Applied, Suppressed by a guardrail) and evidence; notifications; totals (agents
   disabled, downgrades, jobs, restores, notifications and pages, suppressions per
   guardrail, systemic episodes and the per-agent pages they held back).

:mod:`~agentmedic.backtest.scenario` builds synthetic histories in the SDK's series for
tests, benchmarks and trying the command on a laptop.
"""

from agentmedic.backtest.history import BacktestDataError, Grid, History, NoHistoryError
from agentmedic.backtest.plot import PlotError, write_plot
from agentmedic.backtest.report import (
    SCHEMA_VERSION,
    BacktestResult,
    Totals,
    json_schema,
    to_json,
    totals,
)
from agentmedic.backtest.runner import BacktestOptions, replay_history, run_backtest
from agentmedic.backtest.timeparse import parse_time

__all__ = [
    "SCHEMA_VERSION",
    "BacktestDataError",
    "BacktestOptions",
    "BacktestResult",
    "Grid",
    "History",
    "NoHistoryError",
    "PlotError",
    "Totals",
    "json_schema",
    "parse_time",
    "replay_history",
    "run_backtest",
    "to_json",
    "totals",
    "write_plot",
]
