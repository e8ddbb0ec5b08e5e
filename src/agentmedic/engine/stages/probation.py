"""Stage 3b, per agent: probation. Judge a change once ``verify.window`` has passed since it.

A change meant to keep an agent serving (a switch to a cheaper model, a new prompt) is
recorded on the workload with the agent's baseline (:class:`~agentmedic.engine.inputs.
ProbationRecord`). Once ``verify.window`` has passed, the same signals over the window —
all of it after the change — are compared with the baseline
(:func:`agentmedic.engine.verify.judge`), once per change:

- Verified: remembered; the episode's resolved message says so; status and Events show it.
- Inconclusive (too little traffic on either side): said as such; nothing is undone. While
  it is the window after the change that falls short, the change is judged again after
  another window (the memo ``Extended``, said once per window), up to ``verify.maxWindows``
  windows; then Inconclusive is final.
- Regressed: ``verify.onRegression``. ``revert`` puts the previous model back through
  the restore machinery (a restore decision, with the regressed signals as its evidence)
  and rejects the tier for this agent for ``rejectFor``: switchModel does not move the agent
  to it before then (persisted in the agent's state, so a restart does not forget).
  ``notify`` tells the channels and keeps the change. ``scaleToZero`` stops the agent,
  within quiet hours and maxDisabledPercent. A regressed budget downgrade tells the
  budget's channels that the ceiling now needs a person; a revert while the hard stage is
  reached says that it goes back above the hard ceiling.

A regression is evidence against the change only when the agent's peers did not fall as
far over the same window (:mod:`agentmedic.engine.stages.peers`): when they did (a
provider outage, say), the verdict is held (memo ``Held``, said once, no page) until they
recover, then given on a whole window after that (memo ``Resumed`` meanwhile).

Nothing is judged on an agent whose metrics are undefined this cycle, on another policy's
change, or on a change someone has replaced since (the model is no longer the one set).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from agentmedic.api.durations import format_duration
from agentmedic.api.types import Action, Op, Severity
from agentmedic.api.verify import OnRegression
from agentmedic.api.verify import Verify as VerifySpec
from agentmedic.engine.budget import HARD
from agentmedic.engine.conditions import ConditionEvidence, Evidence
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.guardrails import Candidate, evaluate_chain, max_disabled, quiet_hours
from agentmedic.engine.inputs import ProbationRecord, episode_policy_uid
from agentmedic.engine.outcome import (
    Decision,
    DecisionKind,
    Notification,
    ProbationOutcome,
    Restore,
    restore_command,
)
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.channels import rule_channels
from agentmedic.engine.stages.peers import fleet_regressions
from agentmedic.engine.stages.probation_pages import page_key
from agentmedic.engine.stages.remediation import STAGE_SEVERITY, guard_for
from agentmedic.engine.state import ActionStamp, Mark, NoticeRecord, ProbationMemo, RuleState
from agentmedic.engine.verify import Comparison, Verdict, VerdictKind, after_from, judge

__all__ = [
    "EXTENDED",
    "HELD",
    "RESUMED",
    "SUPERSEDED",
    "hard_stage_reached",
    "probation",
    "rejected_until",
    "windows_passed",
]

SUPERSEDED = "Superseded"
"""The memo of a change that someone replaced before it was judged: never judged."""

EXTENDED = "Extended"
"""The memo of a change whose window had too little traffic: judged again after the next
window, up to ``verify.maxWindows`` windows."""

HELD = "Held"
"""The memo of a change that regressed where its peers did too (stages/peers.py): not
judged while they are down."""

RESUMED = "Resumed"
"""The memo of a held change whose peers recovered: judged once a whole window has passed
since."""

_NOT_FINAL = (EXTENDED, HELD, RESUMED)

_OPS = {True: Op.LT, False: Op.GT}
_DETAIL = 600
"""Characters of a regression's numbers kept for its resolved message."""


