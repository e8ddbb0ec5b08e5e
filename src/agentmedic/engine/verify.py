"""Probation arithmetic: which series a verification needs, the baseline, and the verdict.

Pure and small, so that the remediation stage (which takes the baseline when it decides a
model switch), the probation stage (which judges it) and the requirements share one
definition of the signals and their tolerances.

A signal is compared only when both sides have a value; the verdict needs
``minExecutions`` on both sides and at least one compared signal, else it is
Inconclusive. Rates and the quality score are compared as differences of ratios
(``successRateDrop`` 0.05: five percentage points); latency and tokens per execution as
relative changes (``latencyP95Rise`` 0.25: 25% slower).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from agentmedic.api.types import AgentPolicySpec
from agentmedic.api.units import format_value
from agentmedic.api.verify import SIGNALS, Verify, VerifySignal
from agentmedic.engine.series import SeriesKey

__all__ = [
    "EXECUTIONS",
    "Comparison",
    "Verdict",
    "VerdictKind",
    "baseline_from",
    "judge",
    "verify_keys",
]

EXECUTIONS = "executions"


class VerdictKind(StrEnum):
    VERIFIED = "Verified"
    REGRESSED = "Regressed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One signal before and after the change, and the worst value its tolerance allows."""

    signal: VerifySignal
    before: float
    after: float
    limit: float
    regressed: bool

    def describe(self) -> str:
        """``quality_score 86% → 61% (at least 81%)`` in people's units."""
        m = self.signal.value
        bound = "at least" if _LOWER_IS_WORSE[self.signal] else "at most"
        return (
            f"{m} {format_value(m, self.before)} → {format_value(m, self.after)} "
            f"({bound} {format_value(m, self.limit)})"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What probation concluded, with the numbers behind it."""

    kind: VerdictKind
    comparisons: tuple[Comparison, ...]
    executions_before: float | None
    executions_after: float | None
    why: str
    """One line for people: the regressed signals, or why it is inconclusive."""
    short_after: bool = False
    """Inconclusive because the window after the change has too few executions while the
    baseline has enough: another window may give a verdict."""

    @property
    def regressed(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.regressed)

    def executions(self) -> str:
        """``executions 120 before, 96 after``."""
        return (
            f"executions {_count(self.executions_before)} before, "
            f"{_count(self.executions_after)} after"
        )

    def describe(self) -> str:
        """Every compared signal, before → after, and the executions on both sides."""
        return "; ".join([*(c.describe() for c in self.comparisons), self.executions()])


_LOWER_IS_WORSE = {
    VerifySignal.SUCCESS_RATE: True,
    VerifySignal.ERROR_RATE: False,
    VerifySignal.LATENCY_P95: False,
    VerifySignal.TOKENS_PER_EXECUTION: False,
    VerifySignal.QUALITY_SCORE: True,
}


def _count(n: float | None) -> str:
    return "no data" if n is None else f"{n:.0f}"


def verify_keys(spec: AgentPolicySpec) -> set[SeriesKey]:
    """The series probation reads: every signal and ``executions`` over the window (after
    the change) and over the baseline window (taken when a switch is decided)."""
    v = spec.verify
    if v is None:
        return set()
    label = spec.agent_label
    return {
        SeriesKey(name, None, window, label)
        for window in {v.window, v.baseline_window}
        for name in (*SIGNALS, EXECUTIONS)
    }


def _values(
    values: Mapping[SeriesKey, float | None], window: timedelta, label: str
) -> dict[str, float | None]:
    return {
        name: values.get(SeriesKey(name, None, window, label)) for name in (*SIGNALS, EXECUTIONS)
    }


def baseline_from(
    spec: AgentPolicySpec, values: Mapping[SeriesKey, float | None]
) -> dict[str, float | None] | None:
    """The agent's signals over ``verify.baselineWindow`` now (None without spec.verify)."""
    v = spec.verify
    if v is None:
        return None
    return _values(values, v.baseline_window, spec.agent_label)


def after_from(
    spec: AgentPolicySpec, values: Mapping[SeriesKey, float | None]
) -> dict[str, float | None]:
    """The agent's signals over ``verify.window`` now."""
    assert spec.verify is not None
    return _values(values, spec.verify.window, spec.agent_label)


def _limit(v: Verify, signal: VerifySignal, before: float) -> float:
    # Ratios stay within 0..1 (a rate never crosses those anyway), so the limit reads well.
    if signal is VerifySignal.SUCCESS_RATE:
        return max(0.0, before - v.success_rate_drop)
    if signal is VerifySignal.ERROR_RATE:
        return min(1.0, before + v.error_rate_rise)
    if signal is VerifySignal.LATENCY_P95:
        return before * (1 + v.latency_p95_rise)
    if signal is VerifySignal.TOKENS_PER_EXECUTION:
        return before * (1 + v.tokens_per_execution_rise)
    return max(0.0, before - v.quality_score_drop)


def judge(
    v: Verify, before: Mapping[str, float | None], after: Mapping[str, float | None]
) -> Verdict:
    """Compare the signals after the change with the baseline (see the module docstring)."""
    n_before, n_after = before.get(EXECUTIONS), after.get(EXECUTIONS)
    comparisons: list[Comparison] = []
    for signal in SIGNALS:
        b, a = before.get(signal.value), after.get(signal.value)
        if b is None or a is None:
            continue
        limit = _limit(v, signal, b)
        worse = a < limit if _LOWER_IS_WORSE[signal] else a > limit
        comparisons.append(Comparison(signal, b, a, limit, worse))
    few = [
        f"{side} {_count(n)}"
        for side, n in (("before", n_before), ("after", n_after))
        if n is None or n < v.min_executions
    ]
    if few:
        why = (
            f"too little traffic to judge: executions {', '.join(few)} "
            f"(verify.minExecutions {v.min_executions})"
        )
        short_after = len(few) == 1 and few[0].startswith("after")
        return Verdict(
            VerdictKind.INCONCLUSIVE, tuple(comparisons), n_before, n_after, why, short_after
        )
    if not comparisons:
        why = "no signal had data on both sides of the change"
        return Verdict(VerdictKind.INCONCLUSIVE, (), n_before, n_after, why)
    bad = [c for c in comparisons if c.regressed]
    if bad:
        why = "; ".join(c.describe() for c in bad)
        return Verdict(VerdictKind.REGRESSED, tuple(comparisons), n_before, n_after, why)
    why = "every signal within its tolerance"
    return Verdict(VerdictKind.VERIFIED, tuple(comparisons), n_before, n_after, why)
