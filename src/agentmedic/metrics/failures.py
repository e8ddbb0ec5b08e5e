"""What a failed HTTP attempt at the Prometheus API means.

The pieces :class:`~agentmedic.metrics.prometheus.PrometheusBackend` builds its errors
from: the internal signals of one attempt (a body too large, a body cut short), the API's
own error object, ``Retry-After``, TLS failures, and the "gave up after N attempts" suffix.
Messages built here carry no URL and no header; the backend scrubs what servers echo.
"""

from __future__ import annotations

import math
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import msgspec

from agentmedic.metrics.answers import snippet
from agentmedic.metrics.errors import MetricsUnavailable

__all__ = [
    "CutShortError",
    "ErrorDetail",
    "TooLargeError",
    "cause",
    "error_detail",
    "fmt_ts",
    "is_tls_error",
    "retry_after",
    "with_attempts",
]

MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error answer read for its message."""


class TooLargeError(Exception):
    """The answer is larger than ``max_response_bytes``; it was not read further."""


class CutShortError(Exception):
    """The connection ended before the whole body arrived."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


def with_attempts(
    error: MetricsUnavailable, attempts: int, elapsed: float, deadline: float | None = None
) -> MetricsUnavailable:
    """``error`` saying how many attempts were made, and in how long."""
    budget = f", deadline {deadline:g}s" if deadline is not None else ""
    return MetricsUnavailable(
        error.reason,
        f"{error.message} (gave up after {attempts} attempts in {elapsed:.2f}s{budget})",
    )


def fmt_ts(seconds: float) -> str:
    """Seconds as the API takes them: milliseconds at most, no trailing zeros."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def is_tls_error(exc: BaseException) -> bool:
    """Whether a transport error is a TLS failure (anywhere in its chain)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__


def cause(exc: BaseException) -> str:
    """A transport error in a few words."""
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


class _ErrorWire(msgspec.Struct):
    status: str
    errorType: str | None = None  # noqa: N815 (the API's own field name)
    error: str | None = None


_ERROR_DECODER = msgspec.json.Decoder(_ErrorWire)


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What an error answer says."""

    text: str
    error_type: str | None
    prometheus: bool
    """The body is the API's own error object (``status: error``)."""


def error_detail(body: bytes) -> ErrorDetail:
    """The message of an error answer: the API's own error object, or the body's start."""
    try:
        wire = _ERROR_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ErrorDetail(snippet(body), None, False)
    if wire.status != "error" or not wire.error:
        return ErrorDetail(snippet(body), None, False)
    text = wire.error if len(wire.error) <= 1000 else wire.error[:1000] + "..."
    return ErrorDetail(text, wire.errorType, True)


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds from now (a number or an HTTP date), if usable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
