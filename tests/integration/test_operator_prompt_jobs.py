"""The operator and prompt-optimization Jobs, in-process on the API emulator: a latency
spike starts a Job, the Job runs ``optimize-prompt``'s logic against a loopback model,
the next cycle rolls the candidate out (status, record, Event) and ``agentmedic restore``
undoes it; a rejected candidate is reported once and no second Job is started; a Job that
ran out of time is told once on the rule's channels, an operator restart between its
failure and the send included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentmedic.actions.prompt_record import PROMPT, PROMPT_JOB
from agentmedic.cli.main import main
from agentmedic.kube import Kube
from agentmedic.metrics import QueryResult, Sample
from agentmedic.operator.app import Operator
from agentmedic.optimize import ModelSettings, OptimizeSettings, optimize
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.model_server import ModelServer, Reply
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind
from tests.integration.operator_support import InstantBackend, in_loop_operator, receivers_secret

NS = "agents"
API = "agentmedic.io/v1alpha1"
INTERVAL = timedelta(seconds=30)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AGENTS = ("fast-bot", "slow-bot")
PROMPT_TEXT = (
    "You answer {customer}.\nExample: a parcel.\nExample: a refund.\nBe brief.\nBe brief.\n"
    "Never share card numbers. [required]\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class SlowFleet(InstantBackend):
    """Every agent's p95 latency is 12 s (over the rule's 8 s); everything else healthy."""

    async def query(self, promql: str, at: datetime) -> QueryResult:
        value = 12_000.0 if "duration" in promql else 0.99
        samples = tuple(Sample({"agent": a, "namespace": NS}, value) for a in AGENTS)
        return QueryResult("vector", samples=samples)


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AgentPolicy",
        "metadata": {"name": "latency", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"team": "a"}},
            "interval": "30s",
            "prompt": {"configMapKey": {"name": "{{workload}}-prompt", "key": "system"}},
            "rules": [
                {
                    "name": "latency-spike",
                    "all": [{"metric": "latency_p95_ms", "window": "5m", "op": ">", "value": 8000}],
                    "actions": [
                        {
                            "promptOptimization": {
                                "jobTemplate": {
                                    "spec": {
                                        "backoffLimit": 0,
                                        "template": {
                                            "spec": {
                                                "containers": [
                                                    {
                                                        "name": "optimizer",
                                                        "image": "agentmedic:test",
                                                        "command": [
                                                            "agentmedic",
                                                            "optimize-prompt",
                                                        ],
                                                    }
                                                ]
                                            }
                                        },
                                    }
                                }
                            }
                        }
                    ],
                }
            ],
        },
    }


def _agent(emu: ApiEmulator, name: str) -> None:
    emu.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"team": "a"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    emu.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-prompt", "namespace": NS},
            "data": {"system": PROMPT_TEXT},
        }
    )


@pytest.fixture
async def world() -> AsyncIterator[tuple[ApiEmulator, Operator, Clock]]:
    with ApiEmulator(history_limit=5000) as emu:
        emu.create(_policy())
        for name in AGENTS:
            _agent(emu, name)
        clock = Clock()
        op = await _started(emu, clock)
        try:
            yield emu, op, clock
        finally:
            await op.stop()


async def _cycle(op: Operator, clock: Clock) -> None:
    clock.now += INTERVAL
    await op.run_cycle(INTERVAL)
    await asyncio.sleep(0.05)  # let the watch see what the cycle wrote


def _run_job(emu: ApiEmulator, job: dict[str, Any], model: ModelServer) -> None:
    """What the Job's container does, then the Job controller's part."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = OptimizeSettings(
        namespace=env["AGENTMEDIC_NAMESPACE"],
        config_map=env["AGENTMEDIC_PROMPT_CONFIGMAP"],
        key=env["AGENTMEDIC_PROMPT_KEY"],
        job=env["AGENTMEDIC_JOB"],
        model=ModelSettings(base_url=model.base_url, model="m", api_key="sk-x"),
        termination_log=None,
    )
    kube = Kube.from_configuration(emu.client_configuration())
    try:
        optimize(kube, settings, sleep=lambda s: None)
    finally:
        kube.close()
    done = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    name = job["metadata"]["name"]
    emu.patch("batch/v1", "Job", NS, name, {"status": done}, subresource="status")


