"""The API server's errors, as the emulator raises and serves them.

:class:`ApiError` carries the HTTP code, the reason and the details of a Kubernetes
``Status``; :func:`not_found`, :func:`conflict` and :func:`invalid` word the common ones as
the API server does.
"""

from __future__ import annotations

from typing import Any

from agentmedic_sandbox._emulator_resources import (
    Resource,
)
from agentmedic_sandbox._emulator_schema import Cause

__all__ = ["ApiError", "Obj", "conflict", "details", "invalid", "not_found"]

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the API server reports as a ``Status`` object with an HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        """The ``Status`` object the API server sends for this error."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def details(res: Resource, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "group": res.group, "kind": res.plural, **extra}


def not_found(res: Resource, name: str) -> ApiError:
    """404 for a named object, worded as the API server does."""
    return ApiError(404, f'{res.group_resource} "{name}" not found', details=details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    """409 for a write with a stale resourceVersion."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {res.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        reason="Conflict",
        details=details(res, name),
    )


def invalid(res: Resource, name: str, causes: list[Cause]) -> ApiError:
    """422 naming every invalid field."""
    text = (
        causes[0].message if len(causes) == 1 else "[" + ", ".join(c.message for c in causes) + "]"
    )
    kind_group = f"{res.kind}.{res.group}" if res.group else res.kind
    return ApiError(
        422,
        f'{kind_group} "{name}" is invalid: {text}',
        reason="Invalid",
        details={
            "name": name,
            **({"group": res.group} if res.group else {}),  # omitempty, as on the wire
            "kind": res.kind,
            "causes": [c.as_dict() for c in causes],
        },
    )
