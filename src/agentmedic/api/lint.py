"""Checks of a valid AgentPolicy spec for rules that cannot act as written.

:func:`agentmedic.api.validation.validate_policy` refuses what the API cannot accept.
:func:`lint_policy` looks at a spec that passed it and reports what is accepted yet
almost certainly not meant: a threshold on a ratio written as a percentage (an error:
``success_rate < 70`` holds for every agent), a blast-radius cap that rounds down to no
agent at all, a ``for`` or ``window`` too short for the scrape interval, an agent scaled
to zero without anyone being told.

The function is pure (no I/O, no clock), so ``agentmedic validate`` and the operator run
the same checks; each :class:`Finding` carries a stable ``code``, the field path as
validation writes it, a message and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from agentmedic.api.durations import format_duration
from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.api.types import Action, AgentPolicySpec, Condition

__all__ = [
    "DEFAULT_SCRAPE_INTERVAL",
    "RATIO_METRICS",
    "Finding",
    "Severity",
    "errors",
    "lint_policy",
    "operator_scrape_interval",
    "summary",
]

DEFAULT_SCRAPE_INTERVAL = timedelta(seconds=30)
"""The scrape interval assumed when none is given (kube-prometheus' default)."""


def operator_scrape_interval() -> timedelta:
    """The scrape interval the operator assumes: the default, divided by the sandbox's time
    compression (its windows are compressed by the same factor)."""
    from agentmedic.api.durations import time_compression

    return DEFAULT_SCRAPE_INTERVAL / time_compression()


RATIO_METRICS = frozenset(n for n, m in BUILTIN_METRICS.items() if m.unit.startswith("ratio"))
"""Built-in metrics whose value is a share between 0 and 1 (from the catalog's units)."""

_RATE_SAMPLES = 4
"""Scrapes a window should span: rate() needs two samples, and a missed scrape or two
must not leave it with fewer."""


class Severity(StrEnum):
    ERROR = "error"
    """The policy does something other than what it says; refuse it."""
    WARNING = "warning"
    """The policy may never act as written; accept it, but say so."""


@dataclass(frozen=True)
class Finding:
    """One thing a valid policy does differently from what it appears to say."""

    code: str
    """A stable CamelCase identifier, e.g. ``RatioOutOfRange``."""
    severity: Severity
    path: str
    """The field, written as validation writes it: ``spec.rules[0].all[1].value``."""
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; {self.fix}"


def errors(findings: list[Finding]) -> list[Finding]:
    """The findings that make a policy wrong rather than doubtful."""
    return [f for f in findings if f.severity is Severity.ERROR]


def summary(findings: list[Finding], max_chars: int = 1024) -> str:
    """The findings as one line for a condition message or an Event, at most ``max_chars``:
    ``2 warning(s): spec.rules[0].for: ...; use 0s ... | spec...``; ``""`` when none."""
    if not findings:
        return ""
    counts = [
        f"{n} {severity.value}(s)"
        for severity in Severity
        if (n := sum(f.severity is severity for f in findings))
    ]
    text = f"{', '.join(counts)}: " + " | ".join(str(f) for f in findings)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def lint_policy(
    spec: AgentPolicySpec,
    fleet_size: int | None = None,
    scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL,
) -> list[Finding]:
    """Every finding for ``spec``, errors first, then in field order.

    ``fleet_size`` is the number of agents the policy selects, when known (the operator
    knows it; ``agentmedic validate --fleet-size`` lets a person say it); without it the
    blast-radius check only reports a cap of 0 %. ``scrape_interval`` is how often the
    agents' metrics are scraped.
    """
    found: list[Finding] = []
    for finding in _lint(spec, fleet_size, scrape_interval):
        # One cap, however many actions it blocks: say it once, naming the first.
        if finding.code == "CapRoundsToZero" and any(f.code == finding.code for f in found):
            continue
        found.append(finding)
    return sorted(found, key=lambda f: f.severity is not Severity.ERROR)


def _lint(spec: AgentPolicySpec, fleet_size: int | None, scrape: timedelta) -> Iterator[Finding]:
    for i, rule in enumerate(spec.rules):
        p = f"spec.rules[{i}]"
        for key, conditions in (("all", rule.all_of), ("any", rule.any_of)):
            for j, cond in enumerate(conditions):
                yield from _ratio(f"{p}.{key}[{j}]", cond)
                yield from _window(f"{p}.{key}[{j}]", cond, scrape)
        if timedelta(0) < rule.for_ < 2 * scrape:
            yield Finding(
                "ForShorterThanTwoScrapes",
                Severity.WARNING,
                f"{p}.for",
                f"is {_fmt(rule.for_)}, less than two scrapes ({_fmt(2 * scrape)} at a "
                f"{_fmt(scrape)} scrape interval): one sample can make the rule fire",
                f"use 0s to act at once, or at least {_fmt(2 * scrape)}",
            )
        yield from _actions(f"{p}.actions", rule.actions, spec, fleet_size)
    if spec.budget is not None:
        for stage, limit in (("soft", spec.budget.soft), ("hard", spec.budget.hard)):
            if limit is not None:
                yield from _actions(f"spec.budget.{stage}.actions", limit.actions, spec, fleet_size)
    if fleet_size is not None and any(
        a.scale_to_zero is not None for rule in spec.rules for a in rule.actions
    ):
        yield from _systemic(spec, fleet_size)


def _systemic(spec: AgentPolicySpec, fleet_size: int) -> Iterator[Finding]:
    """Systemic detection counts the agents not disabled: a fleet too small for it, or one
    that shrinks below it as the cap's worth of agents is disabled, meets an outage of a
    shared dependency one agent at a time."""
    g = spec.guardrails
    path = "spec.guardrails.systemicMinAgents"
    if fleet_size < g.systemic_min_agents:
        yield Finding(
            "SystemicNeverApplies",
            Severity.WARNING,
            path,
            f"is {g.systemic_min_agents}, more than the {fleet_size} agent(s) selected: an "
            "outage of a shared dependency is never recognised as one, and each failing "
            "agent is disabled on its own (up to maxDisabledPercent)",
            f"lower it to {max(1, fleet_size)} or less, or rely on maxDisabledPercent",
        )
        return
    remaining = fleet_size - math.floor(fleet_size * g.max_disabled_percent / 100)
    if remaining < g.systemic_min_agents:
        yield Finding(
            "SystemicLapsesAfterDisables",
            Severity.WARNING,
            path,
            f"is {g.systemic_min_agents}, but once maxDisabledPercent's share of the "
            f"{fleet_size} agents is disabled only {remaining} remain, and disabled agents "
            "do not count: a later outage is no longer recognised as systemic",
            f"lower it to {max(1, remaining)} or lower maxDisabledPercent",
        )


# A share of 1..100 is a percentage written where a ratio belongs.
def _ratio(p: str, cond: Condition) -> Iterator[Finding]:
    if cond.metric not in RATIO_METRICS:
        return
    for field, value in (("value", cond.value), ("recoverValue", cond.recover_value)):
        if value is None or 0 <= value <= 1:
            continue
        fix = (
            f"did you mean {_number(value / 100)}?"
            if 1 < value <= 100
            else "use a share between 0 and 1"
        )
        yield Finding(
            "RatioOutOfRange",
            Severity.ERROR,
            f"{p}.{field}",
            f"{_number(value)} is outside 0..1, the range of {cond.metric} (a ratio); "
            f"the condition {cond.op} {_number(value)} is "
            + ("always" if _always(cond.op.value, value) else "never")
            + " true",
            fix,
        )


def _always(op: str, value: float) -> bool:
    """Whether ``ratio OP value`` holds for every ratio, ``value`` being outside 0..1."""
    above = value > 1
    return {
        "<": above,
        "<=": above,
        ">": not above,
        ">=": not above,
        "!=": True,
        "==": False,
    }.get(op, False)


# Every built-in metric is a rate() or increase() over the window.
def _window(p: str, cond: Condition, scrape: timedelta) -> Iterator[Finding]:
    uses_rate = cond.metric is not None or (
        cond.query is not None and any(f in cond.query for f in ("rate(", "increase("))
    )
    need = _RATE_SAMPLES * scrape
    if uses_rate and cond.window < need:
        yield Finding(
            "WindowTooShort",
            Severity.WARNING,
            f"{p}.window",
            f"is {_fmt(cond.window)}, less than {_RATE_SAMPLES} scrapes ({_fmt(need)} at a "
            f"{_fmt(scrape)} scrape interval): a missed scrape leaves rate() without data",
            f"use at least {_fmt(need)}",
        )


def _actions(
    p: str, actions: list[Action], spec: AgentPolicySpec, fleet_size: int | None
) -> Iterator[Finding]:
    scale = next((i for i, a in enumerate(actions) if a.scale_to_zero is not None), None)
    if scale is None:
        return
    where = f"{p}[{scale}].scaleToZero"
    if not any(a.notify is not None for a in actions):
        yield Finding(
            "ScaleToZeroWithoutNotify",
            Severity.WARNING,
            where,
            "scales agents to zero without telling anyone",
            "add a notify action to the same list, e.g. {notify: {channels: [oncall]}}",
        )
    pct = spec.guardrails.max_disabled_percent
    if fleet_size is not None and fleet_size > 0:
        allowed = math.floor(fleet_size * pct / 100)
        if allowed == 0:
            yield Finding(
                "CapRoundsToZero",
                Severity.WARNING,
                "spec.guardrails.maxDisabledPercent",
                f"is {_number(pct)}: {_number(pct)}% of {fleet_size} agent(s) rounds down to "
                f"0, so {where} can never act",
                f"raise it to at least {_number(math.ceil(100 / fleet_size))}",
            )
    elif pct == 0:
        yield Finding(
            "CapRoundsToZero",
            Severity.WARNING,
            "spec.guardrails.maxDisabledPercent",
            f"is 0, so {where} can never act",
            "raise it, or remove the scaleToZero action",
        )


def _number(value: float) -> str:
    return f"{value:g}"


def _fmt(value: timedelta) -> str:
    return format_duration(value)
