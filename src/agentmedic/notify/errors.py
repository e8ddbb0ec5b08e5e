"""The notify layer's exceptions.

::

    NotifyError
    ├── ChannelConfigError   a channel cannot be built: a Secret key is missing, empty or not a URL
    └── DeliveryError        one message could not be delivered to one channel

No message of these exceptions contains a secret value: a :class:`ChannelConfigError`
names the Secret and key it could not use, never what it read, and a
:class:`DeliveryError` carries the channel name, an HTTP status and a redacted reason.
:class:`~agentmedic.notify.Notifier` never raises :class:`DeliveryError` to its caller;
it reports it in the :class:`~agentmedic.notify.DeliveryReport`.
"""

from __future__ import annotations

__all__ = ["ChannelConfigError", "DeliveryError", "NotifyError"]


class NotifyError(Exception):
    """Base of every exception the notify layer raises."""


class ChannelConfigError(NotifyError):
    """A notification channel cannot be used as configured (names the Secret key, not its value)."""

    def __init__(self, channel: str, message: str) -> None:
        super().__init__(f"channel {channel}: {message}")
        self.channel = channel


class DeliveryError(NotifyError):
    """A message was not delivered to a channel.

    ``retryable`` tells whether trying again later may succeed (429, 5xx, network
    errors) or not (any other 4xx, an invalid URL).
    """

    def __init__(
        self, channel: str, reason: str, *, status: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(f"channel {channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.status = status
        self.retryable = retryable
