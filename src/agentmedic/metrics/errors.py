"""The metrics layer's errors.

::

    MetricsError                  anything the metrics layer raises
    ├── MetricsUnavailable        the backend could not answer: unreachable, timed out,
    │                             overloaded (5xx, 429), refused our credentials, or sent
    │                             something that is not a Prometheus API response
    └── QueryError                the backend answered that the query is wrong (bad PromQL,
                                  execution error), or its result cannot be joined to agents

``MetricsUnavailable.reason`` is a CamelCase constant fit for a status condition's reason.
Messages name the backend by its URL without credentials and never contain a token, a
password or a header value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MetricsError", "MetricsUnavailable", "QueryError", "UnavailableReason"]


class UnavailableReason(StrEnum):
    """Why the backend could not answer; usable as a condition reason."""

    CONNECTION_FAILED = "ConnectionFailed"
    TIMEOUT = "Timeout"
    SERVER_ERROR = "ServerError"
    RATE_LIMITED = "RateLimited"
    UNAUTHORIZED = "Unauthorized"
    TLS_ERROR = "TLSError"
    INVALID_RESPONSE = "InvalidResponse"
    CREDENTIALS_UNREADABLE = "CredentialsUnreadable"


class MetricsError(Exception):
    """Base of every error the metrics layer raises."""


class MetricsUnavailable(MetricsError):  # noqa: N818 - the name states the condition
    """The backend could not answer; retrying later may help. ``reason`` says why."""

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


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