def probation(c: Cycle) -> None:
    """Judge every change whose window has passed; forget rejections whose hold ended."""
    v = c.spec.verify
    for a in c.work.values():
        rec = a.workload.probation
        if rec is not None and rec.reverted_at is not None and rec.new not in a.rejected:
            _adopt(c, a, rec, rec.reverted_at)
        if a.rejected and any(rejected_until(c, a, t) is None for t in a.rejected):
            a.rejected = {t: at for t, at in a.rejected.items() if rejected_until(c, a, t)}
        if v is None or rec is None or a.unknown or a.disabled is not None:
            continue
        memo = a.probation if a.probation and a.probation.episode == rec.episode else None
        if memo is not None and memo.verdict not in _NOT_FINAL:
            if _revert_owed(c, a, v, rec):
                # The revert never showed on the workload: decided again, on present evidence.
                vd = judge(v, rec.baseline, after_from(c.spec, a.values))
                if vd.kind is VerdictKind.REGRESSED:
                    _revert(c, a, v, rec, vd, _head(a, rec, vd), again=True)
            continue  # judged already: once per change
        if episode_policy_uid(rec.episode) != c.uid or c.now - rec.at < v.window:
            continue  # another policy's change, or still on probation
        if memo is not None and memo.verdict == HELD:
            if not fleet_regressions(c, a, rec):
                # The peers are back: judge a whole window that holds none of their trouble.
                a.probation = replace(memo, verdict=RESUMED, at=c.now)
            continue
        if memo is not None and memo.verdict == RESUMED and c.now - memo.at < v.window:
            continue
        windows = windows_passed(v, rec.at, c.now)
        if (
            memo is not None
            and memo.verdict == EXTENDED
            and windows <= windows_passed(v, rec.at, memo.at)
        ):
            continue  # extended: the next window has not passed yet
        if rec.kind == "switchModel" and a.workload.model not in (None, rec.new):
            # Replaced since (a person, a restore): the agent no longer runs what was set.
            a.probation = ProbationMemo(rec.episode, SUPERSEDED, c.now, rec.new)
            continue
        verdict = judge(v, rec.baseline, after_from(c.spec, a.values))
        if verdict.kind is VerdictKind.REGRESSED:
            shared = _shared(verdict, fleet_regressions(c, a, rec))
            if shared:
                _hold(c, a, v, rec, verdict, shared)
                continue
        if verdict.short_after and windows < v.max_windows:
            _extend(c, a, v, rec, verdict, windows)
        else:
            _conclude(c, a, v, rec, verdict, windows)


def _shared(vd: Verdict, fleet: tuple[Comparison, ...]) -> tuple[Comparison, ...]:
    """The peers' comparisons on the signals ``vd`` found regressed."""
    mine = {x.signal for x in vd.regressed}
    return tuple(x for x in fleet if x.signal in mine)


def _hold(
    c: Cycle,
    a: AgentWork,
    v: VerifySpec,
    rec: ProbationRecord,
    vd: Verdict,
    fleet: tuple[Comparison, ...],
) -> None:
    """The agent regressed where its peers did too: no evidence against the change. Said
    once (status, Event; no page); judged on a whole window after the peers recover."""
    peers = "; ".join(x.describe() for x in fleet)
    how = (
        f"held: its peers fell as far over the same window (median {peers}), a cause "
        f"outside the change; judged on a whole {format_duration(v.window)} after they recover"
    )
    text = f"{a.agent}: {_change_text(rec)} ({rec.rule}) not judged yet — {vd.why}; {how}"
    _record(c, a, rec, replace(vd, kind=VerdictKind.INCONCLUSIVE), text, how)
    a.probation = ProbationMemo(rec.episode, HELD, c.now, rec.new)


def windows_passed(v: VerifySpec, since: datetime, now: datetime) -> int:
    """Whole ``verify.window`` spans from the change to ``now``."""
    return int((now - since) / v.window)


