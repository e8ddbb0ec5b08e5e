"""What agentmedic does when someone else puts back one of its changes (a GitOps sync)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MAX_REAPPLIES", "OnRevert"]

MAX_REAPPLIES = 3
"""With onRevert reapply: the most times one change is applied again in one episode."""


class OnRevert(StrEnum):
    TELL = "tell"
    """Say so once (notification, Event, Reverted condition); do not apply it again."""
    REAPPLY = "reapply"
    """Apply it again after 1, 2, then 4 intervals, at most MAX_REAPPLIES times; then tell."""
