"""What a backtest found: the decisions over time, their totals, and the versioned JSON.

:class:`BacktestResult` holds the replayed timeline and the history it came from;
:func:`totals` counts what the policy would have done; :func:`to_json` renders the
document described by ``schema.json`` (``schemaVersion`` 1, see :func:`json_schema`).
The JSON is stable: keys never disappear within a schema version, lists are in time
order (then agent, then rule), times are RFC 3339 in UTC, durations are policy
durations (``5m``), money is USD.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib import resources
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.api.types import ActionOutcome, AgentPolicy
from agentmedic.backtest.history import History
from agentmedic.engine.conditions import ConditionEvidence, Evidence
from agentmedic.engine.outcome import Decision, DecisionKind, Notification
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.replay import TimelineEntry
from agentmedic.engine.series import AgentId

__all__ = [
    "GUARDRAIL_REASONS",
    "SCHEMA_VERSION",
    "BacktestResult",
    "SystemicEpisodeReport",
    "Timings",
    "Totals",
    "json_schema",
    "outcome_of",
    "to_json",
    "totals",
]

SCHEMA_VERSION = 1
"""Bumped only for incompatible changes to the JSON document."""

GUARDRAIL_REASONS = (
    DecisionReason.COOLDOWN,
    DecisionReason.RATE_LIMITED,
    DecisionReason.MAX_DISABLED,
    DecisionReason.SYSTEMIC_OUTAGE,
    DecisionReason.QUIET_HOURS,
)
"""The guardrails whose suppressions the totals count one by one (always present in JSON)."""


@dataclass
class Timings:
    """Where the backtest's time went, in seconds."""

    fetch: float = 0.0
    """From the first query to the last answer (discovery included)."""
    replay: float = 0.0
    """The engine's replay (CPU time of its thread, which runs beside the fetch as the
    moments arrive) and the systemic episodes' reach."""
    render: float = 0.0


@dataclass(frozen=True)
class SystemicEpisodeReport:
    """A rule breached by enough of the fleet at once: one fleet page instead of many."""

    rule: str
    start: datetime
    end: datetime | None
    """When the resolved notification came; None while still open at the range's end."""
    agents: tuple[AgentId, ...]
    """Agents breaching the rule at some step of the episode: per-agent pages held back."""
    notified: bool
    """The rule has notify channels (so the fleet page was sent and the agents' held back)."""


@dataclass(repr=False)
class BacktestResult:
    """Everything a backtest produced (render it with :func:`to_json`, the table, the plot)."""

    policy: AgentPolicy
    """The policy as written."""
    history: History
    """The fetched history (its spec is the one replayed)."""
    timeline: list[TimelineEntry]
    """One entry per grid moment."""
    backend_url: str
    dry_run_ignored: bool = False
    """The policy is in dryRun and the backtest evaluated it as if it were not."""
    systemic: list[SystemicEpisodeReport] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)

    def __repr__(self) -> str:
        # A summary: the generated repr would spell out the whole history and timeline,
        # hundreds of megabytes for a week of a hundred agents, wherever something reprs
        # it (asyncio.run reprs the main task's result when it restores SIGINT).
        return (
            f"BacktestResult(policy={self.namespace}/{self.name}, "
            f"moments={len(self.timeline)}, decisions={len(self.decisions)}, "
            f"notifications={len(self.notifications)}, history={self.history!r})"
        )

    @property
    def name(self) -> str:
        return str(self.policy.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.policy.metadata.get("namespace", "default"))

    @cached_property
    def decisions(self) -> list[Decision]:
        """Every decision, in time order (the engine's order within a step)."""
        return [d for e in self.timeline for d in e.decisions]

    @cached_property
    def notifications(self) -> list[Notification]:
        """Every notification, in time order."""
        return [n for e in self.timeline for n in e.notifications]

    def rules_involved(self) -> dict[str, list[AgentId]]:
        """Rule (or budget stage) → agents with a decision or notification for it."""
        out: dict[str, set[AgentId]] = {}
        for d in self.decisions:
            out.setdefault(d.rule, set()).add(d.agent)
        for n in self.notifications:
            out.setdefault(n.rule, set())
            if n.agent is not None:
                out[n.rule].add(n.agent)
        for ep in self.systemic:
            out.setdefault(ep.rule, set()).update(ep.agents)
        return {rule: sorted(agents) for rule, agents in out.items()}


