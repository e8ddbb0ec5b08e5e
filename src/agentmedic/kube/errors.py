"""The one error type of the Kubernetes layer, translated from the client libraries.

Nothing above :mod:`agentmedic.kube` sees ``kubernetes.client.ApiException``, a
``urllib3`` error or an ``httpx`` error; callers catch these instead::

    KubeError                   anything this layer raises; ``reason`` says which kind
    ├── NotFound                404: the object, its namespace or its API (a CRD not installed)
    ├── Conflict                409: a stale resourceVersion (``Conflict``) or a create that
    │                           met an existing name (``AlreadyExists``, ``already_exists``)
    ├── Gone                    410: a watch's resourceVersion is too old (``Expired``): list again
    ├── Invalid                 400 or 422: the API refused the content; the message is its own
    ├── Forbidden               401 or 403: the credentials may not do this (check RBAC)
    └── Unavailable             429, 5xx, timeouts and connection errors after the bounded
                                retries ran out; retrying later may succeed

Every message names what was attempted ("patch Deployment agents/bot") and the API's own
explanation; it never carries a request's headers, a token or a Secret's content (what a
server echoes back is scrubbed of anything shaped like a credential).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeError",
    "KubeReason",
    "NotFound",
    "Unavailable",
    "error_for_status",
    "scrub_credentials",
    "unreachable",
]


class KubeReason(StrEnum):
    """Why a request failed, in the API server's own vocabulary where it has one."""

    NOT_FOUND = "NotFound"
    ALREADY_EXISTS = "AlreadyExists"
    CONFLICT = "Conflict"
    GONE = "Gone"
    INVALID = "Invalid"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    UNAVAILABLE = "Unavailable"
    UNKNOWN = "Unknown"


class KubeError(Exception):
    """Base of every error of :mod:`agentmedic.kube`.

    ``status`` is the HTTP status when the API answered (0 for connection errors and
    timeouts), ``reason`` the kind of failure and ``message`` the text, which never carries
    credentials.
    """

    default_reason = KubeReason.UNKNOWN

    def __init__(self, message: str, *, status: int = 0, reason: KubeReason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason or self.default_reason


class NotFound(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """The object, its namespace, or its API (a CRD that is not installed) does not exist."""

    default_reason = KubeReason.NOT_FOUND


class Conflict(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """The write lost a race (stale resourceVersion) or the object already exists."""

    default_reason = KubeReason.CONFLICT

    def __init__(self, message: str, *, status: int = 409, already_exists: bool = False) -> None:
        super().__init__(
            message,
            status=status,
            reason=KubeReason.ALREADY_EXISTS if already_exists else KubeReason.CONFLICT,
        )
        self.already_exists = already_exists


class Gone(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """A watch asked for a resourceVersion the server no longer keeps: list again."""

    default_reason = KubeReason.GONE


class Invalid(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """The API rejected the request's content; ``message`` says why, in the API's words."""

    default_reason = KubeReason.INVALID


class Forbidden(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """Authentication or authorisation failed: check the ServiceAccount's RBAC."""

    default_reason = KubeReason.FORBIDDEN


class Unavailable(KubeError):  # noqa: N818 - HTTP vocabulary reads better
    """The API was unavailable, throttled us or timed out, and the retries ran out."""

    default_reason = KubeReason.UNAVAILABLE

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, reason=KubeReason.UNAVAILABLE)
        self.retry_after = retry_after


_CREDENTIALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), r"\1 ***"),
    (
        re.compile(
            r"\b((?:authorization|api[_-]?key|token|secret|password|passwd)\"?\s*[=:]\s*\"?)"
            r"[^\s,;&\"']+",
            re.I,
        ),
        r"\1***",
    ),
    # A JSON Web Token (a ServiceAccount token) wherever it appears.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "***"),
)


def scrub_credentials(text: str) -> str:
    """Mask anything in ``text`` shaped like a credential (tokens, authorization values)."""
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def _status_object(body: Any) -> dict[str, Any] | None:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, Mapping):
        return dict(body)
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return None
        if isinstance(status, dict):
            return status
    return None


def _message(body: Any, fallback: str) -> str:
    """The ``message`` of the API's Status object, else the body's start, else ``fallback``."""
    status = _status_object(body)
    if status is not None and isinstance(status.get("message"), str):
        return str(status["message"])
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body and status is None:
        return body[:500]
    return fallback or "no message"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # an HTTP-date: fall back to our own backoff


def error_for_status(
    what: str,
    status: int,
    body: Any = None,
    *,
    headers: Any = None,
    http_reason: str = "",
) -> KubeError:
    """The error for an API answer with HTTP ``status`` and ``body`` (a Status object as
    bytes, text or dict), naming what was attempted."""
    message = scrub_credentials(f"{what}: {_message(body, http_reason)}")
    if status == 404:
        return NotFound(message, status=status)
    if status == 409:
        api_reason = (_status_object(body) or {}).get("reason", "")
        return Conflict(message, already_exists=api_reason == "AlreadyExists")
    if status == 410:
        return Gone(message, status=status)
    if status in (400, 422):
        return Invalid(message, status=status)
    if status in (401, 403):
        return Forbidden(
            f"{message} (check the RBAC of the operator's ServiceAccount)",
            status=status,
            reason=KubeReason.UNAUTHORIZED if status == 401 else KubeReason.FORBIDDEN,
        )
    if status == 429 or status >= 500:
        return Unavailable(message, status=status, retry_after=_retry_after(headers or {}))
    return KubeError(message, status=status)


def unreachable(what: str, exc: BaseException) -> Unavailable:
    """The error for a request that got no answer (connection refused or reset, timeout)."""
    return Unavailable(f"{what}: cannot reach the API server ({type(exc).__name__})")
