"""What is said, independent of where it is said: :class:`Message` and its parts.

The operator builds one :class:`Message` per episode transition (firing, resolved);
each channel renders it in its own format. The dispatcher adds a :class:`Delivery`
(is this a reminder, were messages held back by the rate limit) that depends on what
the channel was told before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from agentmedic.api.types import Op, Severity
from agentmedic.api.units import format_comparison, format_timestamp, format_value, format_window
from agentmedic.engine.conditions import OPS
from agentmedic.engine.series import AgentId

__all__ = [
    "SEVERITY_ORDER",
    "Delivery",
    "Evidence",
    "Message",
    "MessageState",
    "Overflow",
    "format_time",
    "severity_at_least",
]

SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.INFO,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)
"""Severities from least to most severe."""


def severity_at_least(severity: Severity, minimum: Severity) -> bool:
    """Whether ``severity`` is ``minimum`` or more severe."""
    return SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(minimum)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second: ``2024-05-01T10:02:03Z``."""
    return format_timestamp(moment)


class MessageState(StrEnum):
    """Whether an episode has started (firing) or ended (resolved)."""

    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One condition of the rule and what was measured: ``error_rate > 0.15``, 0.31 over 5m;
    reads ``error_rate[5m] = 31% > 15%``."""

    condition: str
    """The condition as written, e.g. ``error_rate > 0.15``."""
    value: float | None
    """The measured value; ``None`` when there was no data."""
    threshold: float | None = None
    """The threshold the value was compared with."""
    window: timedelta | None = None
    """The range the value was computed over."""

    def __str__(self) -> str:
        """One sentence in people's units: ``success_rate[30s] = 41% < 80%``.

        The metric and the comparison come from ``condition`` when it has the form the
        operator writes (``metric op number``); any other condition text is shown as it
        is, followed by the value.
        """
        parsed = _CONDITION.match(self.condition)
        if parsed is None or self.threshold is None:
            window = f" (over {format_window(self.window)})" if self.window is not None else ""
            return f"{self.condition}: {format_value(None, self.value)}{window}"
        name, op = parsed["metric"], parsed["op"]
        metric = None if name == "query" else name
        head = name if self.window is None else f"{name}[{format_window(self.window)}]"
        if self.value is None or math.isnan(self.value):
            return f"{head}: no data ({op} {format_value(metric, self.threshold)})"
        observed, threshold = format_comparison(metric, self.value, self.threshold)
        if OPS[Op(op)](self.value, self.threshold):
            return f"{head} = {observed} {op} {threshold}"
        return f"{head} = {observed}, not {op} {threshold}"


# The condition text the operator writes: ``error_rate > 0.15``, ``query >= 3``.
_CONDITION = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_]*) (?P<op>>=|<=|==|!=|>|<) \S+$")


@dataclass(frozen=True, slots=True)
class Message:
    """One episode transition to tell people about, in no channel's format."""

    episode: str
    """The episode key (policy, agent, rule, breach start): PagerDuty's dedup_key and the
    unit of deduplication on every channel."""
    policy_namespace: str
    """Namespace of the AgentPolicy."""
    policy_name: str
    """Name of the AgentPolicy."""
    agent: AgentId | None
    """The agent concerned; ``None`` for a fleet-wide message (systemic breach, budget of
    the whole policy, metrics backend down)."""
    rule: str
    """The rule, or ``budget.soft``, ``budget.hard``, ``systemic``, ``noData``."""
    severity: Severity
    """How bad it is; channels below their minSeverity do not get it."""
    state: MessageState
    """firing or resolved."""
    summary: str
    """One or two sentences for a person, e.g. "error rate 31% and p95 latency 12.4 s for 6m"."""
    time: datetime
    """When the episode changed state (breach start, or recovery)."""
    evidence: tuple[Evidence, ...] = ()
    """The conditions and their measured values."""
    action: str | None = None
    """What agentmedic did about it, e.g. "scaled deployment agents/support-bot to 0 (was 3)"."""
    undo: str | None = None
    """The exact command that undoes the action, e.g.
    ``agentmedic restore deployment/support-bot -n agents``."""
    dry_run: bool = False
    """The policy is in dry run: the action was only recorded, nothing was changed."""
    source: str | None = None
    """What a fleet-wide message is about when it is not a policy, e.g. ``ClusterAgentBudget
    team-support`` (a budget of finance's); ``policy_namespace``/``policy_name`` then name
    where its Secrets live and the object."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: a message waiting to be sent is persisted in this form."""
        return {
            "episode": self.episode,
            "namespace": self.policy_namespace,
            "policy": self.policy_name,
            "agent": None if self.agent is None else [self.agent.namespace, self.agent.name],
            "rule": self.rule,
            "severity": self.severity.value,
            "state": self.state.value,
            "summary": self.summary,
            "time": self.time.timestamp(),
            "evidence": [
                [
                    e.condition,
                    e.value,
                    e.threshold,
                    None if e.window is None else e.window.total_seconds(),
                ]
                for e in self.evidence
            ],
            "action": self.action,
            "undo": self.undo,
            "dryRun": self.dry_run,
            **({"source": self.source} if self.source is not None else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Message:
        """Read what :meth:`to_json` wrote (``ValueError`` when it is not that form)."""
        try:
            agent = d.get("agent")
            return cls(
                episode=str(d["episode"]),
                policy_namespace=str(d["namespace"]),
                policy_name=str(d["policy"]),
                agent=None if agent is None else AgentId(str(agent[0]), str(agent[1])),
                rule=str(d["rule"]),
                severity=Severity(d["severity"]),
                state=MessageState(d["state"]),
                summary=str(d["summary"]),
                time=datetime.fromtimestamp(float(d["time"]), UTC),
                evidence=tuple(
                    Evidence(
                        str(c),
                        None if v is None else float(v),
                        None if t is None else float(t),
                        None if w is None else timedelta(seconds=float(w)),
                    )
                    for c, v, t, w in d.get("evidence") or ()
                ),
                action=d.get("action"),
                undo=d.get("undo"),
                dry_run=bool(d.get("dryRun")),
                source=None if d.get("source") is None else str(d["source"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not a message: {exc}") from None

    @property
    def subject(self) -> str:
        """What the message is about: ``agents/support-bot`` or ``policy agents/fleet``."""
        if self.agent is not None:
            return str(self.agent)
        if self.source is not None:
            return self.source
        return f"policy {self.policy_namespace}/{self.policy_name}"

    @property
    def policy(self) -> str:
        """``namespace/name`` of the AgentPolicy."""
        return f"{self.policy_namespace}/{self.policy_name}"


@dataclass(frozen=True, slots=True)
class Overflow:
    """Messages a channel's rate limit held back since the last one it was sent."""

    count: int
    """How many were held back."""
    since: datetime
    """When the first of them was held back."""

    def __str__(self) -> str:
        noun = "message was" if self.count == 1 else "messages were"
        return (
            f"{self.count} more {noun} held back by this channel's rate limit "
            f"since {format_time(self.since)}"
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """What depends on the channel's history: added to a message as it is rendered."""

    sent_at: datetime
    """When the message is sent."""
    repeat: bool = False
    """The episode is still firing and this channel was told before: a reminder."""
    overflow: Overflow | None = None
    """Messages held back by the rate limit since the last message this channel got."""

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines to show under the message, worded from ``repeat`` and ``overflow``."""
        notes: list[str] = []
        if self.repeat:
            notes.append("Reminder: this episode is still firing.")
        if self.overflow is not None:
            notes.append(f"{self.overflow}.")
        return tuple(notes)