def _extend(
    c: Cycle, a: AgentWork, v: VerifySpec, rec: ProbationRecord, vd: Verdict, windows: int
) -> None:
    """Too little traffic after the change, and windows left: watch it for another one.
    Said once per window (status, Event); no message, nothing undone."""
    what = f"{_change_text(rec)} ({rec.rule})"
    how = (
        f"not final: watched for another {format_duration(v.window)} "
        f"(window {windows} of verify.maxWindows {v.max_windows})"
    )
    text = f"{a.agent}: {what} inconclusive on probation — {vd.why}; {how}"
    _record(c, a, rec, vd, text, how)
    a.probation = ProbationMemo(rec.episode, EXTENDED, c.now, rec.new)


def _adopt(c: Cycle, a: AgentWork, rec: ProbationRecord, at: datetime) -> None:
    """The workload's record holds a rejection the state lost (a restart between the
    revert and the state's write): take it back while its hold runs."""
    v = c.spec.verify
    if v is not None and episode_policy_uid(rec.episode) == c.uid and c.now - at < v.reject_for:
        a.rejected = {**a.rejected, rec.new: at}


def rejected_until(c: Cycle, a: AgentWork, tier: str) -> datetime | None:
    """Until when ``tier`` is held back for this agent after a revert (None: it is not).
    The hold is the policy's current ``verify.rejectFor`` from the revert, so shortening
    it (to 0s, say) lets a person retry the tier at once."""
    at = a.rejected.get(tier)
    if at is None or c.spec.verify is None:
        return None
    until = at + c.spec.verify.reject_for
    return until if until > c.now else None


def hard_stage_reached(c: Cycle, a: AgentWork) -> bool:
    """The budget's hard stage fires for this agent (agent scope) or the policy."""
    for rs in (a.rules.get(HARD), c.budget_states.get(HARD)):
        if rs is not None and rs.firing_since is not None:
            return True
    return False


def _conclude(
    c: Cycle, a: AgentWork, v: VerifySpec, rec: ProbationRecord, vd: Verdict, windows: int
) -> None:
    what = f"{_change_text(rec)} ({rec.rule})"
    if vd.kind is not VerdictKind.REGRESSED:
        action = "kept" if vd.kind is VerdictKind.VERIFIED else "kept: not judged"
        if vd.kind is VerdictKind.INCONCLUSIVE:
            action += f" (final after {min(windows, v.max_windows)} of verify.maxWindows)"
        text = f"{a.agent}: {what} {vd.kind.value.lower()} on probation — {vd.why}; {vd.describe()}"
        _record(c, a, rec, vd, text, action)
        return
    head = _head(a, rec, vd)
    if v.on_regression is OnRegression.REVERT and rec.kind == "switchModel":
        _revert(c, a, v, rec, vd, head)
    elif v.on_regression is OnRegression.REVERT:
        _revert_prompt(c, a, rec, vd, head)
    elif v.on_regression is OnRegression.SCALE_TO_ZERO:
        _stop(c, a, rec, vd, head)
    else:
        how = "notified; the change stays (verify.onRegression notify)"
        _record(c, a, rec, vd, f"{head}; {how}", how, notify=True)


def _revert_prompt(c: Cycle, a: AgentWork, rec: ProbationRecord, vd: Verdict, head: str) -> None:
    """Put the text the rollout replaced back (restore, prompt only); judged once. Inside
    quiet hours nothing changes: the numbers are sent and a person restores."""
    if c.quiet:
        how = (
            "not reverted: inside quiet hours; "
            f"undo it with {restore_command(a.agent, _workload(a))}"
        )
        _record(c, a, rec, vd, f"{head}; {how}", how, notify=True)
        return
    text = f"{head}; reverted to the prompt of {rec.previous}"
    if rec.rule.startswith("budget."):
        text += "; the budget ceiling needs a person"
    c.decisions.append(
        _decision(c, a, rec, vd, DecisionKind.RESTORE, text, restore=Restore(prompt=True))
    )
    if not c.dry_run:
        a.changed_at = c.now
    _record(c, a, rec, vd, text, f"reverted to {rec.previous}", notify=True)


