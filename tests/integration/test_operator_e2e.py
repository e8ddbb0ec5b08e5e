"""The whole loop: kopf running the real operator, a real Prometheus scraping a simulated
fleet that records through agentmedic.instrument, loopback Slack and PagerDuty receivers,
and the example policies from crds/examples (time-compressed). Each scenario runs on both
API servers (ids ``emulated`` and ``real``): the emulator, and the session's real control
plane, where the operator holds a ServiceAccount token bound to the declared permissions
and the API server's audit log shows what it did.

One scenario run is shared by the tests of the first part; each test asserts one promise.
The fleet: flaky-bot's success collapses, slow-bot's latency spikes, spendy-bot burns its
budget on gpt-4o, the helpers are healthy; at 80-100 s (simulated) every agent fails at
once (a provider outage), then everything recovers.

The scenarios run at twice the demo's pace (:data:`SPEED`): the fleet's clock runs at twice
the wall clock and the policies are compressed twice as much, so every window, ``for``,
cooldown and budget period spans the same simulated seconds of the script as in the demo,
with the same number of executions in it; the scenario plays out in about a minute.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentmedic.actions.permissions import REQUIRED_PERMISSIONS as ACTION_PERMISSIONS
from agentmedic.actions.permissions import permission_for_request
from agentmedic.actions.prompt_record import parse_prompt
from agentmedic.actions.record import DISABLED, DOWNGRADED, parse_disabled, parse_downgraded
from agentmedic.operator.permissions import REQUIRED_PERMISSIONS as OPERATOR_PERMISSIONS
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.fleet_sim import AgentSpec, Behaviour
from agentmedic_sandbox.world import (
    NAMESPACE,
    Scenario,
    World,
    compress_policy,
    demo_scenario,
    example_policies,
)
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    RealServer,
    WorldServer,
    wait_for,
)

HELPERS = [f"helper-{i}" for i in range(1, 8)]

SPEED = 2.0
"""How much faster than the wall clock the worlds' simulated clock runs."""
FACTOR = 30.0 * SPEED
"""The policies' time compression: the demo's 30 at its pace of 1, times :data:`SPEED`."""


def _missing(world: World, *, spendy_may_stop: bool = False) -> list[str]:
    """What of the scenario's expected remediations has not happened (yet).
    ``spendy_may_stop``: spendy-bot stopped at its ceiling counts as its budget's action."""
    pages = world.pages()
    systemic = [p for p in pages if ":*:" in p.get("dedup_key", "")]
    expected = {
        "flaky-bot at 0 replicas": lambda: world.replicas("flaky-bot") == 0,
        f"spendy-bot on gpt-4o-mini (on {world.model('spendy-bot')}, "
        f"{world.deployment('spendy-bot')['metadata'].get('annotations', {})})": lambda: (
            world.model("spendy-bot") == "gpt-4o-mini"
            or (spendy_may_stop and world.replicas("spendy-bot") == 0)
        ),
        "a Job": lambda: len(world.jobs()) >= 1,
        "the outage resolved": lambda: any(p["event_action"] == "resolve" for p in systemic),
    }
    return [what for what, happened in expected.items() if not happened()]


def _done(world: World) -> bool:
    return not _missing(world)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> RealServer | None:
    """The real control plane, or None for a world with its own emulator."""
    if request.param == REAL:
        real: RealServer = request.getfixturevalue("real_server")
        return real
    return None


def _api(server: RealServer | None) -> WorldServer | None:
    return None if server is None else WorldServer(server, [NAMESPACE])


@pytest.fixture(scope="module")
def healed(server: RealServer | None) -> Iterator[World]:
    """Run the demo scenario until every expected remediation happened (or 170 s), and its
    policies' status shows them."""
    scenario = demo_scenario(agents=10, duration=150.0, factor=FACTOR)
    world = World(scenario, api=_api(server), speed=SPEED).start()
    try:
        deadline = time.monotonic() + 170
        while time.monotonic() < deadline and not _done(world):
            time.sleep(0.2)
        # Status and the last messages follow the actions by a cycle or two (the tests check
        # them, and fail themselves if they never come).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _settled(world):
            time.sleep(0.2)
        yield world
    finally:
        world.stop()


