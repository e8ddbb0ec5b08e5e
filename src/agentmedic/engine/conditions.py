"""Conditions and rules: the comparison, three-valued logic, hysteresis and the evidence.

A condition is BREACH, CLEAR or UNKNOWN (no data, or fewer executions than minSamples).
``all`` and ``any`` combine them with Kleene's three-valued logic, so a rule is only as
certain as its data allows: ``all`` is CLEAR as soon as one condition is clear, ``any``
is BREACH as soon as one breaches, and anything else undecided is UNKNOWN, which is
never read as health.

While a rule fires, each condition is compared with its ``recoverValue`` instead of
``value`` (hysteresis): for ``op: ">"`` the condition keeps breaching while the value is
above recoverValue and counts as clear once it is at or below it.

:class:`Evidence` carries everything a decision was based on, and
:meth:`Evidence.holds` re-derives the verdict from it alone, so anyone (a test, a
reviewer reading status) can check the decision.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from agentmedic.api.durations import format_duration
from agentmedic.api.types import Action, Condition, Op, Rule, Severity
from agentmedic.api.units import format_comparison, format_count, format_window
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.series import SeriesKey

__all__ = [
    "BREACH",
    "CLEAR",
    "OPS",
    "UNKNOWN",
    "CompiledCondition",
    "CompiledRule",
    "ConditionEvidence",
    "Evidence",
    "combine",
    "compile_rule",
    "executions_key",
    "verdict_of",
]

# Verdicts are small ints: they are computed ~50,000 times per cycle for a large fleet.
CLEAR: Final = 0
BREACH: Final = 1
UNKNOWN: Final = 2

OPS: Mapping[Op, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}
"""The comparison behind each ``op``: ``OPS[op](observed, threshold)`` is True on breach."""

_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}
_STRENGTH = {"scaleToZero": 3, "switchModel": 2, "promptOptimization": 1, "notify": 0}


_Flat = tuple[Hashable, Hashable | None, int, Callable[[float, float], bool], float, float]
"""One condition for :func:`verdict_of`: (value key, executions key or None, minSamples,
comparison, threshold, recoverValue)."""


def executions_key(window: timedelta, agent_label: str) -> SeriesKey:
    """The ``executions`` series a condition with ``minSamples`` is gated on."""
    return SeriesKey("executions", None, window, agent_label)


@dataclass(frozen=True, slots=True)
class ConditionEvidence:
    """One condition as evaluated: what was compared with what, and the verdict."""

    metric: str | None
    """The built-in metric, or None for a raw query."""
    query: str | None
    """The raw PromQL, or None for a built-in metric."""
    window: timedelta
    """The range the value was computed over."""
    op: Op
    """The comparison."""
    threshold: float
    """The threshold compared with: ``value``, or ``recoverValue`` while the rule fires."""
    observed: float | None
    """The observed value; None when there was none."""
    executions: float | None = None
    """Executions in the window, when minSamples applies."""
    min_samples: int | None = None
    """The condition's minSamples."""
    hysteresis: bool = False
    """True when ``threshold`` is the recoverValue because the rule was already firing."""
    assumed_breach: bool = False
    """True when missing data counted as a breach (noData.mode breach, after noData.after)."""

    def verdict(self) -> int:
        """Re-derive BREACH, CLEAR or UNKNOWN from the fields alone."""
        flat, values = self._flat(0)
        return verdict_of((flat,), True, values, False)

    def _flat(self, i: int) -> tuple[_Flat, dict[Hashable, float | None]]:
        """This condition as entry ``i`` of :func:`verdict_of`, with its values."""
        if self.assumed_breach:
            return (i, None, 0, _ALWAYS, 0.0, 0.0), {i: 0.0}
        gate = None if self.min_samples is None else (i, "executions")
        values: dict[Hashable, float | None] = {i: self.observed, gate: self.executions}
        entry = (i, gate, self.min_samples or 0, OPS[self.op], self.threshold, self.threshold)
        return entry, values

    @property
    def reason(self) -> str:
        """The verdict as a DecisionReason: Breaching, Healthy, InsufficientSamples, NoData or
        NoDataBreach."""
        if self.assumed_breach:
            return DecisionReason.NO_DATA_BREACH
        if self.min_samples is not None and (
            self.executions is None or self.executions < self.min_samples
        ):
            return DecisionReason.INSUFFICIENT_SAMPLES
        if self.observed is None or math.isnan(self.observed):
            return DecisionReason.NO_DATA
        return DecisionReason.BREACHING if self.verdict() == BREACH else DecisionReason.HEALTHY

    def describe(self) -> str:
        """``error_rate[5m] = 31% > 15% (n=120)``: the condition in one line, in people's
        units (:mod:`agentmedic.api.units`) and with the window as the policy writes it."""
        what = self.metric if self.metric is not None else f"query({self.query})"
        head = f"{what}[{format_window(self.window)}]"
        if self.assumed_breach:
            return f"{head}: no data, counted as breaching (noData.mode breach)"
        if self.min_samples is not None and (
            self.executions is None or self.executions < self.min_samples
        ):
            # Floor, not round: 49.6 executions are fewer than minSamples 50.
            n = "none" if self.executions is None else format_count(math.floor(self.executions))
            return f"{head}: {n} executions, fewer than minSamples {self.min_samples}"
        if self.observed is None or math.isnan(self.observed):
            return f"{head}: no data"
        observed, threshold = format_comparison(self.metric, self.observed, self.threshold)
        text = f"{head} = {observed} {self.op.value} {threshold}"
        if not OPS[self.op](self.observed, self.threshold):
            text = f"{head} = {observed}, not {self.op.value} {threshold}"
        if self.hysteresis:
            text += " (recoverValue)"
        if self.executions is not None:
            text += f" (n={format_count(self.executions)})"
        return text


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a decision rests on: the conditions, how they combine and for how long they held.

    :meth:`holds` is True exactly when the decision was warranted by this evidence: the
    conditions combine to BREACH and ``at - held_since >= for_``. A restore's evidence has
    no conditions (an empty ``all`` holds) and only the duration.
    """

    match: str
    """``all`` or ``any``."""
    conditions: tuple[ConditionEvidence, ...]
    """Every condition of the rule, in spec order."""
    held_since: datetime | None
    """When the breach (or, for a restore, the healthy or disabled spell) began."""
    for_: timedelta
    """How long it had to hold."""
    at: datetime
    """When it was evaluated."""

    def verdict(self) -> int:
        """Combine the conditions' verdicts with Kleene's logic."""
        flat: list[_Flat] = []
        values: dict[Hashable, float | None] = {}
        for i, c in enumerate(self.conditions):
            entry, vals = c._flat(i)
            flat.append(entry)
            values.update(vals)
        return verdict_of(flat, self.match == "all", values, False)

    def holds(self) -> bool:
        """True when the conditions breach and have held for ``for_`` (the decision stands)."""
        if self.verdict() != BREACH:
            return False
        if self.held_since is None:
            return self.for_ <= timedelta(0)
        return self.at - self.held_since >= self.for_

    def describe(self) -> str:
        """The conditions in one line, joined by AND/OR, with how long the breach held."""
        joiner = " AND " if self.match == "all" else " OR "
        text = joiner.join(c.describe() for c in self.conditions)
        if self.held_since is not None and self.for_ > timedelta(0):
            held = format_duration(
                timedelta(seconds=round((self.at - self.held_since).total_seconds()))
            )
            text += f"; held {held} (for {format_duration(self.for_)})"
        return text


def verdict_of(
    flat: Iterable[_Flat], match_all: bool, values: Mapping[Any, float | None], firing: bool
) -> int:
    """The one verdict of the engine: each condition's, combined with Kleene's logic.

    A condition is UNKNOWN with fewer executions than minSamples or without a value (None,
    or NaN: 0/0 in PromQL is no data, not a value), else BREACH when its comparison holds
    (against recoverValue while ``firing``), else CLEAR. ``all`` is CLEAR as soon as one
    condition is clear, ``any`` BREACH as soon as one breaches; anything else undecided
    is UNKNOWN. This runs for every agent and rule of every cycle, so it reads the
    conditions as plain tuples and stops at the first condition that decides.
    """
    get = values.get
    unknown = False
    for key, exec_key, min_samples, compare, threshold, recover in flat:
        if exec_key is not None:
            n = get(exec_key)
            if n is None or n < min_samples:
                unknown = True
                continue
        v = get(key)
        if v is None or v != v:
            unknown = True
        elif compare(v, recover if firing else threshold) is not match_all:
            return CLEAR if match_all else BREACH
    if unknown:
        return UNKNOWN
    return BREACH if match_all else CLEAR


def _always(observed: float, threshold: float) -> bool:
    return True


_ALWAYS: Callable[[float, float], bool] = _always
"""The comparison of a condition whose missing data counts as a breach."""


def combine(all_of: bool, verdicts: list[int]) -> int:
    """Kleene AND (``all``) or OR (``any``) over BREACH/CLEAR/UNKNOWN verdicts, through
    :func:`verdict_of` (each verdict as a condition: UNKNOWN is no value, BREACH breaches)."""
    flat = [(i, None, 0, operator.eq, 1.0, 1.0) for i in range(len(verdicts))]
    values = {i: (None if v == UNKNOWN else float(v == BREACH)) for i, v in enumerate(verdicts)}
    return verdict_of(flat, all_of, values, False)


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A condition with its series keys resolved and its comparison picked once per cycle."""

    condition: Condition
    key: SeriesKey
    exec_key: SeriesKey | None
    min_samples: int
    compare: Callable[[float, float], bool]
    threshold: float
    recover: float

    def verdict(self, values: Mapping[SeriesKey, float | None], firing: bool) -> int:
        """BREACH, CLEAR or UNKNOWN for one agent's values."""
        flat = (
            self.key,
            self.exec_key,
            self.min_samples,
            self.compare,
            self.threshold,
            self.recover,
        )
        return verdict_of((flat,), True, values, firing)

    def evidence(
        self, values: Mapping[SeriesKey, float | None], firing: bool, assume_breach: bool
    ) -> ConditionEvidence:
        """The evidence for this condition; ``assume_breach`` marks missing data as breaching."""
        c = self.condition
        n = values.get(self.exec_key) if self.exec_key is not None else None
        observed = values.get(self.key)
        ev = ConditionEvidence(
            metric=c.metric,
            query=c.query,
            window=c.window,
            op=c.op,
            threshold=self.recover if firing else self.threshold,
            observed=observed,
            executions=n,
            min_samples=c.min_samples,
            hysteresis=firing and self.recover != self.threshold,
        )
        if assume_breach and ev.verdict() == UNKNOWN:
            return replace(ev, assumed_breach=True)
        return ev

    def badness(self, values: Mapping[SeriesKey, float | None]) -> float:
        """How far past the threshold the value is, relative to the threshold (0 if not)."""
        v = values.get(self.key)
        if v is None or v != v or not self.compare(v, self.threshold):
            return 0.0
        return min(abs(v - self.threshold) / max(abs(self.threshold), 1e-9), 1e6)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready for the hot loop: conditions compiled, actions ranked, channels gathered."""

    rule: Rule
    name: str
    match_all: bool
    conditions: tuple[CompiledCondition, ...]
    for_: timedelta
    recover_for: timedelta
    severity: Severity
    severity_rank: int
    workload_actions: tuple[tuple[str, Action], ...]
    """(kind, action) of the scaleToZero, switchModel and promptOptimization actions,
    strongest first."""
    channels: tuple[str, ...]
    """The channels of the rule's notify actions, in order, without repeats."""
    flat: tuple[_Flat, ...]
    """The conditions as plain tuples for the hot loop."""

    def verdict(self, values: Mapping[SeriesKey, float | None], firing: bool) -> int:
        """The rule's verdict for one agent (Kleene AND/OR of its conditions)."""
        return verdict_of(self.flat, self.match_all, values, firing)

    def evidence(
        self,
        values: Mapping[SeriesKey, float | None],
        firing: bool,
        assume_breach: bool,
        held_since: datetime | None,
        at: datetime,
    ) -> Evidence:
        """The evidence behind this cycle's verdict for one agent."""
        return Evidence(
            match="all" if self.match_all else "any",
            conditions=tuple(c.evidence(values, firing, assume_breach) for c in self.conditions),
            held_since=held_since,
            for_=self.for_,
            at=at,
        )

    def badness(self, values: Mapping[SeriesKey, float | None]) -> float:
        """Sum of the conditions' relative exceedances: ranks agents, worst first."""
        return sum(c.badness(values) for c in self.conditions)


