"""Alertmanager's v2 API: a :class:`Message` as an alert (``POST <url>/api/v2/alerts``).

The body is a JSON list of ``postableAlert`` (prometheus/alertmanager, api/v2/openapi.yaml):
``labels`` (required), ``annotations``, ``startsAt``, ``endsAt`` and ``generatorURL``.
Alertmanager identifies an alert by its labels, so the labels are what stays the same for
the whole episode and what routes and silences match on:

- ``alertname``: ``AgentmedicRule`` for a rule on an agent, ``AgentmedicBudget`` for a
  budget stage (``budget.soft``, ``budget.hard``), ``AgentmedicNoData`` for missing data,
  ``AgentmedicMetricsUnavailable`` when the metrics backend gives no usable answer, and
  ``AgentmedicOutage`` for a rule breached fleet-wide (a systemic outage, no agent);
- ``agent`` (absent for a fleet-wide message), ``namespace`` (the agent's, else the
  policy's), ``rule``, ``severity`` (agentmedic's: critical, high, medium, low, info),
  ``policy`` (the AgentPolicy's name); then the channel's static labels.

Annotations carry what may change while the alert is open: ``summary``, ``evidence`` (one
condition per line), ``action``, ``undo`` (the command that undoes the action), ``episode``.

Timing. ``startsAt`` is the breach start (read from the episode key). A firing alert is
sent with ``endsAt`` four repost intervals ahead and posted again every repost interval
while its episode lasts: Alertmanager uses a given ``endsAt`` and applies its
``resolve_timeout`` only to alerts without one, so the alert stays active exactly as long
as agentmedic keeps saying so, and expires by itself four intervals after an operator that
stopped saying so (as Prometheus does with its own alerts). A resolve is the same alert
with ``endsAt`` the time the episode ended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from agentmedic.notify.message import Delivery, Message, MessageState, format_time

__all__ = [
    "ALERTS_PATH",
    "VALIDITY_INTERVALS",
    "alert_name",
    "alertmanager_alerts",
    "alerts_url",
    "episode_start",
]

ALERTS_PATH: Final = "/api/v2/alerts"
VALIDITY_INTERVALS: Final = 4
"""A firing alert's endsAt is this many repost intervals after it is sent (Prometheus sends
its alerts valid for four times its resend delay)."""

# Alertmanager refuses nothing for length, but receivers (Slack, e-mail) truncate: keep
# an annotation to what a person reads.
_MAX_ANNOTATION: Final = 4096


def alerts_url(base: str) -> str:
    """``<base>/api/v2/alerts``, keeping a path prefix (``--web.route-prefix``, Mimir's
    ``/alertmanager``)."""
    return base.rstrip("/") + ALERTS_PATH


def alert_name(message: Message) -> str:
    """The ``alertname`` label: the kind of episode (see the module's docstring)."""
    if message.rule.startswith("budget."):
        return "AgentmedicBudget"
    if message.rule == "noData":
        return "AgentmedicNoData"
    if message.rule == "metricsUnavailable":
        return "AgentmedicMetricsUnavailable"
    if message.agent is None:
        return "AgentmedicOutage"
    return "AgentmedicRule"


def episode_start(episode: str) -> datetime | None:
    """The breach start an episode key ends with (``...:<unix seconds>``), if it does."""
    tail = episode.rsplit(":", 1)[-1]
    if not tail.isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(tail), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ANNOTATION else text[: _MAX_ANNOTATION - 1] + "…"


def alertmanager_alerts(
    message: Message,
    delivery: Delivery,
    *,
    static_labels: Mapping[str, str] | None = None,
    generator_url: str | None = None,
    repost_interval: timedelta = timedelta(minutes=1),
) -> list[dict[str, Any]]:
    """The JSON list to POST to ``/api/v2/alerts`` for ``message``: one alert."""
    labels: dict[str, str] = dict(static_labels or {})
    labels.update(
        {
            "alertname": alert_name(message),
            "namespace": (
                message.agent.namespace if message.agent is not None else message.policy_namespace
            ),
            "rule": message.rule,
            "severity": message.severity.value,
            "policy": message.policy_name,
        }
    )
    if message.agent is not None:
        labels["agent"] = message.agent.name

    summary = f"[DRY RUN] {message.summary}" if message.dry_run else message.summary
    annotations = {"summary": summary, "episode": message.episode}
    if message.evidence:
        annotations["evidence"] = "\n".join(str(e) for e in message.evidence)
    if message.action:
        annotations["action"] = message.action
    if message.undo:
        annotations["undo"] = message.undo
    if delivery.overflow is not None:
        annotations["rate_limited"] = str(delivery.overflow)

    started = episode_start(message.episode)
    if started is None or started > message.time:
        started = message.time
    if message.state is MessageState.RESOLVED:
        ends = message.time
    else:
        seconds = repost_interval.total_seconds()
        validity = VALIDITY_INTERVALS * (seconds if math.isfinite(seconds) else 60.0)
        ends = delivery.sent_at + timedelta(seconds=validity)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {k: _clip(v) for k, v in annotations.items()},
        "startsAt": format_time(started),
        "endsAt": format_time(ends),
    }
    if generator_url:
        alert["generatorURL"] = generator_url
    return [alert]
