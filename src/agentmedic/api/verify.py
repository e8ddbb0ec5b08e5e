"""``spec.verify``: probation after a change meant to keep an agent serving.

When agentmedic moves an agent to a cheaper model (switchModel) or rolls out a new prompt,
it measures the agent over ``baselineWindow`` just before the change and stores that
baseline with its record on the workload. Once ``window`` has passed, it measures the same
signals over the window since the change and compares them with the tolerances below:

- ``Verified``: every signal within its tolerance (enough executions on both sides);
- ``Regressed``: some signal beyond its tolerance; ``onRegression`` says what follows;
- ``Inconclusive``: fewer than ``minExecutions`` before or after: too little traffic to
  judge. While the window after the change is what falls short, the change is watched for
  another window, up to ``maxWindows`` windows in all; then Inconclusive is final, said as
  such, and nothing is undone.

Data only, like :mod:`agentmedic.api.types` (which holds the field ``spec.verify``); built on
:mod:`agentmedic.api.base` like every kind, it imports nothing of that module.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from agentmedic.api.base import Model
from agentmedic.api.durations import Duration, duration_bounds

__all__ = ["SIGNALS", "OnRegression", "Verify", "VerifySignal"]

_WINDOW = Annotated[
    Duration, duration_bounds(timedelta(seconds=30), timedelta(days=30), compressible=True)
]
_HOLD = Annotated[Duration, duration_bounds(timedelta(0), timedelta(days=30))]


class OnRegression(StrEnum):
    REVERT = "revert"
    NOTIFY = "notify"
    SCALE_TO_ZERO = "scaleToZero"


class Verify(Model):
    window: _WINDOW = timedelta(minutes=15)
    """How long to watch the agent after the change before judging it; the signals are
    measured over this window, all of it after the change. From 30s to 30d. Defaults to
    15m."""
    baseline_window: _WINDOW = timedelta(hours=1)
    """The window just before the change whose signals are the baseline. From 30s to 30d.
    Defaults to 1h."""
    min_executions: int = Field(default=50, ge=1, le=1_000_000_000)
    """Executions needed in the baseline and in the window alike; with fewer on either side
    the verdict is Inconclusive and nothing is undone. Defaults to 50."""
    max_windows: int = Field(default=3, ge=1, le=100)
    """How many windows probation may take. While the latest window has fewer than
    minExecutions (and the baseline has enough), the change is watched for another window;
    after this many windows in all, Inconclusive is final. 1 judges once. From 1 to 100.
    Defaults to 3."""
    success_rate_drop: float = Field(default=0.05, ge=0, le=1)
    """How far the success rate may fall below the baseline, as a ratio of executions (0.05:
    five percentage points). Defaults to 0.05."""
    error_rate_rise: float = Field(default=0.05, ge=0, le=1)
    """How far the error rate may rise above the baseline, as a ratio of executions.
    Defaults to 0.05."""
    latency_p95_rise: float = Field(default=0.25, ge=0, le=100)
    """How much the 95th percentile latency may grow, relative to the baseline (0.25: 25%
    slower). Defaults to 0.25."""
    tokens_per_execution_rise: float = Field(default=0.5, ge=0, le=100)
    """How much the tokens per execution may grow, relative to the baseline (0.5: 50% more).
    Defaults to 0.5."""
    quality_score_drop: float = Field(default=0.05, ge=0, le=1)
    """How far the mean quality score (what agents report with ex.score, 0..1) may fall below
    the baseline. Compared only when both sides have scores. Defaults to 0.05."""
    on_regression: OnRegression = OnRegression.REVERT
    """What a regression leads to. revert: put back the previous model (or prompt) and do not
    try the rejected one on this agent for rejectFor; notify: tell the channels and leave the
    change; scaleToZero: stop the agent (the guardrails still apply). Defaults to revert."""
    reject_for: _HOLD = timedelta(days=1)
    """After a revert, how long the rejected model tier is not tried again on that agent; at
    most 30d. Defaults to 1d."""


class VerifySignal(StrEnum):
    """A signal compared on probation: its built-in metric name."""

    SUCCESS_RATE = "success_rate"
    ERROR_RATE = "error_rate"
    LATENCY_P95 = "latency_p95_ms"
    TOKENS_PER_EXECUTION = "tokens_per_execution"
    QUALITY_SCORE = "quality_score"


SIGNALS: tuple[VerifySignal, ...] = tuple(VerifySignal)
"""The signals in the order they are compared and shown."""
