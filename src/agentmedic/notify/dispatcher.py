"""Delivering a :class:`Message` to its channels: :class:`Notifier`.

For each channel, concurrently: ask the :class:`~agentmedic.notify.ledger.DeliveryLedger`
(severity, dedup, resolve-after-firing, rate limit), render the channel's request, POST it
with bounded retries, and record the outcome. A channel that fails or hangs is cut off by
the timeout and reported; it never delays the others beyond that, never raises to the
caller and never blocks an action. Retries follow the vendors' guidance: PagerDuty's
Events API v2 says to retry 429, 5xx and network errors and not other 4xx
(developer.pagerduty.com, events-API-v2 "Response Codes & Retry Logic"); Slack's incoming
webhooks answer 4xx with a reason (invalid_payload, channel_not_found, ...) that a retry
would not change; Alertmanager answers 400 to an alert it cannot accept and 5xx when it
is unavailable (its v2 API's postAlerts responses).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from agentmedic import __version__
from agentmedic.notify.alertmanager import alertmanager_alerts
from agentmedic.notify.channels import ChannelKind, ResolvedChannel
from agentmedic.notify.errors import DeliveryError
from agentmedic.notify.ledger import Admission, DeliveryLedger, Suppression
from agentmedic.notify.message import Delivery, Message
from agentmedic.notify.pagerduty import pagerduty_event
from agentmedic.notify.report import ChannelResult, DeliveryReport, Outcome, Reason
from agentmedic.notify.secrets import guard_http_logs, redact
from agentmedic.notify.slack import slack_payload
from agentmedic.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    encode_body,
    sign_body,
    webhook_body,
)

__all__ = ["Clock", "Notifier", "OutgoingRequest", "RetryPolicy", "Sleep", "build_request"]

logger = logging.getLogger("agentmedic.notify")

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits this many seconds (``asyncio.sleep``; tests pass one that records and returns)."""

# A receiver's error body is quoted in reports up to this length (Slack's are one word).
_MAX_BODY_IN_REASON: Final = 200
_USER_AGENT: Final = f"agentmedic/{__version__}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a 429, a 5xx or a network error."""

    attempts: int = 4
    """Requests per message and channel, the first included."""
    initial_backoff: float = 1.0
    """Seconds before the first retry; doubled for each further one."""
    max_backoff: float = 30.0
    """Upper bound of one wait between attempts."""
    max_retry_after: float = 120.0
    """A receiver's Retry-After is honoured up to this many seconds."""

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** (retry - 1)))


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """An HTTP POST ready to send. Contains secrets: never log it."""

    url: str
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"OutgoingRequest(url='***', {len(self.content)} bytes)"


def build_request(
    channel: ResolvedChannel, message: Message, delivery: Delivery
) -> OutgoingRequest:
    """Render ``message`` for ``channel``: URL, exact body bytes and headers (signed if keyed)."""
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
    if channel.kind is ChannelKind.ALERTMANAGER:
        alerts = alertmanager_alerts(
            message,
            delivery,
            static_labels=channel.labels,
            generator_url=channel.generator_url,
            repost_interval=channel.repost_interval or channel.renotify_after,
        )
        headers.update(channel.headers)
        if channel.authorization is not None:
            headers["Authorization"] = channel.authorization.reveal()
        return OutgoingRequest(channel.url.reveal(), encode_body(alerts), headers)
    document: dict[str, Any]
    if channel.kind is ChannelKind.SLACK:
        document = slack_payload(message, delivery)
    elif channel.kind is ChannelKind.PAGERDUTY:
        assert channel.routing_key is not None  # ResolvedChannel guarantees it
        document = pagerduty_event(message, delivery, channel.routing_key.reveal())
    else:
        document = webhook_body(message, delivery)
        headers[TIMESTAMP_HEADER] = str(int(delivery.sent_at.timestamp()))
        # The same reserved send gets the same id when another operator repeats it after a
        # crash, so a receiver can drop the repeat.
        headers[DELIVERY_HEADER] = str(
            uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"{channel.name}|{message.episode}|{message.state.value}|"
                f"{delivery.sent_at.timestamp()}",
            )
        )
    body = encode_body(document)
    if channel.kind is ChannelKind.WEBHOOK and channel.hmac_key is not None:
        headers[SIGNATURE_HEADER] = sign_body(body, channel.hmac_key.reveal())
    return OutgoingRequest(channel.url.reveal(), body, headers)


