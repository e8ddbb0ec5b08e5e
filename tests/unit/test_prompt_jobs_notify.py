"""A prompt-optimization Job that was not rolled out is told once on the rule's channels.

The operator writes the handled Job on the workload (``agentmedic.io/prompt-job``); the
engine reads it as ``AgentInput.prompt_job`` and sends one message, kept open while the
episode that started the Job fires and resolved (same key) when it is over. The policy's
``told`` memory is stored with the outbox: these tests restart the engine from its stored
state (a JSON round trip) between the Job failing and the send, and after the send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any

from agentmedic.actions.prompt_record import PROMPT, PROMPT_JOB, parse_prompt_job
from agentmedic.engine import DecisionReason, PolicyState
from agentmedic.engine.inputs import PromptJobOutcome, episode_key
from agentmedic.operator.configmaps import ModelReads
from agentmedic.operator.watch import CachedWorkload
from tests.unit.test_engine_builders import (
    HEALTHY,
    NS,
    SICK,
    UID,
    Sim,
    agent,
    cond,
    fleet,
    policy,
    rule,
)

JOB = "a0-r-1a2b3c"
REASON = (
    f"prompt-optimization Job {JOB} failed (DeadlineExceeded: Job was active longer than "
    f"specified deadline) without a result; the prompt is unchanged (kubectl logs job/{JOB})"
)


def _sim() -> Sim:
    spec = policy(rule("r", cond(), actions=["promptOptimization"], recoverFor="0s"))
    return Sim(spec, fleet(2))


def _fail_job(sim: Sim, *, uid: str = UID) -> PromptJobOutcome:
    """The operator settled the episode's Job as failed: its record is on the workload."""
    assert sim.state is not None
    rs = sim.state.agent(agent("a0")).rules["r"]
    assert rs.episode is not None
    assert rs.firing_since is not None
    episode = rs.episode if uid == UID else episode_key(uid, agent("a0"), "r", rs.firing_since)
    o = PromptJobOutcome(JOB, "Failed", REASON, episode, "r", sim.now)
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), prompt_job=o))
    return o


def _job_messages(o: Any) -> list[Any]:
    return [n for n in o.notifications if ":prompt-job:" in n.episode]


def _restart(sim: Sim) -> None:
    assert sim.state is not None
    sim.state = PolicyState.from_dict(json.loads(json.dumps(sim.state.to_dict())))


def test_a_failed_job_is_told_once_with_its_reason_and_what_to_do() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    _fail_job(sim)
    (n,) = _job_messages(sim.step(HEALTHY, a0=SICK))
    assert (n.state, n.channels, n.rule) == ("firing", ("oncall",), "r")
    assert n.reason_code == DecisionReason.PROMPT_JOB_NOT_ROLLED_OUT
    assert JOB in n.summary
    assert "DeadlineExceeded" in n.summary
    assert f"kubectl logs job/{JOB} -n {NS}" in n.summary
    assert n.action is not None
    assert n.action.startswith("none: the prompt is unchanged")
    # While the episode fires: never said again (no reminder, not after a restart either).
    for _ in range(10):
        _restart(sim)
        assert not _job_messages(sim.step(HEALTHY, a0=SICK, after=timedelta(hours=2)))
    # The episode ends: the page resolves with the same key; then nothing more.
    (r,) = _job_messages(sim.step(HEALTHY))
    assert (r.state, r.episode) == ("resolved", n.episode)
    assert "episode that started it is over" in r.summary
    for _ in range(5):
        _restart(sim)
        assert not _job_messages(sim.step(HEALTHY, a0=SICK))


def test_a_restart_between_the_failure_and_the_send_sends_it_once() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    stored = sim.state  # what the API server holds when the operator dies
    _fail_job(sim)  # ... after the Job's outcome was written on the workload
    sim.state = stored
    _restart(sim)
    sent = _job_messages(sim.step(HEALTHY, a0=SICK))
    assert [n.state for n in sent] == ["firing"]
    # The new leader stored the send with its outbox: the next term does not repeat it.
    _restart(sim)
    assert not _job_messages(sim.step(HEALTHY, a0=SICK))


def test_a_job_that_fails_after_its_episode_ended_is_told_and_then_resolved() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    _fail_job(sim)
    sent = _job_messages(sim.step(HEALTHY))  # the rule recovered this very cycle
    assert [n.state for n in sent] == ["firing"]
    (r,) = _job_messages(sim.step(HEALTHY))
    assert (r.state, r.episode) == ("resolved", sent[0].episode)
    assert all(not _job_messages(x) for x in sim.steps(5, HEALTHY))


