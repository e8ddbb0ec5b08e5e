"""The one retry and backoff policy of the Kubernetes layer.

Transient failures (429, 5xx, timeouts, connection errors: :class:`~agentmedic.kube.errors.
Unavailable`) are retried a bounded number of times with capped exponential backoff and
full jitter, so that many operators retrying at once spread out; a server's
``Retry-After`` is honoured up to a cap. The sync client sleeps in its worker thread, the
async paths sleep on the event loop; both ask the same policy how long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["NO_RETRY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried.

    ``attempts`` counts every try, the first included. The n-th retry waits a random time
    in ``[0, min(cap, base * 2**n)]`` ("full jitter"), or the server's ``Retry-After`` when
    it sent one, at most ``max_retry_after``.
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1 (the first try)")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0.0, min(self.cap, self.base * (2**retry)))

    def gives_up_after(self, retry: int) -> bool:
        """Whether the try numbered ``retry`` (0-based) was the last one allowed."""
        return retry + 1 >= self.attempts


NO_RETRY = RetryPolicy(attempts=1)
"""One try only: for callers whose own loop retries (leader election, watches)."""