@dataclass(slots=True)
class _Progress:
    attempts: int = 0
    status: int | None = None


class Notifier:
    """Sends messages to channels: concurrently, with retries, deduplicated and rate-limited.

    One notifier serves every policy (its state is keyed by policy and channel). Use it as
    an async context manager, or call :meth:`aclose`, to close the HTTP client it made.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = _utcnow,
        sleep: Sleep = asyncio.sleep,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        request_timeout: float = 10.0,
        ledger: DeliveryLedger | None = None,
    ) -> None:
        """``timeout`` bounds one channel's whole delivery, retries included;
        ``request_timeout`` one HTTP request (used only for the client made here)."""
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout), follow_redirects=False
        )
        self._clock = clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._ledger = ledger or DeliveryLedger()

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this notifier created it."""
        if self._own_client:
            await self._client.aclose()

    # ------------------------------------------------------------------ state

    @property
    def ledger(self) -> DeliveryLedger:
        """The dedup and rate-limit state."""
        return self._ledger

    def export_state(self) -> dict[str, Any]:
        """The dedup and rate-limit state as a small JSON-ready dict, to persist."""
        return self._ledger.to_json(self._clock())

    def import_state(self, data: Mapping[str, Any]) -> None:
        """Replace the state with one from :meth:`export_state` (``ValueError`` if invalid)."""
        self._ledger = DeliveryLedger.from_json(data)

    # ------------------------------------------------------------------ delivery

    async def notify(self, message: Message, channels: Sequence[ResolvedChannel]) -> DeliveryReport:
        """Deliver ``message`` to each of ``channels``; never raises for a channel's failure."""
        for channel in channels:
            guard_http_logs(channel.secret_fragments())
        outcomes = await asyncio.gather(
            *(self._deliver(c, message) for c in channels), return_exceptions=True
        )
        results = []
        for channel, outcome in zip(channels, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and interpreter exits are not ours to hide
                # _deliver reports its own failures; this is a bug outside its guard.
                detail = redact(f"{type(outcome).__name__}: {outcome}", channel.secret_fragments())
                logger.error("notifying channel %s failed unexpectedly: %s", channel.name, detail)
                outcome = ChannelResult(
                    channel.name,
                    Outcome.FAILED,
                    Reason.INTERNAL_ERROR,
                    detail[:_MAX_BODY_IN_REASON],
                )
            results.append(outcome)
        return DeliveryReport(message.episode, message.state, tuple(results))

    def reserve(
        self, message: Message, channels: Sequence[ResolvedChannel]
    ) -> tuple[list[tuple[ResolvedChannel, Admission]], list[ChannelResult]]:
        """The first half of :meth:`notify`, for a caller that persists what it is about to
        send before sending it: the sends the ledger admits (reserved in the ledger; finish
        each with :meth:`send_reserved`, or undo it with :meth:`settle`), and a result for
        each channel that is not to get the message."""
        admitted: list[tuple[ResolvedChannel, Admission]] = []
        suppressed: list[ChannelResult] = []
        now = self._clock()
        for channel in channels:
            decision = self._ledger.admit(channel, message, now)
            if isinstance(decision, Suppression):
                logger.debug(
                    "notification for episode %s (%s) not sent to channel %s: %s",
                    message.episode,
                    message.state.value,
                    channel.name,
                    decision.detail,
                )
                suppressed.append(
                    ChannelResult(
                        channel.name, Outcome.SUPPRESSED, decision.reason, decision.detail
                    )
                )
            else:
                admitted.append((channel, decision))
        return admitted, suppressed

    def settle(self, admission: Admission, *, delivered: bool) -> None:
        """Confirm a reserved send, or undo it (see :meth:`DeliveryLedger.settle`)."""
        self._ledger.settle(admission, delivered=delivered)

    async def send_reserved(
        self, channel: ResolvedChannel, message: Message, admission: Admission
    ) -> ChannelResult:
        """Send a message :meth:`reserve` admitted (perhaps in another process, whose
        ledger this one imported) and settle it; never raises for the channel's failure."""
        guard_http_logs(channel.secret_fragments())
        delivered = False
        try:
            result = await self._send(channel, message, admission)
            delivered = result.outcome is Outcome.SENT
            return result
        finally:
            # Also on cancellation: an undelivered message must stay deliverable.
            self._ledger.settle(admission, delivered=delivered)

    async def _deliver(self, channel: ResolvedChannel, message: Message) -> ChannelResult:
        admitted, suppressed = self.reserve(message, [channel])
        if suppressed:
            return suppressed[0]
        return await self.send_reserved(channel, message, admitted[0][1])

    async def _send(
        self, channel: ResolvedChannel, message: Message, admission: Admission
    ) -> ChannelResult:
        progress = _Progress()
        secrets = list(channel.secret_fragments())
        try:
            request = build_request(channel, message, admission.delivery)
            async with asyncio.timeout(self._timeout):
                await self._post(channel, request, progress)
        except TimeoutError:
            result = ChannelResult(
                channel.name,
                Outcome.FAILED,
                Reason.TIMED_OUT,
                f"no success within {self._timeout:g}s",
                progress.attempts,
                progress.status,
            )
        except DeliveryError as exc:
            if exc.retryable:
                reason = Reason.RETRIES_EXHAUSTED
            elif exc.status is not None:
                reason = Reason.REJECTED
            else:
                reason = Reason.INVALID_REQUEST
            result = ChannelResult(
                channel.name,
                Outcome.FAILED,
                reason,
                redact(exc.reason, secrets),
                progress.attempts,
                exc.status,
            )
        except Exception as exc:
            # A bug of ours must not take the other channels or the caller down. Only the
            # type and a redacted message are logged: tracebacks can quote URLs.
            result = ChannelResult(
                channel.name,
                Outcome.FAILED,
                Reason.INTERNAL_ERROR,
                redact(f"{type(exc).__name__}: {exc}", secrets)[:_MAX_BODY_IN_REASON],
                progress.attempts,
                progress.status,
            )
        else:
            logger.info(
                "notified channel %s (%s): episode %s %s",
                channel.name,
                channel.kind.value,
                message.episode,
                message.state.value,
            )
            return ChannelResult(
                channel.name,
                Outcome.SENT,
                Reason.DELIVERED,
                "reminder" if admission.delivery.repeat else "",
                progress.attempts,
                progress.status,
            )
        logger.warning(
            "notification for episode %s (%s) to channel %s (%s) failed after %d attempt(s): "
            "%s: %s",
            message.episode,
            message.state.value,
            channel.name,
            channel.kind.value,
            result.attempts,
            result.reason.value,
            result.detail,
        )
        return result

    async def _post(
        self, channel: ResolvedChannel, request: OutgoingRequest, progress: _Progress
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            progress.attempts = attempt
            wait: float | None = None
            try:
                response = await self._client.post(
                    request.url, content=request.content, headers=dict(request.headers)
                )
            except httpx.InvalidURL:
                raise DeliveryError(channel.name, "the channel's URL is not usable") from None
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise DeliveryError(
                    channel.name, f"the request cannot be sent ({type(exc).__name__})"
                ) from None
            except httpx.TransportError as exc:
                # Connection refused or reset, timeouts, a broken response: all worth a retry.
                problem, status = f"network error ({type(exc).__name__})", None
            else:
                progress.status = status = response.status_code
                if response.is_success:
                    return
                quoted = response.text[:_MAX_BODY_IN_REASON].strip()
                problem = f"HTTP {status}" + (f": {quoted}" if quoted else "")
                if status != 429 and status < 500:
                    raise DeliveryError(channel.name, problem, status=status)
                wait = self._retry_after(response)
            if attempt == policy.attempts:
                raise DeliveryError(
                    channel.name,
                    f"{problem} (gave up after {attempt} attempts)",
                    status=status,
                    retryable=True,
                )
            delay = wait if wait is not None else policy.backoff(attempt)
            if loop.time() + delay > deadline:
                raise DeliveryError(
                    channel.name,
                    f"{problem}; the next attempt ({delay:g}s later) would pass the "
                    f"{self._timeout:g}s delivery timeout",
                    status=status,
                    retryable=True,
                )
            logger.debug(
                "channel %s: attempt %d failed (%s); retrying in %gs",
                channel.name,
                attempt,
                problem,
                delay,
            )
            await self._sleep(delay)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped."""
        value = response.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        seconds: float | None
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = max(0.0, (when - self._clock()).total_seconds())
        return min(seconds, self._retry.max_retry_after)
