"""Stage 8: notifications. An episode's firing message when it starts, resolved when it ends.

Every firing episode with channels is *desired*: a rule's on an agent, a budget stage's
(per agent, or for the policy), a systemic outage's, and missing data's (per agent, or one
for the fleet). A desired episode not yet announced is announced, and said again once the
soonest renotifyAfter (an Alertmanager channel's repostInterval) of its channels has
passed; an announced one no longer desired is resolved, with the reason it ended (a
regression's page on probation: see :mod:`~agentmedic.engine.stages.probation_pages`).
While an AgentSilence covers an episode it is neither announced nor said again (a page
sent before the silence stays open and resolves as usual), and an agent's page it holds
is recorded once per episode (:mod:`.held_pages`); when the silence ends, a still-firing
episode is announced on the next cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from agentmedic.api.durations import format_duration
from agentmedic.api.types import Action, BudgetScope, NoDataMode, Severity
from agentmedic.engine.budget import HARD, SOFT, stage_evidence
from agentmedic.engine.conditions import Evidence, severity_rank
from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import episode_key
from agentmedic.engine.outcome import DecisionKind, Notification, restore_command
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.held_pages import hold_page, page_hold_unrecorded
from agentmedic.engine.stages.probation_pages import is_page, page_open, page_resolved
from agentmedic.engine.stages.prompt_job_pages import (
    is_job_page,
    job_page,
    job_page_resolved,
    want_job_pages,
)
from agentmedic.engine.stages.remediation import STAGE_REASON, STAGE_SEVERITY
from agentmedic.engine.state import NoticeRecord, SystemicEpisode

__all__ = ["NO_DATA_RULE", "notices"]

NO_DATA_RULE = "noData"
"""The rule name of no-data notifications (per agent, or fleet-wide)."""

_ACTION_TEXT = {
    "scaleToZero": "scaled to zero",
    "switchModel": "switched model",
    "promptOptimization": "started a prompt-optimization Job",
}

_Want = tuple[str, AgentWork | None, int | str]
"""What a desired episode is: (kind, agent or None for the fleet, rule index, stage or count)."""


def notices(c: Cycle) -> list[Notification]:
    """The messages to send this cycle; ``c.notices`` becomes what was announced."""
    stage_channels = _stage_channels(c)
    desired = _desired(c, stage_channels)
    out = _announce(c, desired, stage_channels)
    out.extend(_resolve(c, desired))
    return out


def _stage_channels(c: Cycle) -> dict[str, tuple[str, ...]]:
    budget = c.spec.budget
    out: dict[str, tuple[str, ...]] = {}
    if budget is not None:
        for stage, limit in ((SOFT, budget.soft), (HARD, budget.hard)):
            if limit is not None:
                out[stage] = _channels(limit.actions)
    return out


def _desired(c: Cycle, stage_channels: Mapping[str, tuple[str, ...]]) -> dict[str, _Want]:
    desired: dict[str, _Want] = {}
    rule_index = {r.name: i for i, r in enumerate(c.rules)}
    budget = c.spec.budget
    per_agent_budget = budget is not None and budget.scope == BudgetScope.AGENT
    for a in c.work.values():
        for name, rs in a.rules.items():
            if rs.firing_since is None or rs.systemic or rs.episode is None:
                continue
            if name.startswith("budget."):
                if per_agent_budget and stage_channels.get(name):
                    desired[rs.episode] = ("stage", a, name)
                continue
            i = rule_index.get(name)
            if i is not None and c.rules[i].channels:
                desired[rs.episode] = ("rule", a, i)
    if budget is not None and not per_agent_budget:
        for stage, rs in c.budget_states.items():
            if rs.firing_since is not None and rs.episode and stage_channels.get(stage):
                desired[rs.episode] = ("stage", None, stage)
    for name, ep in c.systemic.items():
        i = rule_index[name]
        if c.rules[i].channels:
            desired[ep.episode] = ("systemic", None, i)
    _no_data_wanted(c, desired)
    for key, rec in c.notices.items():
        page = c.work.get(rec.agent) if rec.agent is not None and is_page(key) else None
        if page is not None and page_open(c, key, rec):
            # Sent by the probation stage; kept open while the change is on the agent.
            desired[key] = ("probation", page, rec.rule)
    want_job_pages(c, desired)
    return desired


def _no_data_wanted(c: Cycle, desired: dict[str, _Want]) -> None:
    nd = c.spec.no_data
    channels = tuple(nd.channels)
    if not channels and nd.mode == NoDataMode.NOTIFY:
        channels = tuple(dict.fromkeys(ch for r in c.rules for ch in r.channels))
    c.no_data_channels = channels
    if not channels:
        return
    late = [
        a
        for a in c.work.values()
        if a.no_data_since is not None and c.now - a.no_data_since >= nd.after
    ]
    g = c.spec.guardrails
    n = c.considered
    fleet = n >= g.systemic_min_agents and len(late) * 100 >= g.systemic_percent * n
    prior = c.prior.systemic.get(NO_DATA_RULE)
    if fleet and late:
        ep = prior or SystemicEpisode(c.now, episode_key(c.uid, None, NO_DATA_RULE, c.now))
        c.systemic[NO_DATA_RULE] = ep
        desired[ep.episode] = ("nodata", None, len(late))
        return
    if prior is not None:
        c.ended[prior.episode] = DecisionReason.DATA_RETURNED
    for a in late:
        assert a.no_data_since is not None
        key = episode_key(c.uid, a.agent, NO_DATA_RULE, a.no_data_since)
        desired[key] = ("nodata", a, 1)


def _announce(
    c: Cycle, desired: Mapping[str, _Want], stage_channels: Mapping[str, tuple[str, ...]]
) -> list[Notification]:
    out: list[Notification] = []
    announced = c.notices
    # An Alertmanager channel forgets a firing alert that is not posted again: its
    # repostInterval stands in for renotifyAfter.
    renotify = {
        ch.name: ch.alertmanager.repost_interval if ch.alertmanager else ch.renotify_after
        for ch in c.spec.notifications.channels
    }
    for key, (what, who, ref) in desired.items():
        known = announced.get(key)
        silence = c.silenced(None if who is None else who.agent, _rule_of(c, what, ref))
        if silence is not None:  # no page, nor a reminder, while a silence covers it
            rule = _rule_of(c, what, ref)
            if known is None and who is not None and page_hold_unrecorded(who, rule):
                held = _firing(c, key, what, who, ref, stage_channels)
                if held is not None:
                    hold_page(c, who, held, silence)
            continue
        if known is not None and what in ("probation", "promptjob"):
            # Said once, no reminder; only an Alertmanager channel gets it re-posted, or
            # it would forget the alert.
            n = _repost(c, key, known)
            if n is not None:
                out.append(n)
                announced[key] = replace(known, sent_at=c.now)
            continue
        if known is not None:
            # A still-firing episode is said again once the soonest renotifyAfter of its
            # channels has passed; each channel's own renotifyAfter and rate limit are
            # the notifier's to apply.
            due = min((renotify[ch] for ch in known.channels if ch in renotify), default=None)
            if due is None or c.now - known.sent_at < due:
                continue
        n = _firing(c, key, what, who, ref, stage_channels)
        if n is None:
            continue
        out.append(n)
        detail = n.summary[:600] if what == "promptjob" else ""
        announced[key] = NoticeRecord(n.rule, n.agent, n.channels, n.severity, c.now, detail)
    return out


def _repost(c: Cycle, key: str, known: NoticeRecord) -> Notification | None:
    """A page said once, posted again to its Alertmanager channels at their
    repostInterval (the others are not told again)."""
    every = {
        ch.name: ch.alertmanager.repost_interval
        for ch in c.spec.notifications.channels
        if ch.alertmanager is not None and ch.name in known.channels
    }
    if not every or c.now - known.sent_at < min(every.values()):
        return None
    job = is_job_page(key)
    return Notification(
        channels=tuple(every),
        episode=key,
        agent=known.agent,
        rule=known.rule,
        severity=known.severity,
        state="firing",
        summary=known.detail
        if job
        else f"{known.agent}: regression on probation ({known.rule}) still open — {known.detail}",
        reason_code=DecisionReason.PROMPT_JOB_NOT_ROLLED_OUT
        if job
        else DecisionReason.PROBATION_REGRESSED,
        dry_run=c.dry_run,
        at=c.now,
    )


def _rule_of(c: Cycle, what: str, ref: int | str) -> str:
    """The rule (or budget stage, or noData) a desired episode is about."""
    if what in ("rule", "systemic"):
        assert isinstance(ref, int)
        return c.rules[ref].name
    if what in ("stage", "promptjob", "probation"):
        assert isinstance(ref, str)
        return ref
    return NO_DATA_RULE


def _resolve(c: Cycle, desired: Mapping[str, _Want]) -> list[Notification]:
    out: list[Notification] = []
    for key, rec in c.prior.notices.items():
        if key in desired:
            continue
        del c.notices[key]
        reason = c.ended.get(key)
        if reason is None:
            if rec.agent is not None and rec.agent not in c.work:
                reason = DecisionReason.AGENT_GONE
            elif rec.rule == NO_DATA_RULE:
                reason = DecisionReason.DATA_RETURNED
            else:
                reason = DecisionReason.RESOLVED
        out.append(
            Notification(
                channels=rec.channels,
                episode=key,
                agent=rec.agent,
                rule=rec.rule,
                severity=rec.severity,
                state="resolved",
                summary=page_resolved(c, rec, key)
                if is_page(key)
                else job_page_resolved(c, rec, key)
                if is_job_page(key)
                else _resolved_summary(rec, reason) + _verified_note(c, rec, key),
                reason_code=reason,
                dry_run=c.dry_run,
                at=c.now,
            )
        )
    return out


# ---------------------------------------------------------------------- firing messages


def _firing(
    c: Cycle,
    key: str,
    what: str,
    a: AgentWork | None,
    ref: int | str,
    stage_channels: Mapping[str, tuple[str, ...]],
) -> Notification | None:
    if what == "rule":
        assert a is not None
        assert isinstance(ref, int)
        r = c.rules[ref]
        firing = a.rules[r.name]
        evidence = r.evidence(
            a.values, firing.firing_since != c.now, a.assume, firing.pending_since, c.now
        )
        return _agent_notice(c, key, a, r.name, r.severity, r.channels, evidence)
    if what == "stage":
        assert isinstance(ref, str)
        return _stage_notice(c, key, a, ref, stage_channels[ref])
    if what == "promptjob":
        assert a is not None
        return job_page(c, key, a)  # once: never a reminder
    assert isinstance(ref, int)
    if what == "systemic":
        return _systemic_notice(c, key, ref)
    return _no_data_notice(c, key, a, ref)


def _stage_notice(
    c: Cycle, key: str, a: AgentWork | None, stage: str, channels: tuple[str, ...]
) -> Notification | None:
    budget = c.spec.budget
    assert budget is not None
    figures = c.policy_figures if a is None else a.figures
    if figures is None:
        return None
    rs = c.budget_states.get(stage) if a is None else a.rules.get(stage)
    evidence = stage_evidence(
        budget, stage, figures, None if rs is None else rs.pending_since, c.now
    )
    note = figures.describe_crossing(budget.limit_usd) if stage == SOFT else ""
    if a is not None:
        return _agent_notice(c, key, a, stage, STAGE_SEVERITY[stage], channels, evidence, note)
    return Notification(
        channels=channels,
        episode=key,
        agent=None,
        rule=stage,
        severity=STAGE_SEVERITY[stage],
        state="firing",
        summary=f"policy {c.policy.namespace}/{c.policy.name}: {stage} reached — "
        f"{evidence.describe()}{note}; applies to all {len(c.work)} agents",
        reason_code=STAGE_REASON[stage],
        evidence=evidence,
        dry_run=c.dry_run,
        at=c.now,
    )


def _systemic_notice(c: Cycle, key: str, index: int) -> Notification:
    r = c.rules[index]
    hits = len(c.breaching[index])
    return Notification(
        channels=r.channels,
        episode=key,
        agent=None,
        rule=r.name,
        severity=max(r.severity, Severity.HIGH, key=severity_rank),
        state="firing",
        summary=f"policy {c.policy.namespace}/{c.policy.name}: {hits} of "
        f"{c.considered} agents breach rule {r.name} at once — likely an outage of "
        "a shared dependency (model provider, network); no agent is disabled",
        reason_code=DecisionReason.SYSTEMIC_OUTAGE,
        action="none: systemic outage, paging instead of disabling",
        escalate=True,
        dry_run=c.dry_run,
        at=c.now,
    )


def _no_data_notice(c: Cycle, key: str, a: AgentWork | None, late: int) -> Notification:
    after = format_duration(c.spec.no_data.after)
    if a is None:
        summary = (
            f"policy {c.policy.namespace}/{c.policy.name}: {late} of "
            f"{c.considered} agents have had no (or too little) data for over {after}; "
            "is the metrics backend or the scrape down?"
        )
    else:
        summary = (
            f"{a.agent}: no (or too little) data for over {after}; "
            f"noData.mode {c.spec.no_data.mode.value}"
        )
    return Notification(
        channels=c.no_data_channels,
        episode=key,
        agent=None if a is None else a.agent,
        rule=NO_DATA_RULE,
        severity=Severity.MEDIUM,
        state="firing",
        summary=summary,
        reason_code=DecisionReason.NO_DATA,
        action="none: missing data is neither health nor sickness",
        dry_run=c.dry_run,
        at=c.now,
    )


def _agent_notice(
    c: Cycle,
    key: str,
    a: AgentWork,
    rule: str,
    severity: Severity,
    channels: tuple[str, ...],
    evidence: Evidence,
    note: str = "",
) -> Notification:
    escalation = c.escalations.get((a.agent, rule))
    action, undo = _action_taken(c, a, rule, key)
    text = f"{a.agent}: {rule} firing — {evidence.describe()}{note}"
    if action:
        text += f"; {action}"
    if escalation is not None:
        text += f"; {escalation[1]}"
    return Notification(
        channels=channels,
        episode=key,
        agent=a.agent,
        rule=rule,
        severity=severity,
        state="firing",
        summary=text,
        reason_code=DecisionReason.RULE_FIRING
        if not rule.startswith("budget.")
        else (STAGE_REASON[rule]),
        evidence=evidence,
        action=action,
        undo=undo,
        escalate=escalation is not None,
        dry_run=c.dry_run,
        at=c.now,
    )


def _action_taken(c: Cycle, a: AgentWork, rule: str, key: str) -> tuple[str | None, str | None]:
    """(the workload change taken, or why none was; the command that undoes it)."""
    decision = c.decided.get((a.agent, rule))
    if decision is not None:
        action = _ACTION_TEXT[decision.kind.value]
        if decision.kind == DecisionKind.SWITCH_MODEL:
            action += f" {decision.from_model} → {decision.to_model}"
        if decision.dry_run:
            return "would have " + action + " (dry run)", None
        if a.workload.managed_by and decision.kind != DecisionKind.PROMPT_OPTIMIZATION:
            action += (
                f" (managed by {a.workload.managed_by}: its sync may put it back; "
                f"spec.guardrails.onRevert {c.spec.guardrails.on_revert.value} says what then)"
            )
        return action, decision.undo
    suppressed = c.held.get((a.agent, rule))
    if suppressed is not None and suppressed.suppressed_by:
        return f"{suppressed.kind.value} not done ({suppressed.suppressed_by})", None
    for mark, done in ((a.disabled, "scaled to zero"), (a.downgraded, "switched model")):
        if mark is not None and not mark.dry_run and mark.episode == key:
            # A reminder (or an Alertmanager re-post, which replaces the alert's
            # annotations) of the episode that made the change still says how to undo it.
            workload = f"{a.workload.kind}/{a.workload.name or a.agent.name}"
            return f"{done} earlier in this episode", restore_command(a.agent, workload)
    if a.disabled is not None and not a.disabled.dry_run:
        return "none: the agent is already disabled", None
    return None, None


def _channels(actions: list[Action]) -> tuple[str, ...]:
    out: list[str] = []
    for a in actions:
        if a.notify is not None:
            out.extend(ch for ch in a.notify.channels if ch not in out)
    return tuple(out)


def _verified_note(c: Cycle, rec: NoticeRecord, key: str) -> str:
    """Said when the episode ends: what probation (spec.verify) made of the change."""
    a = c.work.get(rec.agent) if rec.agent is not None else None
    memo = a.probation if a is not None else (None)
    if memo is None or memo.episode != key:
        return ""
    return _PROBATION_NOTE.get(memo.verdict, "").format(new=memo.new)


_PROBATION_NOTE = {
    "Verified": "; the change to {new} was verified on probation",
    "Inconclusive": "; the change to {new} was not judged on probation: too little traffic "
    "(final; it stays)",
    "Extended": "; the change to {new} is still on probation: too little traffic so far",
    "Held": "; the change to {new} is still on probation: held while its peers are down too",
    "Resumed": "; the change to {new} is still on probation: judged after its peers recovered",
}


def _resolved_summary(rec: NoticeRecord, reason: str) -> str:
    who = str(rec.agent) if rec.agent is not None else "fleet"
    text: dict[str, str] = {
        DecisionReason.RESOLVED: "conditions clear again",
        DecisionReason.RESTORED: "agent restored; episode over",
        DecisionReason.AGENT_GONE: "agent no longer selected by the policy",
        DecisionReason.DATA_RETURNED: "data is back",
        DecisionReason.OUTAGE_OVER: "fewer agents breach the rule now; outage over",
        DecisionReason.PERIOD_ENDED: "budget period over",
    }
    return f"{who}: {rec.rule} resolved — {text.get(reason, reason)}"
