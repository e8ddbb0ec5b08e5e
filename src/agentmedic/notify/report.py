"""What happened to a message on each channel: :class:`DeliveryReport`.

Every channel ends in one :class:`Outcome` with a CamelCase :class:`Reason` and a
sentence for people. Reports contain no secret: channel names, HTTP statuses and
redacted reasons only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentmedic.notify.message import MessageState

__all__ = ["ChannelResult", "DeliveryReport", "Outcome", "Reason"]


class Outcome(StrEnum):
    """The fate of a message on one channel."""

    SENT = "Sent"
    SUPPRESSED = "Suppressed"
    FAILED = "Failed"


class Reason(StrEnum):
    """Why a channel's outcome is what it is."""

    DELIVERED = "Delivered"
    """The receiver accepted the message (2xx)."""
    DUPLICATE = "Duplicate"
    """This channel was already told about this episode in this state, within renotifyAfter."""
    BELOW_MIN_SEVERITY = "BelowMinSeverity"
    """The message's severity is below the channel's minSeverity."""
    NOT_SENT_AS_FIRING = "NotSentAsFiring"
    """A resolve for an episode this channel was never told was firing."""
    RATE_LIMITED = "RateLimited"
    """The channel already got maxPerHour firing messages in the last hour; counted and
    summarised in the next message it gets."""
    REJECTED = "Rejected"
    """The receiver refused the message (a 4xx other than 429); retrying would not help."""
    RETRIES_EXHAUSTED = "RetriesExhausted"
    """Every attempt met a 429, a 5xx or a network error."""
    TIMED_OUT = "TimedOut"
    """The channel did not finish within the delivery timeout."""
    INVALID_REQUEST = "InvalidRequest"
    """The request could not be built or sent at all (e.g. an unusable URL)."""
    INTERNAL_ERROR = "InternalError"
    """An unexpected error in agentmedic while delivering; see the operator's log."""


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's outcome for one message."""

    channel: str
    """The channel's name."""
    outcome: Outcome
    """Sent, Suppressed or Failed."""
    reason: Reason
    """Why, as a CamelCase constant."""
    detail: str = ""
    """Why, for people; never contains a secret."""
    attempts: int = 0
    """HTTP requests made (0 when suppressed)."""
    status: int | None = None
    """The last HTTP status received, if any."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for status, Events and logs."""
        out: dict[str, Any] = {
            "channel": self.channel,
            "outcome": self.outcome.value,
            "reason": self.reason.value,
            "attempts": self.attempts,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.status is not None:
            out["status"] = self.status
        return out


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Per channel, what happened to one message. A failure here never raised."""

    episode: str
    """The message's episode key."""
    state: MessageState
    """The message's state."""
    results: tuple[ChannelResult, ...]
    """One result per channel asked for, in the order asked."""

    def _names(self, outcome: Outcome) -> tuple[str, ...]:
        return tuple(r.channel for r in self.results if r.outcome is outcome)

    @property
    def sent(self) -> tuple[str, ...]:
        """Channels that accepted the message."""
        return self._names(Outcome.SENT)

    @property
    def suppressed(self) -> tuple[str, ...]:
        """Channels deliberately not sent to (dedup, severity, rate limit, never fired)."""
        return self._names(Outcome.SUPPRESSED)

    @property
    def failed(self) -> tuple[str, ...]:
        """Channels the message could not be delivered to."""
        return self._names(Outcome.FAILED)

    @property
    def ok(self) -> bool:
        """True when no channel failed."""
        return not self.failed

    def result(self, channel: str) -> ChannelResult:
        """The result for one channel; ``KeyError`` if it was not part of the delivery."""
        for r in self.results:
            if r.channel == channel:
                return r
        raise KeyError(channel)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for status, Events and logs."""
        return {
            "episode": self.episode,
            "state": self.state.value,
            "results": [r.to_dict() for r in self.results],
        }