def compile_rule(
    rule: Rule, agent_label: str, canon: Mapping[SeriesKey, SeriesKey] | None = None
) -> CompiledRule:
    """Resolve a rule's series keys and comparisons once, for every agent of a cycle.

    ``canon`` maps keys to the very key objects the samples use, so that lookups hit on
    identity and never compare field by field.
    """
    canon = canon or {}
    conditions = rule.all_of or rule.any_of

    def key(k: SeriesKey) -> SeriesKey:
        return canon.get(k, k)

    compiled = tuple(
        CompiledCondition(
            condition=c,
            key=key(SeriesKey(c.metric, c.query, c.window, agent_label)),
            exec_key=key(executions_key(c.window, agent_label)) if c.min_samples else None,
            min_samples=c.min_samples or 0,
            compare=OPS[c.op],
            threshold=c.value,
            recover=(
                c.recover_value
                if c.recover_value is not None and c.op not in (Op.EQ, Op.NE)
                else c.value
            ),
        )
        for c in conditions
    )
    workload = sorted(
        (a for a in rule.actions if a.kind in ("scaleToZero", "switchModel", "promptOptimization")),
        key=lambda a: -_STRENGTH[a.kind],
    )
    channels: list[str] = []
    for a in rule.actions:
        if a.notify is not None:
            channels.extend(ch for ch in a.notify.channels if ch not in channels)
    return CompiledRule(
        rule=rule,
        name=rule.name,
        match_all=bool(rule.all_of) or not rule.any_of,
        conditions=compiled,
        for_=rule.for_,
        recover_for=rule.recover_for,
        severity=rule.severity,
        severity_rank=_SEVERITY_RANK[rule.severity],
        workload_actions=tuple((a.kind, a) for a in workload),
        channels=tuple(channels),
        flat=tuple(
            (c.key, c.exec_key, c.min_samples, c.compare, c.threshold, c.recover) for c in compiled
        ),
    )


def strength(kind: str) -> int:
    """scaleToZero 3 > switchModel 2 > promptOptimization 1 > notify 0 (restore: 0)."""
    return _STRENGTH.get(kind, 0)


def severity_rank(severity: Severity) -> int:
    """info 0 < low < medium < high < critical 4."""
    return _SEVERITY_RANK[severity]