def _recent(emu: ApiEmulator) -> list[dict[str, Any]]:
    policy = emu.get(API, "AgentPolicy", NS, "latency") or {}
    return list((policy.get("status") or {}).get("recentActions") or [])


async def test_a_succeeded_job_is_rolled_out_and_a_rejected_one_reported_once(
    world: tuple[ApiEmulator, Operator, Clock],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu, op, clock = world
    await op.run_cycle(INTERVAL)
    jobs = {
        j["metadata"]["labels"]["agentmedic.io/agent"]: j for j in emu.list("batch/v1", "Job", NS)
    }
    assert sorted(jobs) == sorted(AGENTS), "the spike starts one Job per agent"

    with ModelServer() as model:
        _run_job(emu, jobs["fast-bot"], model)
        model.script.append(Reply(answer="Answer briefly. Never share card numbers. [required]"))
        _run_job(emu, jobs["slow-bot"], model)
    for _ in range(4):
        await _cycle(op, clock)

    fast = emu.get("v1", "ConfigMap", NS, "fast-bot-prompt") or {}
    assert fast["data"]["system"] == fast["data"]["system.v1"] != PROMPT_TEXT
    assert fast["data"]["system.before-v1"] == PROMPT_TEXT
    slow = emu.get("v1", "ConfigMap", NS, "slow-bot-prompt") or {}
    assert slow["data"] == {"system": PROMPT_TEXT}, "a rejected candidate changes nothing"

    lines = [r for r in _recent(emu) if r["action"] == "promptOptimization"]
    rolled = [r for r in lines if "rolled out prompt system.v1" in r["reason"]]
    reported = [r for r in lines if "Rejected" in r["reason"]]
    assert [(r["agent"], r["outcome"]) for r in rolled] == [("agents/fast-bot", "Applied")]
    assert [(r["agent"], r["outcome"]) for r in reported] == [("agents/slow-bot", "Failed")]
    assert rolled[0]["rule"] == "latency-spike"
    assert (
        rolled[0]["episode"] == jobs["fast-bot"]["metadata"]["annotations"]["agentmedic.io/episode"]
    )
    events = [e for e in emu.list("v1", "Event", NS) if e["reason"] == "PromptJobNotRolledOut"]
    assert len([e for e in events if e["involvedObject"]["kind"] == "Deployment"]) == 1
    assert len(emu.list("batch/v1", "Job", NS)) == 2, "the episode starts no second Job"
    slow_bot = emu.get("apps/v1", "Deployment", NS, "slow-bot") or {}
    assert json.loads(slow_bot["metadata"]["annotations"][PROMPT_JOB])["status"] == "Rejected"

    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    capsys.readouterr()
    assert main(["status", "-n", NS, "--kubeconfig", str(kubeconfig), "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [changed] = [w for w in shown["remediated"] if w["name"] == "fast-bot"]
    assert changed["changes"] == ["prompt system → system.v1 (was system.before-v1)"]
    assert changed["undo"] == "agentmedic restore deployment/fast-bot -n agents"
    code = main(["restore", "deployment/fast-bot", "-n", NS, "--kubeconfig", str(kubeconfig)])
    assert code == 0, capsys.readouterr()
    fast = emu.get("v1", "ConfigMap", NS, "fast-bot-prompt") or {}
    assert fast["data"]["system"] == PROMPT_TEXT
    fast_bot = emu.get("apps/v1", "Deployment", NS, "fast-bot") or {}
    assert PROMPT not in fast_bot["metadata"]["annotations"]
    await _cycle(op, clock)
    fast = emu.get("v1", "ConfigMap", NS, "fast-bot-prompt") or {}
    assert fast["data"]["system"] == PROMPT_TEXT, "a handled Job is not rolled out again"


# ------------------------------------------------- a failed Job reaches the rule's channels


def _paged_policy(pagerduty_url: str) -> dict[str, Any]:
    doc = _policy()
    spec = doc["spec"]
    spec["rules"][0]["actions"].append({"notify": {"channels": ["pager", "hook"]}})
    spec["notifications"] = {
        "channels": [
            {
                "name": "pager",
                "pagerduty": {
                    "routingKeySecretRef": {"name": "notify", "key": "pagerduty-routing-key"},
                    "url": pagerduty_url,
                },
            },
            {"name": "hook", "webhook": {"urlSecretRef": {"name": "notify", "key": "webhook-url"}}},
        ]
    }
    return doc


async def _started(emu: ApiEmulator, clock: Clock) -> Operator:
    """An operator process, as after a (re)start: nothing in memory but what it reads."""
    op = in_loop_operator(
        emu.client_configuration(),
        namespaces=[NS],
        clock=clock,
        backend=SlowFleet(),
    )
    await op.start()
    await op.register(emu.get(API, "AgentPolicy", NS, "latency") or {})
    for _ in range(2000):
        if op.cache.workloads(NS, op.entries[(NS, "latency")].selector):
            return op
        await asyncio.sleep(0.01)
    raise AssertionError("the operator never listed the workloads")


def _job_pages(rx: NotificationReceivers) -> tuple[list[Any], list[Any]]:
    """(PagerDuty events, webhook messages) about a prompt-optimization Job."""
    pd = [r.json() for r in rx.accepted(ReceiverKind.PAGERDUTY)]
    hooks = [r.json() for r in rx.accepted(ReceiverKind.WEBHOOK)]
    return (
        [e for e in pd if ":prompt-job:" in str(e.get("dedup_key"))],
        [h for h in hooks if ":prompt-job:" in str(h.get("episode"))],
    )


async def _cycles(op: Operator, clock: Clock, n: int) -> None:
    for _ in range(n):
        await _cycle(op, clock)
        await op.parts.deliveries.drain(30)


async def test_a_timed_out_job_is_told_once_on_the_rules_channels_across_restarts() -> None:
    with ApiEmulator(history_limit=5000) as emu, NotificationReceivers() as rx:
        emu.create(receivers_secret(NS, rx))
        emu.create(_paged_policy(rx.url_for(ReceiverKind.PAGERDUTY)))
        for name in AGENTS:
            _agent(emu, name)
        clock = Clock()
        op = await _started(emu, clock)
        try:
            await op.run_cycle(INTERVAL)  # the spike: one Job per agent, the rule's page
            [job] = [
                j
                for j in emu.list("batch/v1", "Job", NS)
                if j["metadata"]["labels"]["agentmedic.io/agent"] == "fast-bot"
            ]
            name = job["metadata"]["name"]
            failed = {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
            emu.patch(
                "batch/v1",
                "Job",
                NS,
                name,
                {"status": {"conditions": [failed]}},
                subresource="status",
            )
            # The cycle settles the Job (status, Event, the record on the workload) ...
            await _cycle(op, clock)
            recorded = emu.get("apps/v1", "Deployment", NS, "fast-bot") or {}
            assert json.loads(recorded["metadata"]["annotations"][PROMPT_JOB])["job"] == name
        finally:
            await op.stop()  # ... and the operator dies before any message about it
        assert _job_pages(rx) == ([], [])

        op = await _started(emu, clock)  # a new process (or a new leader)
        try:
            await _cycles(op, clock, 3)
        finally:
            await op.stop()
        pd, hooks = _job_pages(rx)
        assert [e["event_action"] for e in pd] == ["trigger"]
        assert [h["state"] for h in hooks] == ["firing"]
        assert hooks[0]["episode"] == pd[0]["dedup_key"]
        summary = hooks[0]["summary"]
        assert name in summary, summary
        assert "DeadlineExceeded" in summary
        assert f"kubectl logs job/{name} -n {NS}" in summary
        assert hooks[0]["agent"] == {"namespace": NS, "name": "fast-bot"}
        assert hooks[0]["rule"] == "latency-spike"

        op = await _started(emu, clock)  # restarted after the send: not said again
        try:
            await _cycles(op, clock, 3)
        finally:
            await op.stop()
        assert tuple(len(x) for x in _job_pages(rx)) == (1, 1)
        assert len(emu.list("batch/v1", "Job", NS)) == 2, "the failed Job is not retried"