def _settled(world: World) -> bool:
    """The writes and sends that follow the remediations have landed: the status counts
    them and Slack got the outage's resolve as PagerDuty did."""
    agents = world.policy("auto-disable").get("status", {}).get("agents", {})
    texts = [m.get("text", "") for m in world.slack_messages()]
    return bool(
        agents.get("disabled") == 1
        and agents.get("downgraded") == 1
        and any(t.startswith("Resolved: low-success on policy") for t in texts)
    )


def _events(world: World, name: str) -> list[dict[str, Any]]:
    return [e for e in world.events() if e["involvedObject"].get("name") == name]


def test_failing_agent_is_scaled_to_zero_with_its_record_and_events(healed: World) -> None:
    deployment = healed.deployment("flaky-bot")
    assert deployment["spec"]["replicas"] == 0
    record = parse_disabled(deployment["metadata"]["annotations"])
    assert record is not None
    assert record.replicas == 2
    assert record.rule == "low-success"
    assert record.policy == "agents/auto-disable"
    reasons = {e["reason"] for e in _events(healed, "flaky-bot")}
    assert "ScaledToZero" in reasons
    policy_events = {e["reason"] for e in _events(healed, "auto-disable")}
    assert "ScaledToZero" in policy_events


def test_over_budget_agent_moves_one_tier_cheaper(healed: World) -> None:
    deployment = healed.deployment("spendy-bot")
    assert healed.model("spendy-bot") == "gpt-4o-mini"
    record = parse_downgraded(deployment["metadata"]["annotations"])
    assert record is not None
    assert record.model == "gpt-4o"
    assert record.rule == "budget.soft"
    assert deployment["spec"]["replicas"] == 2, "the soft limit switches the model, nothing more"
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["agent", "log-shipper"]
    env = {v["name"]: v["value"] for v in containers[0]["env"]}
    assert env == {"OPENAI_MODEL": "gpt-4o-mini", "AGENT_NAME": "spendy-bot", "LOG_LEVEL": "info"}


