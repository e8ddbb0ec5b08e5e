"""The errors the actions layer raises, translated from the ``kubernetes`` client at the boundary.

Nothing above :mod:`agentmedic.actions.kube` sees ``kubernetes.client.ApiException`` or a
``urllib3`` error; callers catch these instead::

    ActionError                 anything this package raises
    ├── NotFound                404: the object (or its kind, e.g. KEDA not installed) is absent
    ├── Conflict                409: a stale resourceVersion, or AlreadyExists on create
    │                           (``already_exists`` tells them apart)
    ├── Invalid                 422 (or 400): the API refused the content; ``message`` is the
    │                           API's own explanation
    ├── Forbidden               401/403: the operator's credentials may not do this
    ├── CorruptRecordError           an ``agentmedic.io/*`` record that is not valid JSON, has the
    │                           wrong shape or implausible values; restore refuses to use it
    └── Transient               429, 5xx, timeouts and connection errors, after the bounded
                                retries ran out; retrying later may succeed

The operator turns :class:`Transient` and an exhausted :class:`Conflict` into a retry on the
next cycle; :class:`Invalid` and :class:`Forbidden` become failed actions with a Warning Event.
"""

from __future__ import annotations

__all__ = [
    "ActionError",
    "Conflict",
    "CorruptRecordError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Transient",
]


class ActionError(Exception):
    """Base of every error of :mod:`agentmedic.actions`.

    ``status`` is the HTTP status when the API answered (0 for connection errors) and
    ``message`` the API's explanation or ours; neither ever carries a Secret's content.
    """

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(ActionError):  # noqa: N818 - HTTP vocabulary reads better
    """The object, its namespace, or its API (a CRD that is not installed) does not exist."""


class Conflict(ActionError):  # noqa: N818 - HTTP vocabulary reads better
    """The write lost a race (stale resourceVersion) or the object already exists."""

    def __init__(self, message: str, *, status: int = 409, already_exists: bool = False) -> None:
        super().__init__(message, status=status)
        self.already_exists = already_exists


class Invalid(ActionError):  # noqa: N818 - HTTP vocabulary reads better
    """The API rejected the request's content; ``message`` says why, in the API's words."""


class Forbidden(ActionError):  # noqa: N818 - HTTP vocabulary reads better
    """Authentication or authorisation failed: check the ServiceAccount's RBAC."""


class CorruptRecordError(ActionError):
    """A record annotation restore cannot trust; ``annotation`` names it.

    Restoring from it could scale an agent to a trillion replicas or set a model name
    nobody wrote, so restore stops and leaves the workload and its record as they are.
    """

    def __init__(self, annotation: str, problem: str) -> None:
        super().__init__(
            f"annotation {annotation} {problem}; nothing was restored. Fix the annotation "
            f"by hand (kubectl annotate --overwrite) or remove it"
        )
        self.annotation = annotation


class Transient(ActionError):  # noqa: N818 - HTTP vocabulary reads better
    """The API was unavailable, throttled us or timed out, and the retries ran out."""

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
