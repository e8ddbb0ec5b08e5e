"""A change of agentmedic's put back by someone else (engine/stages/reverts.py), in the
policy's status and Events: the ``Reverted`` condition while any agent of the policy shows
a reverted change, and one Warning Event when a revert is first seen."""

from __future__ import annotations

from collections.abc import Mapping

from agentmedic.api.types import ConditionStatus
from agentmedic.engine import AgentId, CycleResult
from agentmedic.engine.reverts import Revert
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.status_writer import PolicyWriter

__all__ = ["REVERTED_CONDITION", "revert_events", "reverted_condition"]

REVERTED_CONDITION = "Reverted"
_CHANGE = {"scaleToZero": "scale to zero", "switchModel": "model switch"}


def reverted_condition(
    reverts: Mapping[AgentId, Revert],
) -> tuple[str, ConditionStatus, str, str]:
    """True while some agent's change is reverted and not applied again."""
    held = {a: r for a, r in reverts.items() if not (r.reapply or r.waiting)}
    if not held:
        return (REVERTED_CONDITION, ConditionStatus.FALSE, "ChangesHold", "no change reverted")
    shown = "; ".join(f"{a}: {_describe(r)}" for a, r in list(held.items())[:5])
    more = f"; and {len(held) - 5} more" if len(held) > 5 else ""
    return (
        REVERTED_CONDITION,
        ConditionStatus.TRUE,
        "ChangeReverted",
        f"{len(held)} agent(s): {shown}{more}; not applied again (spec.guardrails.onRevert)",
    )


async def revert_events(writer: PolicyWriter, entry: PolicyEntry, outcome: CycleResult) -> None:
    """One Warning Event on the policy per revert first seen (and told) this cycle."""
    for agent, r in outcome.reverts.items():
        if r.new:
            await writer.event(
                entry,
                REVERTED_CONDITION,
                f"{agent}: agentmedic's {_describe(r)}; not applied again "
                "(spec.guardrails.onRevert)",
                warning=True,
            )


def _describe(r: Revert) -> str:
    who = f" likely by {r.manager}" if r.manager else ""
    return f"{_CHANGE[r.kind]} reverted{who}: {r.what}"