def outcome_of(d: Decision) -> ActionOutcome:
    """Applied (would have been carried out), Suppressed (by a guardrail) or DryRun."""
    if d.suppressed_by is not None and d.suppressed_by != DecisionReason.DRY_RUN:
        return ActionOutcome.SUPPRESSED
    if d.dry_run or d.suppressed_by == DecisionReason.DRY_RUN:
        return ActionOutcome.DRY_RUN
    return ActionOutcome.APPLIED


@dataclass(frozen=True)
class Totals:
    """What the policy would have done over the range."""

    decisions: int
    applied: int
    agents_disabled: tuple[AgentId, ...]
    downgrades: int
    jobs: int
    restores: int
    notifications_firing: int
    notifications_resolved: int
    pages: int
    """Firing notifications that reach at least one PagerDuty channel."""
    suppressed: int
    suppressed_by: Mapping[str, int]
    """Per suppression reason (every guardrail of :data:`GUARDRAIL_REASONS` present)."""
    systemic_episodes: int
    pages_held_back: int
    """Per-agent notifications a systemic episode replaced with one fleet page."""
    by_rule: Mapping[str, Mapping[str, int]]


_OUTCOME_KEY = {
    ActionOutcome.APPLIED: "applied",
    ActionOutcome.SUPPRESSED: "suppressed",
    ActionOutcome.DRY_RUN: "dryRun",
}


def totals(result: BacktestResult) -> Totals:
    """Count the decisions and notifications of a backtest."""
    spec = result.history.spec
    pagerduty = {c.name for c in spec.notifications.channels if c.pagerduty is not None}
    applied = [d for d in result.decisions if outcome_of(d) == ActionOutcome.APPLIED]
    suppressed = [d for d in result.decisions if outcome_of(d) == ActionOutcome.SUPPRESSED]
    firing = [n for n in result.notifications if n.state == "firing"]
    by_reason: Counter[str] = Counter({str(r): 0 for r in GUARDRAIL_REASONS})
    by_reason.update(str(d.suppressed_by) for d in suppressed)
    by_rule: dict[str, Counter[str]] = {}
    for d in result.decisions:
        c = by_rule.setdefault(d.rule, Counter())
        c["decisions"] += 1
        c[_OUTCOME_KEY[outcome_of(d)]] += 1
    for n in result.notifications:
        by_rule.setdefault(n.rule, Counter())[f"notifications{n.state.capitalize()}"] += 1
    keys = (
        "decisions",
        "applied",
        "suppressed",
        "dryRun",
        "notificationsFiring",
        "notificationsResolved",
    )
    return Totals(
        decisions=len(result.decisions),
        applied=len(applied),
        agents_disabled=tuple(
            sorted({d.agent for d in applied if d.kind == DecisionKind.SCALE_TO_ZERO})
        ),
        downgrades=sum(1 for d in applied if d.kind == DecisionKind.SWITCH_MODEL),
        jobs=sum(1 for d in applied if d.kind == DecisionKind.PROMPT_OPTIMIZATION),
        restores=sum(1 for d in applied if d.kind == DecisionKind.RESTORE),
        notifications_firing=len(firing),
        notifications_resolved=sum(1 for n in result.notifications if n.state == "resolved"),
        pages=sum(1 for n in firing if pagerduty.intersection(n.channels)),
        suppressed=len(suppressed),
        suppressed_by=dict(sorted(by_reason.items())),
        systemic_episodes=len(result.systemic),
        pages_held_back=sum(len(ep.agents) for ep in result.systemic if ep.notified),
        by_rule={
            rule: {k: counts.get(k, 0) for k in keys} for rule, counts in sorted(by_rule.items())
        },
    )