def test_another_policys_job_and_a_rolled_out_one_are_not_told() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    _fail_job(sim, uid="other-policy-uid")
    assert not any(_job_messages(x) for x in sim.steps(3, HEALTHY, a0=SICK))
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), prompt_job=None))
    assert not any(_job_messages(x) for x in sim.steps(3, HEALTHY, a0=SICK))


def test_told_forgets_a_job_once_a_later_outcome_replaces_its_record() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    o = _fail_job(sim)
    sim.step(HEALTHY, a0=SICK)
    assert sim.state is not None
    assert len(sim.state.told) == 1
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), prompt_job=None))
    sim.step(HEALTHY, a0=SICK)
    assert sim.state is not None
    assert not sim.state.told
    assert o.job == JOB


def test_an_agent_missing_from_one_listing_is_not_told_again_when_it_is_back() -> None:
    sim = _sim()
    sim.step(HEALTHY, a0=SICK)
    _fail_job(sim)
    assert len(_job_messages(sim.step(HEALTHY, a0=SICK))) == 1
    a0 = sim.workload("a0")
    agents = {k: v for k, v in sim.input.agents.items() if k != agent("a0")}
    sim.input = dataclasses.replace(sim.input, agents=agents)
    for _ in range(3):
        sim.step(HEALTHY)
    assert sim.state is not None
    assert len(sim.state.told) == 1
    sim.set_workload("a0", a0)
    sent = [n for x in sim.steps(3, HEALTHY, a0=SICK) for n in _job_messages(x)]
    assert [n.state for n in sent if n.state == "firing"] == []


def test_the_record_is_read_only_when_a_job_was_not_rolled_out() -> None:
    def ann(**value: Any) -> dict[str, str]:
        return {PROMPT_JOB: json.dumps(value)}

    base = {"job": JOB, "status": "Failed", "reason": REASON, "at": "2026-12-01T10:00:00Z"}
    full = {**base, "rolledOut": False, "episode": f"{UID}:{NS}/a0:r:1", "rule": "r"}
    o = parse_prompt_job(ann(**full))
    assert o is not None
    assert (o.job, o.status, o.rule, o.at.tzinfo is not None) == (JOB, "Failed", "r", True)
    assert parse_prompt_job(ann(**{**full, "status": "Completed"})) is None  # left to the Job
    assert parse_prompt_job(ann(**{**base, "status": "Succeeded"})) is None  # rolled out
    assert parse_prompt_job(ann(**base)) is None  # written before episodes were kept
    assert parse_prompt_job(ann(**{**full, "at": "yesterday"})) is None
    assert parse_prompt_job({PROMPT_JOB: "not json"}) is None
    assert parse_prompt_job({}) is None


def test_the_operator_gives_the_engine_the_live_prompt_and_the_handled_job() -> None:
    rollout = {
        "configMapKey": {"name": "a0-prompt", "key": "system"},
        "version": "system.v2",
        "previous": "system.before-v1",
        "sha256": "0" * 64,
    }
    handled = {
        "job": JOB,
        "status": "Failed",
        "reason": REASON,
        "at": "2026-12-01T10:00:00Z",
        "rolledOut": False,
        "episode": f"{UID}:{NS}/a0:r:1",
        "rule": "r",
    }
    w = CachedWorkload(
        kind="Deployment",
        namespace=NS,
        name="a0",
        uid="u",
        resource_version="1",
        agent="a0",
        replicas=1,
        labels={},
        annotations={PROMPT: json.dumps(rollout), PROMPT_JOB: json.dumps(handled)},
        env={("agent", "MODEL"): "gpt-4o"},
    )
    reads = ModelReads(None)  # type: ignore[arg-type]  # env models need no API call
    got = asyncio.run(reads.engine_workload(w, policy(rule("r", cond()))))
    assert got.prompt_version == "system.v2"
    assert got.model == "gpt-4o"
    assert got.prompt_job is not None
    assert (got.prompt_job.job, got.prompt_job.episode) == (JOB, f"{UID}:{NS}/a0:r:1")
    bare = dataclasses.replace(w, annotations={})
    none = asyncio.run(reads.engine_workload(bare, policy(rule("r", cond()))))
    assert (none.prompt_version, none.prompt_job) == (None, None)
