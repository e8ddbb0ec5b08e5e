"""A change of agentmedic's put back by someone else, as one cycle found it (see
:mod:`agentmedic.engine.stages.reverts`)."""

from __future__ import annotations

from dataclasses import dataclass

from agentmedic.engine.state import Mark

__all__ = ["Revert"]


@dataclass(frozen=True, slots=True)
class Revert:
    """One agent whose change is reverted this cycle."""

    kind: str
    """scaleToZero or switchModel."""
    mark: Mark
    """The change, with ``reverted_at`` and ``reverts`` updated."""
    what: str
    """What the live object shows, in words."""
    new: bool
    """First seen this cycle (told now)."""
    reapply: bool
    """To be applied again this cycle (onRevert reapply, backoff passed, bound not hit)."""
    manager: str | None = None
    """The GitOps tool managing the workload, in words (AgentInput.managed_by)."""
    waiting: bool = False
    """onRevert reapply, within its bound: to be applied again once the backoff passed."""
