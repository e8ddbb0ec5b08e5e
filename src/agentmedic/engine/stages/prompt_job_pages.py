"""A prompt-optimization Job that was not rolled out, told once on the rule's channels.

The operator settles a finished Job once (:mod:`agentmedic.operator.prompt_jobs`): when it
failed, ran out of time (DeadlineExceeded), exhausted its retries (BackoffLimitExceeded),
was rejected, or left no result to trust, it writes that on the workload
(``agentmedic.io/prompt-job``, read as :class:`~agentmedic.engine.inputs.PromptJobOutcome`)
and reports it in status and an Event. From that record the notices stage sends one
message on the channels of the rule (or budget stage) whose episode started the Job: the
Job's name, the reason, and what a person should do. The message is a page like the
rule's: it stays open while that episode fires and resolves, with the same key, when the
episode is over (at once, the next cycle, when the Job failed after its episode ended).
It is never said again: its key goes into the policy's ``told`` memory, stored in the
same write as the outbox that sends it, so a restart or a new leader between the Job's
failure and the send sends it once, and one after the send does not send it again.
``told`` forgets a key once the agent's record names another Job (a later Job's outcome
replaced it) or none, and a week after the policy stopped selecting the agent. Nothing
here changes a workload.
"""

from __future__ import annotations

from datetime import timedelta

from agentmedic.engine.context import AgentWork, Cycle
from agentmedic.engine.inputs import PromptJobOutcome, episode_policy_uid
from agentmedic.engine.outcome import Notification
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.stages.channels import rule_channels, rule_severity
from agentmedic.engine.state import NoticeRecord

__all__ = ["JOB", "is_job_page", "job_page", "job_page_key", "job_page_resolved", "want_job_pages"]

JOB = ":prompt-job:"
"""Between the episode key and the Job's name in a job page's key."""

FORGET_ABSENT = timedelta(days=7)
"""How long ``told`` remembers a Job of an agent the policy no longer selects."""


def job_page_key(o: PromptJobOutcome) -> str:
    return f"{o.episode}{JOB}{o.job}"


def is_job_page(key: str) -> bool:
    return JOB in key


def want_job_pages(c: Cycle, desired: dict[str, tuple[str, AgentWork | None, int | str]]) -> None:
    """Add the job pages to send (not told yet) or to keep open (told, episode firing)."""
    named: set[str] = set()
    for a in c.work.values():
        o = a.workload.prompt_job
        if o is None or episode_policy_uid(o.episode) != c.uid:
            continue
        key = job_page_key(o)
        named.add(key)
        if not rule_channels(c, o.rule):
            continue
        rs = a.rules.get(o.rule)
        firing = rs is not None and rs.episode == o.episode and rs.firing_since is not None
        if key not in c.told or (firing and key in c.notices):
            desired[key] = ("promptjob", a, o.rule)
    selected = {str(a) for a in c.work}
    # An agent missing from one listing keeps its memory (for FORGET_ABSENT), so that it
    # is not told again when it is back.
    keep = {
        k: at
        for k, at in c.told.items()
        if k in named or (_agent_of(k) not in selected and c.now - at < FORGET_ABSENT)
    }
    if keep != c.told:
        c.told = keep


def _agent_of(key: str) -> str:
    """``namespace/name`` from ``<uid>:<namespace>/<name>:<rule>:<start>:prompt-job:<job>``."""
    return key.split(":", 2)[1] if key.count(":") >= 2 else ""


def job_page(c: Cycle, key: str, a: AgentWork) -> Notification | None:
    """The firing message, once: None when it was told already (no reminder)."""
    o = a.workload.prompt_job
    if key in c.told or o is None:
        return None
    c.told[key] = c.now
    ns = a.agent.namespace
    why = o.reason.replace(f" (kubectl logs job/{o.job})", "") or f"Job {o.job}: {o.status}"
    todo = (
        f"what to do: read kubectl logs job/{o.job} -n {ns} and the result in the prompt "
        "ConfigMap's agentmedic.io/prompt-optimization annotation, then fix the optimizer "
        "(model access, activeDeadlineSeconds, backoffLimit) or its input; the Job is not "
        f"started again in this episode, the next episode of {o.rule} starts a new one"
    )
    return Notification(
        channels=rule_channels(c, o.rule),
        episode=key,
        agent=a.agent,
        rule=o.rule,
        severity=rule_severity(c, o.rule),
        state="firing",
        summary=f"{a.agent}: {o.rule}: {why}; {todo}",
        reason_code=DecisionReason.PROMPT_JOB_NOT_ROLLED_OUT,
        action=f"none: the prompt is unchanged (Job {o.job}: {o.status})",
        dry_run=c.dry_run,
        at=c.now,
    )


def job_page_resolved(c: Cycle, rec: NoticeRecord, key: str) -> str:
    job = key.partition(JOB)[2]
    a = c.work.get(rec.agent) if rec.agent is not None else None
    how = (
        "the agent is no longer selected by the policy"
        if a is None
        else f"the {rec.rule} episode that started it is over; the prompt is unchanged"
    )
    return f"{rec.agent}: prompt-optimization Job {job} resolved — {how}"