def _head(a: AgentWork, rec: ProbationRecord, vd: Verdict) -> str:
    what = f"{_change_text(rec)} ({rec.rule})"
    return f"{a.agent}: {what} regressed on probation — {vd.why}; {vd.executions()}"


def _revert_owed(c: Cycle, a: AgentWork, v: VerifySpec, rec: ProbationRecord) -> bool:
    """A revert was decided for this change and has not shown on the workload for two
    intervals (the action failed, or lost to another policy's change)."""
    m = a.downgraded
    return (
        a.probation is not None
        and a.probation.verdict == VerdictKind.REGRESSED.value
        and v.on_regression is OnRegression.REVERT
        and rec.kind == "switchModel"
        and a.workload.model == rec.new
        and a.changed_at != c.now
        and m is not None
        and m.restoring_at is not None
        and c.now - m.restoring_at >= c.plan.retry_after
    )


def _revert(
    c: Cycle,
    a: AgentWork,
    v: VerifySpec,
    rec: ProbationRecord,
    vd: Verdict,
    head: str,
    *,
    again: bool = False,
) -> None:
    m = a.downgraded
    if m is None or not m.confirmed or m.dry_run or episode_policy_uid(m.episode) != c.uid:
        how = "not reverted: the workload carries no model record of this policy"
        _record(c, a, rec, vd, f"{head}; {how}", how, notify=True)
        return
    if c.quiet:
        # Every workload change waits in quiet hours; said once, judged again after.
        if m.suppressed != DecisionReason.QUIET_HOURS:
            a.downgraded = replace(m, suppressed=DecisionReason.QUIET_HOURS)
            c.decisions.append(
                _decision(
                    c,
                    a,
                    rec,
                    vd,
                    DecisionKind.RESTORE,
                    f"{head}; revert to {rec.previous} "
                    "— not done: inside quiet hours, the revert waits for the window to end",
                    restore=Restore(model=rec.previous, complete=rec.previous == m.from_model),
                    suppressed=DecisionReason.QUIET_HOURS,
                )
            )
        return
    back = Restore(model=rec.previous, complete=rec.previous == m.from_model)
    text = (
        f"{head}; reverted to {rec.previous}; {rec.new} is not tried again on this agent "
        f"for {format_duration(v.reject_for)}"
    )
    if hard_stage_reached(c, a):
        text += (
            f"; budget.hard is reached: {rec.previous} spends above the hard ceiling — "
            "a person must decide"
        )
    if rec.rule.startswith("budget."):
        text += "; the budget ceiling needs a person: the cheaper tier hurt the agent"
    if again:
        text += " (again: the earlier revert was not observed on the workload)"
    c.decisions.append(_decision(c, a, rec, vd, DecisionKind.RESTORE, text, restore=back))
    if not c.dry_run:
        a.downgraded = replace(m, restoring_at=c.now, restore_to=back.model, suppressed=None)
        a.changed_at = c.now
        a.rejected = {**a.rejected, rec.new: a.rejected.get(rec.new, c.now)}
    if not again:
        _record(c, a, rec, vd, text, f"reverted to {rec.previous}", notify=True)


def _stop(c: Cycle, a: AgentWork, rec: ProbationRecord, vd: Verdict, head: str) -> None:
    guard = guard_for(c)
    cand = Candidate(
        agent=a.agent,
        rule=rec.rule,
        kind="scaleToZero",
        action=Action.model_validate({"scaleToZero": {}}),
        severity=Severity.HIGH,
        severity_rank=0,
        episode=rec.episode,
        badness=0.0,
        build_evidence=lambda: _evidence(c, rec, vd),
        rule_state=a.rules.get(rec.rule) or RuleState(),
        reason_code=DecisionReason.PROBATION_REGRESSED,
    )
    stopped = evaluate_chain(cand, guard, (quiet_hours, max_disabled))
    if stopped is not None:
        how = f"not scaled to zero ({stopped[0]}): {stopped[1]}"
        _record(c, a, rec, vd, f"{head}; {how}", how, notify=True)
        return
    text = f"{head}; scaled to zero (verify.onRegression scaleToZero)"
    c.decisions.append(_decision(c, a, rec, vd, DecisionKind.SCALE_TO_ZERO, text))
    if not c.dry_run:
        a.disabled = Mark(rec.episode, rec.rule, c.now)
        a.changed_at = c.now
        c.stamps.append(ActionStamp(c.now, rec.episode, "scaleToZero"))
    _record(c, a, rec, vd, text, "scaled to zero", notify=True)
    if not c.dry_run and a.probation is not None:
        a.probation = replace(a.probation, stopped=True)


