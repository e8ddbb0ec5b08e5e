"""Telling people: Slack, PagerDuty, signed webhooks and Alertmanager, without flooding them.

The operator turns each episode transition into a channel-neutral :class:`Message`,
resolves the policy's channels with their Secrets (:func:`resolve_channel`), and hands
both to a long-lived :class:`Notifier`::

    async with Notifier() as notifier:
        channels = [resolve_channel(c, read_secret) for c in spec.notifications.channels]
        report = await notifier.notify(message, channels)
        state = notifier.export_state()        # persist; notifier.import_state(state) on start

The notifier delivers to every channel concurrently with retries and a timeout, drops
repeats until ``renotifyAfter``, sends a resolve only where the firing message went,
keeps each channel under ``maxPerHour`` (and says how many it held back), lets a
still-firing episode through to Alertmanager again every ``repostInterval`` (past the rate
limit: Alertmanager forgets an alert that is not posted again), and reports per channel
what happened (:class:`DeliveryReport`). Secrets never reach logs, reports
or exceptions.

Exceptions::

    NotifyError
    ├── ChannelConfigError   a channel's Secret key is missing, empty or not a URL
    └── DeliveryError        one message not delivered to one channel (reported, not raised)

This package may import :mod:`agentmedic.api` and :mod:`agentmedic.engine` only.
"""

from agentmedic.notify.alertmanager import alertmanager_alerts
from agentmedic.notify.channels import ChannelKind, ResolvedChannel, SecretLookup, resolve_channel
from agentmedic.notify.dispatcher import (
    Clock,
    Notifier,
    OutgoingRequest,
    RetryPolicy,
    Sleep,
    build_request,
)
from agentmedic.notify.errors import ChannelConfigError, DeliveryError, NotifyError
from agentmedic.notify.ledger import DeliveryLedger
from agentmedic.notify.message import (
    Delivery,
    Evidence,
    Message,
    MessageState,
    Overflow,
    severity_at_least,
)
from agentmedic.notify.pagerduty import PAGERDUTY_SEVERITY, pagerduty_event
from agentmedic.notify.report import ChannelResult, DeliveryReport, Outcome, Reason
from agentmedic.notify.secrets import Secret
from agentmedic.notify.slack import slack_payload
from agentmedic.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_body, webhook_body

__all__ = [
    "PAGERDUTY_SEVERITY",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ChannelConfigError",
    "ChannelKind",
    "ChannelResult",
    "Clock",
    "Delivery",
    "DeliveryError",
    "DeliveryLedger",
    "DeliveryReport",
    "Evidence",
    "Message",
    "MessageState",
    "Notifier",
    "NotifyError",
    "Outcome",
    "OutgoingRequest",
    "Overflow",
    "Reason",
    "ResolvedChannel",
    "RetryPolicy",
    "Secret",
    "SecretLookup",
    "Sleep",
    "alertmanager_alerts",
    "build_request",
    "pagerduty_event",
    "resolve_channel",
    "severity_at_least",
    "sign_body",
    "slack_payload",
    "webhook_body",
]