# --------------------------------------------------------------------------- JSON


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _num(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _condition(c: ConditionEvidence) -> dict[str, Any]:
    return {
        "metric": c.metric,
        "query": c.query,
        "window": format_duration(c.window),
        "op": c.op.value,
        "threshold": c.threshold,
        "observed": _num(c.observed),
        "executions": _num(c.executions),
        "minSamples": c.min_samples,
        "hysteresis": c.hysteresis,
        "assumedBreach": c.assumed_breach,
        "text": c.describe(),
    }


def _evidence(e: Evidence | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "match": e.match,
        "heldSince": _time(e.held_since),
        "for": format_duration(e.for_),
        "conditions": [_condition(c) for c in e.conditions],
        "text": e.describe(),
    }


def _decision(d: Decision) -> dict[str, Any]:
    return {
        "time": _time(d.at),
        "agent": str(d.agent),
        "workload": d.workload,
        "rule": d.rule,
        "action": d.kind.value,
        "severity": d.severity.value,
        "outcome": outcome_of(d).value,
        "suppressedBy": d.suppressed_by,
        "reasonCode": d.reason_code,
        "reason": d.reason,
        "episode": d.episode,
        "fromModel": d.from_model,
        "toModel": d.to_model,
        "evidence": _evidence(d.evidence),
    }


def _notification(n: Notification) -> dict[str, Any]:
    return {
        "time": _time(n.at),
        "agent": None if n.agent is None else str(n.agent),
        "rule": n.rule,
        "state": n.state,
        "severity": n.severity.value,
        "channels": list(n.channels),
        "summary": n.summary,
        "reasonCode": n.reason_code,
        "action": n.action,
        "escalate": n.escalate,
        "episode": n.episode,
        "evidence": _evidence(n.evidence),
    }


def _sorted(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Python's sort is stable: within one moment, the engine's order (strongest first) among
    # equal (agent, rule) pairs is kept.
    return sorted(items, key=lambda x: (x["time"], x["agent"] or "", x["rule"]))


def to_json(result: BacktestResult) -> dict[str, Any]:
    """The backtest as a JSON-compatible dict (schema: :func:`json_schema`)."""
    t = totals(result)
    h = result.history
    spec = h.spec
    return {
        "schemaVersion": SCHEMA_VERSION,
        "policy": {
            "name": result.name,
            "namespace": result.namespace,
            "rules": [r.name for r in spec.rules],
            "budget": spec.budget is not None,
            "dryRun": result.policy.spec.guardrails.dry_run,
            "dryRunIgnored": result.dry_run_ignored,
        },
        "range": {
            "from": _time(h.grid.start),
            "to": _time(h.grid.last),
            "step": format_duration(h.grid.step),
            "steps": h.grid.size,
        },
        "backend": {"url": result.backend_url},
        "agents": [{"agent": str(a), "model": h.models.get(a)} for a in h.agents],
        "decisions": _sorted(_decision(d) for d in result.decisions),
        "notifications": _sorted(_notification(n) for n in result.notifications),
        "systemicEpisodes": [
            {
                "rule": ep.rule,
                "start": _time(ep.start),
                "end": _time(ep.end),
                "agents": [str(a) for a in ep.agents],
                "notified": ep.notified,
            }
            for ep in result.systemic
        ],
        "totals": {
            "decisions": t.decisions,
            "applied": t.applied,
            "agentsDisabled": len(t.agents_disabled),
            "disabledAgents": [str(a) for a in t.agents_disabled],
            "downgrades": t.downgrades,
            "jobs": t.jobs,
            "restores": t.restores,
            "notifications": {
                "firing": t.notifications_firing,
                "resolved": t.notifications_resolved,
                "pages": t.pages,
            },
            "suppressed": {"total": t.suppressed, "byReason": dict(t.suppressed_by)},
            "systemicEpisodes": t.systemic_episodes,
            "pagesHeldBack": t.pages_held_back,
            "byRule": {rule: dict(c) for rule, c in t.by_rule.items()},
        },
        "history": {
            "queries": h.queries,
            "spendCheck": [
                {
                    "time": _time(c.at),
                    "accumulatedUSD": c.accumulated_usd,
                    "exactUSD": c.exact_usd,
                    "relativeError": _num(c.relative_error),
                }
                for c in h.spend_check
            ],
            "warnings": list(h.warnings),
        },
        "timings": {
            "fetchSeconds": round(result.timings.fetch, 3),
            "replaySeconds": round(result.timings.replay, 3),
            "renderSeconds": round(result.timings.render, 3),
        },
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`to_json`'s document."""
    text = resources.files("agentmedic.backtest").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
