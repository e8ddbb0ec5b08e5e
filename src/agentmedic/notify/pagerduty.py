"""PagerDuty Events API v2: a :class:`Message` as an alert event (trigger or resolve).

Fields as PagerDuty documents them ("Send an Alert Event", developer.pagerduty.com,
events-API-v2): ``routing_key``, ``event_action`` (trigger | acknowledge | resolve),
``dedup_key`` (at most 255 characters) correlating a resolve with its trigger, and for a
trigger a ``payload`` with ``summary`` (required, at most 1024 characters), ``source``
(required, the affected system), ``severity`` (required: critical, error, warning or
info), ``timestamp``, ``component``, ``group``, ``class`` and ``custom_details``. A
resolve needs only ``routing_key``, ``event_action`` and ``dedup_key``.

``dedup_key`` is the episode key, so a repeated trigger updates the open alert instead
of opening another, and a resolve closes exactly the alert its episode opened.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from agentmedic.api.types import Severity
from agentmedic.notify.message import Delivery, Message, MessageState, format_time

__all__ = [
    "DEDUP_KEY_MAX_CHARS",
    "PAGERDUTY_SEVERITY",
    "SUMMARY_MAX_CHARS",
    "dedup_key",
    "pagerduty_event",
]

SUMMARY_MAX_CHARS: Final = 1024
DEDUP_KEY_MAX_CHARS: Final = 255

PAGERDUTY_SEVERITY: Final[dict[Severity, str]] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    # PagerDuty has four levels to our five; a low-severity breach is still a problem to
    # look at, so it is a warning rather than mere information.
    Severity.LOW: "warning",
    Severity.INFO: "info",
}
"""Our severities onto PagerDuty's four."""

CLIENT: Final = "agentmedic"


def dedup_key(episode: str) -> str:
    """The episode key, or a stable digest of it when it exceeds PagerDuty's 255 characters."""
    if len(episode) <= DEDUP_KEY_MAX_CHARS:
        return episode
    digest = hashlib.sha256(episode.encode()).hexdigest()
    # Keep a readable prefix; the digest keeps distinct episodes distinct.
    return f"{episode[: DEDUP_KEY_MAX_CHARS - len(digest) - 1]}~{digest}"


def _summary(message: Message) -> str:
    dry = "[DRY RUN] " if message.dry_run else ""
    if message.summary.startswith(f"{message.subject}: "):
        # The operator's summaries name their subject and rule already: say it once.
        text = f"{dry}{message.summary}"
    else:
        text = f"{dry}{message.rule} on {message.subject}: {message.summary}"
    if len(text) > SUMMARY_MAX_CHARS:
        text = text[: SUMMARY_MAX_CHARS - 1] + "…"
    return text


def pagerduty_event(message: Message, delivery: Delivery, routing_key: str) -> dict[str, Any]:
    """The JSON body to POST to the Events API v2 ``/v2/enqueue`` endpoint."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": dedup_key(message.episode),
    }
    if message.state is MessageState.RESOLVED:
        event["event_action"] = "resolve"
        return event

    details: dict[str, Any] = {
        "policy": message.policy,
        "agent": str(message.agent) if message.agent else None,
        "rule": message.rule,
        "severity": message.severity.value,
        "episode": message.episode,
        "since": format_time(message.time),
        "evidence": [str(e) for e in message.evidence],
        "action": message.action,
        "undo": message.undo,
        "dry_run": message.dry_run,
    }
    if delivery.notes:
        details["notes"] = list(delivery.notes)
    if delivery.overflow is not None:
        details["rate_limited"] = {
            "count": delivery.overflow.count,
            "since": format_time(delivery.overflow.since),
        }
    event["event_action"] = "trigger"
    event["client"] = CLIENT
    event["payload"] = {
        "summary": _summary(message),
        # "The unique location of the affected system": the agent, or the policy for a
        # fleet-wide event.
        "source": str(message.agent) if message.agent else message.policy,
        "severity": PAGERDUTY_SEVERITY[message.severity],
        "timestamp": format_time(message.time),
        "component": message.agent.name if message.agent else "fleet",
        "group": message.policy,
        "class": message.rule,
        "custom_details": {k: v for k, v in details.items() if v is not None},
    }
    return event