def test_slow_agent_gets_exactly_one_prompt_optimization_job(healed: World) -> None:
    jobs = healed.jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["labels"]["agentmedic.io/agent"] == "slow-bot"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("AgentPolicy", "latency-spike")
    env = {
        v["name"]: v.get("value") for v in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AGENTMEDIC_AGENT"] == "slow-bot"
    assert env["AGENTMEDIC_RULE"] == "latency-spike"
    assert json.loads(env["AGENTMEDIC_EVIDENCE"])["conditions"][0]["metric"] == "latency_p95_ms"
    assert (env["AGENTMEDIC_PROMPT_CONFIGMAP"], env["AGENTMEDIC_PROMPT_KEY"]) == (
        "slow-bot-prompt",
        "system-prompt",
    )


def test_slow_agent_runs_the_shorter_prompt_its_job_wrote(healed: World) -> None:
    healed.wait_until(
        lambda: parse_prompt(healed.deployment("slow-bot")["metadata"]["annotations"]) is not None,
        timeout=30,
        what="slow-bot's prompt to be rolled out",
    )
    rolled = parse_prompt(healed.deployment("slow-bot")["metadata"]["annotations"])
    assert rolled is not None
    assert (rolled.version, rolled.previous) == ("system-prompt.v1", "system-prompt.before-v1")
    cm = healed.emulator.get("v1", "ConfigMap", NAMESPACE, "slow-bot-prompt") or {}
    assert cm["data"]["system-prompt"] == cm["data"]["system-prompt.v1"]
    assert len(cm["data"]["system-prompt.v1"]) < len(cm["data"]["system-prompt.before-v1"])


def test_systemic_outage_pages_once_and_disables_nobody(healed: World) -> None:
    systemic = [p for p in healed.pages() if ":*:low-success:" in p.get("dedup_key", "")]
    triggers = [p for p in systemic if p["event_action"] == "trigger"]
    assert len({p["dedup_key"] for p in triggers}) == 1, triggers
    assert "no agent is disabled" in triggers[0]["payload"]["summary"]
    for name in ["slow-bot", "spendy-bot", *HELPERS]:
        assert healed.replicas(name) == 2, f"{name} was disabled during the outage"
        assert DISABLED not in healed.deployment(name)["metadata"].get("annotations", {})


def test_receivers_get_firing_then_resolved_messages(healed: World) -> None:
    pages = healed.pages()
    by_key: dict[str, list[str]] = {}
    for page in pages:
        by_key.setdefault(page["dedup_key"], []).append(page["event_action"])
    systemic = next(k for k in by_key if ":*:low-success:" in k)
    assert by_key[systemic] == ["trigger", "resolve"]
    flaky = next(k for k in by_key if ":agents/flaky-bot:low-success:" in k)
    assert by_key[flaky][0] == "trigger"
    texts = [m.get("text", "") for m in healed.slack_messages()]
    assert any(
        t.startswith("Firing") and "agents/flaky-bot" in t and "low-success" in t for t in texts
    ), texts
    assert any(
        t.startswith("Resolved") and "policy agents/auto-disable" in t and "low-success" in t
        for t in texts
    ), texts
    flaky_slack = next(m for m in healed.slack_messages() if "flaky-bot" in m.get("text", ""))
    assert "agentmedic restore deployment/flaky-bot -n agents" in json.dumps(flaky_slack["blocks"])


def test_status_conditions_and_counts_are_right(healed: World) -> None:
    status = healed.policy("auto-disable")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["MetricsAvailable"]["status"] == "True"
    assert conditions["Remediating"]["status"] == "True"
    assert conditions["Remediating"]["reason"] == "AgentsRemediated"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    agents = status["agents"]
    assert agents["total"] == 10
    assert agents["disabled"] == 1
    assert agents["downgraded"] == 1
    assert agents["healthy"] + agents["pending"] + agents["breaching"] + agents["noData"] == 8
    recent = status["recentActions"]
    assert any(a["action"] == "scaleToZero" and a["outcome"] == "Applied" for a in recent)
    budget = healed.policy("daily-budget")["status"]
    assert budget["spend"]["limitUSD"] == 20.0
    assert budget["spend"]["usd"] > 16.0


def test_every_api_request_is_covered_by_the_declared_permissions(
    healed: World, server: RealServer | None
) -> None:
    """Closes the loop from code to chart: the chart's RBAC is checked against these lists.
    On the emulator every recorded request is mapped to its permission; on the real server
    the operator held exactly these permissions, and no request of it was refused."""
    if server is not None:
        entries = _audit(server, OPERATOR_USER)
        assert entries
        refused = {(e["verb"], e["requestURI"]) for e in entries if _code(e) == 403}
        assert refused == set()
        return
    allowed = {(p.group, p.resource, p.verb) for p in ACTION_PERMISSIONS}
    allowed |= {(g, r, v) for g, r, v in OPERATOR_PERMISSIONS}
    missing = set()
    seen = 0
    emulator = healed.emulator
    assert isinstance(emulator, ApiEmulator)
    for request in emulator.requests:
        if request.verb == "discovery":
            continue
        watch = "?watch=true" if request.verb == "watch" else ""
        needed = permission_for_request(request.method, request.path + watch)
        seen += 1
        if (needed.group, needed.resource, needed.verb) not in allowed:
            missing.add((needed.group, needed.resource, needed.verb))
    assert seen > 0
    assert missing == set()


OPERATOR_USER = "system:serviceaccount:agentmedic-system:agentmedic"
_WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def _code(entry: dict[str, Any]) -> int:
    return int((entry.get("responseStatus") or {}).get("code", 0))


def _audit(server: RealServer, user: str) -> list[dict[str, Any]]:
    """The real API server's audit entries (metadata level) of one user."""
    path = Path(server.cluster.audit_log_path)
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get("user", {}).get("username") == user]


def _received(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))


