"""The metrics layer's errors.

::

    MetricsError                  anything the metrics layer raises; ``reason`` says why
    ├── MetricsUnavailable        the backend gave no answer that can be acted on:
    │                             unreachable, timed out, overloaded (5xx, 429), refused
    │                             our credentials, redirected, or sent something that is
    │                             not a well-formed Prometheus API answer
    └── QueryError                the backend answered that the query is wrong (bad PromQL,
                                  execution error), or its result cannot be joined to agents

Both mean the same to the operator: no evidence, so no action (docs/architecture.md, "The
evidence rule and the failure stance"). ``reason`` is a CamelCase constant fit for a status
condition's reason. Messages name the backend by its host, never by its full URL (whose
path may carry a tenant) and never contain a token, a password or a header value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "QUERY_ERROR_REASON",
    "MetricsError",
    "MetricsUnavailable",
    "QueryError",
    "UnavailableReason",
]


class UnavailableReason(StrEnum):
    """Why no usable answer came; usable as a condition reason."""

    UNREACHABLE = "Unreachable"
    """No connection, or it broke before an answer began (refused, reset, DNS)."""
    CONNECTION_FAILED = "Unreachable"
    """The former name of :attr:`UNREACHABLE`."""
    TIMEOUT = "Timeout"
    """No complete answer within the request's (or the cycle's) deadline; HTTP 408."""
    SERVER_ERROR = "ServerError"
    """HTTP 5xx."""
    RATE_LIMITED = "RateLimited"
    """HTTP 429."""
    UNAUTHORIZED = "Unauthorized"
    """HTTP 401 or 403."""
    NOT_FOUND = "NotFound"
    """HTTP 404: the url or its path prefix is wrong."""
    REDIRECTED = "Redirected"
    """HTTP 3xx: redirects are never followed (they would carry credentials elsewhere)."""
    CLIENT_ERROR = "ClientError"
    """Any other HTTP 4xx that is not Prometheus rejecting the query."""
    TLS_ERROR = "TLSError"
    """The TLS handshake failed (unknown CA, wrong name)."""
    INVALID_RESPONSE = "InvalidResponse"
    """A 200 that is not a well-formed successful answer: not JSON, the wrong shape,
    ``status: error``, a value that is not a number, a body cut short."""
    TOO_LARGE = "TooLarge"
    """The answer is larger than ``max_response_bytes``."""
    NON_FINITE_VALUE = "NonFiniteValue"
    """A well-formed answer gave an agent +Inf or -Inf, which no metric legitimately has."""
    CREDENTIALS_UNREADABLE = "CredentialsUnreadable"
    """The bearer-token file cannot be read."""


QUERY_ERROR_REASON = "QueryError"
"""The reason of every :class:`QueryError`."""


class MetricsError(Exception):
    """Base of every error the metrics layer raises."""

    message: str

    @property
    def reason(self) -> str:
        """A CamelCase constant naming the fault."""
        return QUERY_ERROR_REASON


class MetricsUnavailable(MetricsError):  # noqa: N818 - the name states the condition
    """No usable answer came; retrying later may help. ``reason`` says why."""

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self._reason = reason
        self.message = message

    @property
    def reason(self) -> UnavailableReason:
        return self._reason


class QueryError(MetricsError):
    """The backend rejected the query, or its result has the wrong shape.

    ``message`` is Prometheus' own message where there is one; ``error_type`` its
    ``errorType`` (``bad_data``, ``execution``, ...); ``query`` the PromQL sent.
    """

    def __init__(
        self, message: str, *, error_type: str | None = None, query: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.query = query
