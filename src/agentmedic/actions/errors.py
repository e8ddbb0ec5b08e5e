"""The errors the actions layer raises: the Kubernetes layer's, plus a corrupt record.

Actions fail the way their API calls fail, so they raise :mod:`agentmedic.kube.errors`
directly; the names below are the actions' vocabulary for them::

    ActionError = KubeError     anything this package raises
    ├── NotFound                404: the object (or its kind, e.g. KEDA not installed) is absent
    ├── Conflict                409: a stale resourceVersion, or AlreadyExists on create
    │                           (``already_exists`` tells them apart)
    ├── Invalid                 422 (or 400): the API refused the content; ``message`` is the
    │                           API's own explanation
    ├── Forbidden               401/403: the operator's credentials may not do this
    ├── CorruptRecordError      an ``agentmedic.io/*`` record that is not valid JSON, has the
    │                           wrong shape or implausible values; restore refuses to use it
    └── Transient = Unavailable 429, 5xx, timeouts and connection errors, after the bounded
                                retries ran out; retrying later may succeed

The operator turns :class:`Transient` and an exhausted :class:`Conflict` into a retry on the
next cycle; :class:`Invalid` and :class:`Forbidden` become failed actions with a Warning Event.
"""

from __future__ import annotations

from agentmedic.kube.errors import (
    Conflict,
    Forbidden,
    Invalid,
    KubeError,
    KubeReason,
    NotFound,
    Unavailable,
)

__all__ = [
    "ActionError",
    "Conflict",
    "CorruptRecordError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Transient",
]

ActionError = KubeError
"""Base of every error of :mod:`agentmedic.actions`."""

Transient = Unavailable
"""The API was unavailable, throttled us or timed out, and the retries ran out."""


class CorruptRecordError(KubeError):
    """A record annotation restore cannot trust; ``annotation`` names it.

    Restoring from it could scale an agent to a trillion replicas or set a model name
    nobody wrote, so restore stops and leaves the workload and its record as they are.
    """

    default_reason = KubeReason.INVALID

    def __init__(self, annotation: str, problem: str) -> None:
        super().__init__(
            f"annotation {annotation} {problem}; nothing was restored. Fix the annotation "
            f"by hand (kubectl annotate --overwrite) or remove it"
        )
        self.annotation = annotation
