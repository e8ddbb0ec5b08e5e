"""Kubernetes Events for every action, restore and refusal, on the workload and on the policy.

Reasons are CamelCase constants; a dry run uses the ``Would…`` reason and a message that
starts with "would". Messages pass through :func:`scrub` so that nothing shaped like a
credential (a webhook URL, a bearer token, an API key) ever reaches an Event, whatever a
rule's evidence or an API error happened to contain.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from agentmedic.actions.errors import ActionError
from agentmedic.actions.record import format_time
from agentmedic.kube import Kube

__all__ = [
    "COMPONENT",
    "EventReason",
    "emit_event",
    "scrub",
]

log = logging.getLogger(__name__)

COMPONENT = "agentmedic"
MAX_MESSAGE = 1024  # the API server truncates longer messages; do it ourselves, visibly


class EventReason:
    """The reasons agentmedic writes; ``Would…`` ones are dry runs."""

    SCALED_TO_ZERO = "ScaledToZero"
    WOULD_SCALE_TO_ZERO = "WouldScaleToZero"
    MODEL_SWITCHED = "ModelSwitched"
    WOULD_SWITCH_MODEL = "WouldSwitchModel"
    PROMPT_JOB_STARTED = "PromptJobStarted"
    WOULD_START_PROMPT_JOB = "WouldStartPromptJob"
    PROMPT_ROLLED_OUT = "PromptRolledOut"
    WOULD_ROLL_OUT_PROMPT = "WouldRollOutPrompt"
    PROMPT_JOB_NOT_ROLLED_OUT = "PromptJobNotRolledOut"
    RESTORED = "Restored"
    WOULD_RESTORE = "WouldRestore"
    REFUSED = "ActionRefused"
    WORKLOAD_NOT_FOUND = "WorkloadNotFound"
    FAILED = "ActionFailed"


_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # URLs carry webhook secrets in their path or query (Slack, Teams, signed URLs): keep
    # only scheme and host.
    (re.compile(r"\b(https?://)([^/\s:@]+(?::[^@\s/]*)?@)?([^/\s?#]+)[^\s]*", re.I), r"\1\3/…"),
    (re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), r"\1 ***"),
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}"), "***"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "***"),
    (
        re.compile(
            r"\b((?:api[_-]?key|token|secret|password|passwd|routing[_-]?key)\s*[=:]\s*)"
            r"[^\s,;&\"']+",
            re.I,
        ),
        r"\1***",
    ),
)


def scrub(text: str) -> str:
    """Mask anything that looks like a credential; clip to the Event message limit."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


def _hostname() -> str:
    try:
        return socket.gethostname()[:128]
    except OSError:  # pragma: no cover - gethostname does not fail on Linux
        return COMPONENT


def emit_event(
    kube: Kube,
    involved: dict[str, str],
    reason: str,
    message: str,
    type: Literal["Normal", "Warning"] = "Normal",
    action: str = "",
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any] | None:
    """Create a core/v1 Event about ``involved`` (an object reference dict); never raise.

    An Event is a courtesy: failing to write one must not fail the action it reports, so
    errors are logged (without the message, which may quote evidence) and swallowed.
    Returns the created Event, or None when it could not be written. The Event of a
    cluster-scoped object (no namespace) goes to ``default``, as Kubernetes' own recorders
    put them and where ``kubectl describe`` looks for them.
    """
    namespace = involved.get("namespace") or "default"
    stamp = format_time(now())
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            # generateName keeps Events of one object apart without a client-side counter.
            "generateName": f"{involved.get('name', 'agentmedic')[:200]}.",
            "namespace": namespace,
        },
        "involvedObject": dict(involved),
        "reason": reason,
        "message": scrub(message),
        "type": type,
        "action": action or reason,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": _hostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        return kube.create_event(namespace, body)
    except ActionError as exc:
        log.warning(
            "could not record Event %s on %s %s/%s: %s",
            reason,
            involved.get("kind"),
            namespace,
            involved.get("name"),
            exc.status or "connection error",
        )
        return None