def _evidence(c: Cycle, rec: ProbationRecord, vd: Verdict) -> Evidence:
    """The regressed signals as conditions that breach: ``holds()`` re-derives the verdict."""
    assert c.spec.verify is not None
    window = c.spec.verify.window
    conditions = tuple(
        ConditionEvidence(
            metric=x.signal.value,
            query=None,
            window=window,
            op=_OPS[x.signal.value in ("success_rate", "quality_score")],
            threshold=x.limit,
            observed=x.after,
        )
        for x in vd.regressed
    )
    return Evidence("any", conditions, rec.at, c.spec.verify.window, c.now)


def _decision(
    c: Cycle,
    a: AgentWork,
    rec: ProbationRecord,
    vd: Verdict,
    kind: DecisionKind,
    text: str,
    *,
    restore: Restore | None = None,
    suppressed: str | None = None,
) -> Decision:
    return Decision(
        kind=kind,
        agent=a.agent,
        workload=_workload(a),
        rule=rec.rule,
        severity=Severity.HIGH,
        episode=rec.episode,
        reason_code=DecisionReason.PROBATION_REGRESSED,
        reason=text if not c.dry_run else text + " (dry run: nothing changed)",
        evidence=_evidence(c, rec, vd),
        at=c.now,
        dry_run=c.dry_run,
        suppressed_by=suppressed,
        restore=restore,
    )


def _record(
    c: Cycle,
    a: AgentWork,
    rec: ProbationRecord,
    vd: Verdict,
    text: str,
    action: str,
    *,
    notify: bool = False,
) -> None:
    a.probation = ProbationMemo(rec.episode, vd.kind.value, c.now, rec.new)
    c.probation.append(
        ProbationOutcome(
            agent=a.agent,
            workload=_workload(a),
            rule=rec.rule,
            episode=rec.episode,
            change=rec.kind,
            verdict=vd.kind.value,
            previous=rec.previous,
            new=rec.new,
            summary=text,
            at=c.now,
            action=action,
            dry_run=c.dry_run,
        )
    )
    channels = rule_channels(c, rec.rule)
    if notify and channels:
        budget = rec.rule.startswith("budget.")
        key = page_key(rec.episode)
        severity = STAGE_SEVERITY[rec.rule] if budget else Severity.HIGH
        # Owed a resolve, like an episode's page (stages/probation_pages.py says when).
        c.notices[key] = NoticeRecord(
            rec.rule, a.agent, channels, severity, c.now, detail=vd.describe()[:_DETAIL]
        )
        c.probation_notices.append(
            Notification(
                channels=channels,
                episode=key,
                agent=a.agent,
                rule=rec.rule,
                severity=severity,
                state="firing",
                summary=text,
                reason_code=DecisionReason.PROBATION_REGRESSED,
                evidence=_evidence(c, rec, vd),
                action=action,
                escalate=budget or action.startswith("not "),
                dry_run=c.dry_run,
                at=c.now,
            )
        )


def _change_text(rec: ProbationRecord) -> str:
    if rec.kind == "switchModel":
        return f"model switch {rec.previous} → {rec.new}"
    return f"prompt {rec.previous} → {rec.new}"


def _workload(a: AgentWork) -> str:
    return f"{a.workload.kind}/{a.workload.name or a.agent.name}"
