"""When a regression's page resolves: the notices stage's view of probation's messages.

A change that regressed on probation is announced by the probation stage (its firing
message, key ``<episode>:probation``), which records it in ``c.notices`` like every page
owed a resolve. The notices stage keeps it open (never said again: the numbers were sent
once) while the agent still carries what regressed, and resolves it, with the same key
(PagerDuty pairs trigger and resolve by dedup_key) and the before/after numbers, once it
no longer does:

- ``onRegression: revert``: once the revert shows on the workload (the model is the
  previous one again, or the prompt's rollout record is gone; the probation record keeps
  ``revertedAt``, which the revert writes before it acts and so proves nothing alone);
- ``notify`` (and a revert that could not be done): once the agent no longer runs the
  regressed change: a person restored it (the record is gone), changed the model, or a
  later change replaced the record;
- ``scaleToZero``: once a person restores the agent (its scale-to-zero record is gone),
  as a scale-to-zero episode resolves.

Only what the workload shows counts: an agent whose model could not be read keeps its
page open, and a page of an agent no longer selected resolves as every page does.
"""

from __future__ import annotations

from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import ProbationRecord
from agentmedic.engine.state import NoticeRecord

__all__ = ["PAGE", "is_page", "page_key", "page_open", "page_resolved"]

PAGE = ":probation"
"""The suffix of a regression page's key after its change's episode key."""


def page_key(episode: str) -> str:
    """The key of the page about the change of ``episode``."""
    return episode + PAGE


def is_page(key: str) -> bool:
    return key.endswith(PAGE)


def page_open(c: Cycle, key: str, rec: NoticeRecord) -> bool:
    """The regression page ``key`` stays open this cycle."""
    a = c.work.get(rec.agent) if rec.agent is not None else None
    return a is not None and _ended(a, key.removesuffix(PAGE)) is None


def page_resolved(c: Cycle, rec: NoticeRecord, key: str) -> str:
    """The resolved message: how the regression ended, then the numbers that paged."""
    a = c.work.get(rec.agent) if rec.agent is not None else None
    how = _ended(a, key.removesuffix(PAGE)) if a is not None else None
    how = how or "the agent is no longer selected by the policy"
    text = f"{rec.agent}: regression on probation ({rec.rule}) resolved — {how}"
    return text + (f"; it had regressed: {rec.detail}" if rec.detail else "")


def _ended(a: AgentWork, episode: str) -> str | None:
    """Why the agent no longer carries the regressed change of ``episode`` (None: it does)."""
    d = a.disabled
    if d is not None and d.episode == episode and not d.dry_run:
        return None  # stopped by the regression (or its episode): open until restored
    memo = a.probation if a.probation is not None and a.probation.episode == episode else None
    if memo is not None and memo.stopped:
        return "the agent was restored by a person; episode over"
    rec = a.workload.probation
    if rec is None or rec.episode != episode:
        return "the change is no longer on the agent (restored, or replaced by a later change)"
    # A revert marks the record before it acts: only the workload shows it done.
    if rec.kind == "switchModel":
        live = a.workload.model
        if live is None or live == rec.new:
            return None  # still runs it (or its model could not be read: no evidence)
    else:
        live = a.workload.prompt_version
        if live == rec.new:
            return None
    if rec.reverted_at is not None:
        return f"the revert is applied: the agent runs {_what(rec)} again"
    if live is None:
        return f"the prompt {rec.new} is no longer live (restored)"
    return f"the agent runs {live} now, not {rec.new}"


def _what(rec: ProbationRecord) -> str:
    return rec.previous if rec.kind == "switchModel" else f"the prompt of {rec.previous}"