def _writes_between(server: RealServer, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """The operator's writes the API server received between ``start`` and ``end``, once the
    audit log (written in batches) holds a request received after ``end``."""
    marker = f"audit-mark-{int(end.timestamp() * 1000)}"
    assert server.get("v1", "ConfigMap", "default", marker) is None  # a request after `end`
    wait_for(
        lambda: any(marker in e["requestURI"] for e in _audit(server, "agentmedic-admin")),
        "the audit log to reach past the window",
    )
    return [
        (e["verb"], e["requestURI"])
        for e in _audit(server, OPERATOR_USER)
        if e["verb"] in _WRITE_VERBS and start <= _received(e) <= end
    ]


# --------------------------------------------------------------------------- steady state


def _calm_scenario() -> Scenario:
    base = Behaviour(latency_s=1.0, error_rate=0.01)
    agents = [
        AgentSpec(f"calm-{i}", "agents", "gpt-4o-mini", rate=10.0, base=base, replicas=2)
        for i in range(4)
    ]
    examples = example_policies()
    policies = [
        compress_policy(examples[name], FACTOR, budget_limit_usd=1000.0, calendar_budget=True)
        for name in ("auto-disable", "finance-budget", "quality-degradation")
    ]
    for policy in policies:  # a forecast settles once its burn-rate window has filled
        if "budget" in policy["spec"]:
            policy["spec"]["budget"]["forecastWindow"] = f"{STEADY_FILL_S}s"
    roles = {a.name: "healthy" for a in agents}
    return Scenario(
        agents=agents, roles=roles, policies=policies, duration=60.0, time_compression=FACTOR
    )


STEADY_FILL_S = 15
"""The calm scenario's longest window (15m compressed by FACTOR) and its budget's forecast
window: after them every rule and forecast has settled."""


# At twice the demo's pace, as the other scenarios: the spend a faster fleet adds is no
# reason to write, since status takes a new spend figure at most once per
# spendRefreshSeconds (5 minutes, longer than this test) unless a budget stage changes.
# It runs beside the other units in a parallel run.
@pytest.mark.schedule_alone
def test_steady_state_costs_no_api_writes(server: RealServer | None) -> None:
    """Over 20 cycles with unchanged (healthy) metrics the operator writes nothing."""
    with World(_calm_scenario(), api=_api(server), speed=SPEED) as world:
        world.wait_until(
            lambda: all(
                world.policy(p["metadata"]["name"]).get("status", {}).get("agents", {}).get("total")
                == 4
                for p in world.scenario.policies
            ),
            timeout=60,
            what="every policy's first status",
        )
        time.sleep(STEADY_FILL_S + 3)  # the windows fill; the first transitions settle
        emulator = world.emulator if isinstance(world.emulator, ApiEmulator) else None
        if emulator is not None:
            emulator.clear_requests()
        start = datetime.now(UTC)
        op = world.operator
        before = op.cycles_completed
        world.wait_until(
            lambda: op.cycles_completed - before >= 20, timeout=60, what="20 evaluation cycles"
        )
        end = datetime.now(UTC)
        if emulator is not None:
            writes = [(r.method, r.path) for r in emulator.requests if r.is_write]
        else:
            assert server is not None
            writes = _writes_between(server, start, end)
        assert writes == []
        assert op.cycles_completed - before >= 20


# --------------------------------------------------------------------------- crash safety


RANDOM_KILLS = 10
"""Kills at random moments: the operator lives ``uniform(0.5, 4.0)`` seconds each time
after its first evaluation cycle (not from its process' start: on a loaded machine
importing the operator and its first lists alone can take longer than that, and a life
that never evaluates tests nothing and only eats the scenario's time)."""


def _phases(world: World) -> dict[str, Callable[[], bool]]:
    """The moments where a crash could repeat or lose something: just after each kind of
    action, page and resolve (before the operator has recorded, settled and told)."""

    def systemic(state: str) -> bool:
        return any(":*:" in p.get("dedup_key", "") for p in world.pages(state))

    return {
        "flaky-bot scaled to zero": lambda: world.replicas("flaky-bot") == 0,
        # Its soft stage moves it a tier down; when the operator was down while spend crossed
        # the soft line it may first see spend past the ceiling, and the hard stage (scale to
        # zero) rightly wins: either is the budget's action, and either must be recorded.
        "spendy-bot's budget acted": lambda: (
            world.model("spendy-bot") == "gpt-4o-mini" or world.replicas("spendy-bot") == 0
        ),
        "slow-bot's Job created": lambda: len(world.jobs()) >= 1,
        "the outage paged": lambda: systemic("trigger"),
        "the outage resolved": lambda: systemic("resolve"),
    }


def _evaluating(world: World) -> int:
    """How many operator processes have finished their first evaluation cycle."""
    if not world.operator_log.exists():
        return 0
    return world.operator_log.read_text(errors="replace").count("first evaluation cycle done")


def _log_tail(world: World, lines: int = 60) -> str:
    """The end of the operator processes' log, for a failure message; the whole log is kept
    in a temporary folder of its own (the world's goes with it)."""
    text = world.operator_log.read_text(errors="replace") if world.operator_log.exists() else ""
    kept = Path(tempfile.mkdtemp(prefix="sigkill-")) / "operator.log"
    kept.write_text(text)
    return f"operator log (whole: {kept}; end):\n" + "\n".join(text.splitlines()[-lines:])


@pytest.mark.schedule_alone
def test_sigkill_at_random_points_never_repeats_or_loses_an_action(
    server: RealServer | None, request: pytest.FixtureRequest
) -> None:
    """SIGKILL the operator at random moments of the remediation episodes and at once after
    each kind of action, page and resolve appears; after each restart it carries on from
    the record on the workloads: no second Job, no second incident per episode, every
    recorded previous value intact."""
    rng = random.Random(20261127)
    scenario = demo_scenario(agents=6, duration=150.0, factor=FACTOR)
    with World(scenario, operator="process", api=_api(server), speed=SPEED) as world:
        phases = _phases(world)
        killed_after: set[str] = set()
        kills = random_kills = phase_kills = 0
        # The phases come from the scenario's timeline (150 s); the random kills are drawn
        # in the current operator's life, which is longer on a loaded machine: the deadline
        # is a bound for a failure, not a pace.
        deadline = time.monotonic() + 240
        next_kill: float | None = None  # drawn once the current operator has evaluated
        # First cycles logged before the current process was launched: a process killed before
        # its first cycle (two phases seen in a row) never logs its own.
        evaluated_before = 0
        assert scenario.outage is not None
        outage_start = scenario.outage[0]

        def in_outage() -> bool:
            """From shortly before the outage until its page resolved no kill is drawn at
            random (the phases kill just after the page and the resolve): an outage shorter
            than a few restarts on a loaded machine would rightly page nobody."""
            started = world.elapsed() >= outage_start - 10.0
            return started and "the outage resolved" not in killed_after

        while random_kills < RANDOM_KILLS or killed_after != set(phases):
            if time.monotonic() > deadline:
                missing = sorted(set(phases) - killed_after)
                pytest.fail(
                    f"after {kills} kills ({random_kills} of {RANDOM_KILLS} at random), never "
                    f"saw: {', '.join(missing) or 'nothing missing'}\n{_log_tail(world)}"
                )
            seen = {
                name for name, happened in phases.items() if name not in killed_after and happened()
            }
            if next_kill is None and _evaluating(world) > evaluated_before:
                next_kill = time.monotonic() + rng.uniform(0.5, 4.0)
            if seen:
                killed_after |= seen
                phase_kills += 1
            elif (
                random_kills < RANDOM_KILLS
                and next_kill is not None
                and time.monotonic() >= next_kill
                and not in_outage()
            ):
                random_kills += 1
            else:
                time.sleep(0.1)
                continue
            world.kill_operator()
            kills += 1
            evaluated_before = _evaluating(world)
            world.start_operator()
            next_kill = None
        deadline = time.monotonic() + 120
        while missing := _missing(world, spendy_may_stop=True):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"after {kills} crashes, still missing: {', '.join(missing)}\n"
                    f"{_log_tail(world)}"
                )
            time.sleep(0.2)
        time.sleep(3)  # a repeated action or page would show in this time
        flaky = parse_disabled(world.deployment("flaky-bot")["metadata"]["annotations"])
        assert flaky is not None
        assert flaky.replicas == 2
        assert world.replicas("flaky-bot") == 0
        spendy = world.deployment("spendy-bot")["metadata"]["annotations"]
        downgraded, stopped = parse_downgraded(spendy), parse_disabled(spendy)
        assert downgraded is not None or stopped is not None, spendy
        if downgraded is not None:
            assert downgraded.model == "gpt-4o"
            assert world.model("spendy-bot") == "gpt-4o-mini"
        if stopped is not None:
            assert stopped.replicas == 2
            assert world.replicas("spendy-bot") == 0
        assert len(world.jobs()) == 1
        triggers = Counter(p["dedup_key"] for p in world.pages("trigger"))
        episodes = {k.rsplit(":", 1)[0] for k in triggers}
        assert len(episodes) == len(triggers), f"an episode was paged under two keys: {triggers}"
        for name in ("slow-bot", "helper-1", "helper-2", "helper-3"):
            assert world.replicas(name) == 2
            assert DOWNGRADED not in world.deployment(name)["metadata"].get("annotations", {})
        assert random_kills == RANDOM_KILLS
        assert killed_after == set(phases)
        assert kills == random_kills + phase_kills
