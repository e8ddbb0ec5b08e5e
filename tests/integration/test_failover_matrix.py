"""Restarts and failovers never lose or repeat a page, an action or a resolve.

Operator replicas are real ``agentmedic run`` subprocesses electing a leader on a Lease
(short leases, one-second cycles) against the in-process API emulator; metrics come from a
scripted loopback Prometheus API that says one agent is sick or well; notifications go to
the loopback PagerDuty and webhook receivers. The active replica gets SIGTERM or SIGKILL
between firing and resolve, during an action (its Job POST held by the emulator) and during
a notification (its PagerDuty POST held by the receiver); the replica it replaced comes
back as a standby. Each cell ends with the episode announced once and resolved once on
every channel (PagerDuty by dedup_key, the webhook by delivery id), one Job, and the
outbox empty.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentmedic.api.durations import TIME_COMPRESSION_ENV
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind

NS = "agents"
API = "agentmedic.io/v1alpha1"
LEASE = "agentmedic-matrix"
AGENT = "bot-1"
DELIVERY = "x-agentmedic-delivery"


# --------------------------------------------------------------------------- the world


class ScriptedPrometheus:
    """Answers every instant query with one sample per agent: 1 when sick, else 0."""

    def __init__(self) -> None:
        self.sick: set[str] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                result = [
                    {
                        "metric": {"agent": name, "namespace": NS},
                        "value": [now, "1" if name in owner.sick else "0"],
                    }
                    for name in (AGENT,)
                ]
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": result}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Receivers(NotificationReceivers):
    """The loopback receivers, counting requests as they arrive (before a hold)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[ReceiverKind, int] = dict.fromkeys(ReceiverKind, 0)

    def _handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        kind = self._route(path)
        if kind is not None:
            with self._lock:
                self.arrived[kind] += 1
        return super()._handle(method, path, headers, body)

    def clear_injections(self) -> None:
        """Answer normally again (drop the failures fail_next queued)."""
        with self._lock:
            for queue in self._injected.values():
                queue.clear()


class Emulator(ApiEmulator):
    """The API emulator with a longer request history (its ``faults_taken`` tells when an
    injected fault has caught its request)."""

    def __init__(self) -> None:
        super().__init__(history_limit=5000)


def _secret(name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def _seed(emu: ApiEmulator, rx: NotificationReceivers) -> None:
    data = rx.secret_data()
    emu.create(_secret("pagerduty", {"routing-key": data["pagerduty-routing-key"]}))
    emu.create(_secret("hook", {"url": data["webhook-url"]}))
    emu.create(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "prompt-optimizer", "namespace": NS},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "optimize", "image": "optimizer:1"}],
                            }
                        }
                    }
                },
            },
        }
    )
    emu.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": AGENT, "namespace": NS, "labels": {"team": "a", "app": AGENT}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": AGENT}},
                "template": {
                    "metadata": {"labels": {"app": AGENT}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    emu.create(
        {
            "apiVersion": API,
            "kind": "AgentPolicy",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"team": "a"}},
                "interval": "1s",
                "guardrails": {"cooldown": "0s", "maxDisabledPercent": 100},
                "rules": [
                    {
                        "name": "sick",
                        "all": [
                            {"query": "scripted_sickness{ {{agents}} }", "op": ">", "value": 0.5}
                        ],
                        "for": "1s",
                        "severity": "high",
                        "actions": [
                            {"promptOptimization": {"fromCronJob": "prompt-optimizer"}},
                            {"notify": {"channels": ["pager", "hook"]}},
                        ],
                    }
                ],
                "notifications": {
                    "channels": [
                        {
                            "name": "pager",
                            "pagerduty": {
                                "routingKeySecretRef": {"name": "pagerduty", "key": "routing-key"},
                                "url": rx.url_for(ReceiverKind.PAGERDUTY),
                            },
                        },
                        {
                            "name": "hook",
                            "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}},
                        },
                    ]
                },
            },
        }
    )


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def identity(self) -> str:
        return f"{socket.gethostname()}@{self.proc.pid}"

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self) -> None:
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    emu: Emulator
    rx: Receivers
    prom: ScriptedPrometheus
    tmp: Path
    replicas: list[Replica] = field(default_factory=list)

    def start_replica(self, *, election: bool = True) -> Replica:
        kubeconfig = self.emu.write_kubeconfig(self.tmp / "kubeconfig")
        log = self.tmp / f"replica-{len(self.replicas)}.log"
        args = [
            sys.executable,
            "-m",
            "agentmedic.cli",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-url",
            self.prom.url,
            "--namespaces",
            NS,
            "--peering",
            LEASE if election else "",
            *(
                [
                    "--lease-namespace",
                    NS,
                    "--lease-duration-seconds",
                    "2",
                    "--lease-renew-deadline-seconds",
                    "1.5",
                    "--lease-retry-seconds",
                    "0.25",
                ]
                if election
                else []
            ),
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--log-format",
            "text",
        ]
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=out, env=dict(os.environ))
        replica = Replica(proc, log)
        self.replicas.append(replica)
        return replica

    def holder(self) -> str | None:
        lease = self.emu.get("coordination.k8s.io/v1", "Lease", NS, LEASE) or {}
        return (lease.get("spec") or {}).get("holderIdentity") or None

    def leader(self, *, not_: str | None = None) -> Replica:
        def found() -> Replica | None:
            holder = self.holder()
            return next(
                (
                    r
                    for r in self.replicas
                    if r.identity == holder and holder != not_ and r.proc.poll() is None
                ),
                None,
            )

        leader = _wait(found, "a leader")
        assert isinstance(leader, Replica)
        return leader

    def events(self, state: str) -> list[dict[str, Any]]:
        return [
            r.json()
            for r in self.rx.accepted(ReceiverKind.PAGERDUTY)
            if r.json().get("event_action") == state
        ]

    def hooks(self, state: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (r.headers.get(DELIVERY, ""), r.json())
            for r in self.rx.accepted(ReceiverKind.WEBHOOK)
            if r.json().get("state") == state
        ]

    def jobs(self) -> list[dict[str, Any]]:
        return self.emu.list("batch/v1", "Job", NS)

    def settled(self) -> bool:
        """Nothing owed: no announced episode open in the engine's state, no reserved send."""
        policy = self.emu.get(API, "AgentPolicy", NS, "p") or {}
        annotations = policy.get("metadata", {}).get("annotations", {})
        state = json.loads(annotations.get("agentmedic.io/state") or "{}")
        notes = json.loads(annotations.get("agentmedic.io/notifications") or "{}")
        return not state.get("notices") and not notes.get("outbox")

    def stop(self) -> None:
        for r in self.replicas:
            if r.proc.poll() is None:
                r.signal(signal.SIGTERM)
        for r in self.replicas:
            r.wait()


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until ``predicate`` holds; the timeout only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(autouse=True)
def compressed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The policy's 1s interval is below the 10s minimum: run it (and the replicas, which
    # inherit the environment) time-compressed.
    monkeypatch.setenv(TIME_COMPRESSION_ENV, "10")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    prom = ScriptedPrometheus()
    with (
        Emulator() as emu,
        Receivers() as rx,
        tempfile.TemporaryDirectory(prefix="agentmedic-matrix-") as tmp,
    ):
        _seed(emu, rx)
        c = Cluster(emu, rx, prom, Path(tmp))
        try:
            yield c
        finally:
            rx.release(ReceiverKind.PAGERDUTY)
            c.stop()
            prom.close()
            for r in c.replicas:  # pytest shows it only when the test failed
                sys.stderr.write(f"--- {r.log.name}\n{r.log.read_text()[-4000:]}\n")


# --------------------------------------------------------------------------- the matrix

POINTS = ("between firing and resolve", "during an action", "during a notification")


@dataclass
class Cell:
    signal: signal.Signals
    point: str
    replicas: int = 2
    kills: int = 1
    problems: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return not self.problems


def _run(c: Cluster, cell: Cell) -> None:
    if cell.signal is signal.SIGSTOP:
        _run_paused(c, cell)
        return
    for _ in range(cell.replicas):
        c.start_replica()
    leader = c.leader()
    if cell.point == "during an action":
        # The Job's POST is held for 2 s before the emulator handles it.
        c.emu.inject(method="POST", path_regex=r"/jobs$", status=200, delay=2.0)
    elif cell.point == "during a notification":
        c.rx.hold(ReceiverKind.PAGERDUTY)
    c.prom.sick.add(AGENT)
    for kill in range(cell.kills):
        if kill == 0 and cell.point == "during an action":
            _wait(lambda: c.emu.faults_taken >= 1, "the Job POST in flight")
        elif kill == 0 and cell.point == "during a notification":
            _wait(lambda: c.rx.arrived[ReceiverKind.PAGERDUTY] >= 1, "the page in flight")
        else:
            _wait(lambda: c.events("trigger") and c.jobs(), "the page and the Job")
        leader.signal(cell.signal)
        if cell.signal is signal.SIGTERM:
            # A clean stop finishes what it has in flight before it hands over.
            c.rx.release(ReceiverKind.PAGERDUTY)
        leader.wait()
        c.rx.release(ReceiverKind.PAGERDUTY)
        gone = leader.identity
        c.start_replica()  # the replaced replica comes back, as a standby
        leader = c.leader(not_=gone)
    _wait(lambda: c.events("trigger") and c.jobs() and c.hooks("firing"), "the episode's effects")
    c.prom.sick.discard(AGENT)
    _wait(lambda: c.events("resolve") and c.hooks("resolved"), "the resolve")
    _wait(c.settled, "nothing owed")
    _judge(c, cell, episodes=1)


def _run_paused(c: Cluster, cell: Cell) -> None:
    """The leader is frozen (SIGSTOP) after paging episode 1; the standby takes over,
    resolves it and pages episode 2; then the old leader resumes with its memory of
    episode 1 and must neither resolve nor page anything from it."""
    for _ in range(cell.replicas):
        c.start_replica()
    old = c.leader()
    c.prom.sick.add(AGENT)
    _wait(lambda: c.events("trigger") and c.jobs() and c.hooks("firing"), "episode 1")
    old.signal(signal.SIGSTOP)
    c.leader(not_=old.identity)
    c.prom.sick.discard(AGENT)
    _wait(lambda: c.events("resolve") and c.hooks("resolved"), "episode 1 resolved")
    _wait(c.settled, "episode 1 settled")
    for job in c.jobs():  # play the Job controller: one Job runs per agent at a time
        c.emu.patch(
            "batch/v1",
            "Job",
            NS,
            job["metadata"]["name"],
            {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}},
            subresource="status",
        )
    c.prom.sick.add(AGENT)
    _wait(
        lambda: len({e["dedup_key"] for e in c.events("trigger")}) == 2 and len(c.jobs()) == 2,
        "episode 2",
    )
    old.signal(signal.SIGCONT)
    _wait(
        lambda: "lost leadership" in old.log.read_text(errors="replace"),
        "the old leader to step down",
    )
    c.prom.sick.discard(AGENT)
    _wait(lambda: len({e["dedup_key"] for e in c.events("resolve")}) == 2, "episode 2 resolved")
    _wait(c.settled, "nothing owed")
    _judge(c, cell, episodes=2)


def _judge(c: Cluster, cell: Cell, *, episodes: int) -> None:
    triggers = {e["dedup_key"] for e in c.events("trigger")}
    resolves = [e["dedup_key"] for e in c.events("resolve")]
    firing_ids = {d for d, _ in c.hooks("firing")}
    resolved_ids = {d for d, _ in c.hooks("resolved")}
    cell.figures = {
        "incidents": len(triggers),
        "triggers": len(c.events("trigger")),
        "resolves": len(resolves),
        "hook firing": len(firing_ids),
        "hook resolved": len(resolved_ids),
        "hook posts": len(c.rx.accepted(ReceiverKind.WEBHOOK)),
        "jobs": len(c.jobs()),
    }
    if len(triggers) != episodes:
        cell.problems.append(f"{len(triggers)} PagerDuty incidents for {episodes} episode(s)")
    if set(resolves) != triggers:
        cell.problems.append(f"resolves {resolves} do not close the incidents {triggers}")
    if len(firing_ids) != episodes or len(resolved_ids) != episodes:
        cell.problems.append(
            f"webhook deliveries: {len(firing_ids)} firing, {len(resolved_ids)} resolved"
        )
    if len(c.jobs()) != episodes:
        cell.problems.append(f"{len(c.jobs())} Jobs for {episodes} episode(s)")
    for r in c.replicas:
        text = r.log.read_text(errors="replace")
        if "Traceback" in text and "AssertionError" in text:
            cell.problems.append(f"an AssertionError in {r.log.name}")


CELLS = [Cell(sig, point) for point in POINTS for sig in (signal.SIGTERM, signal.SIGKILL)] + [
    Cell(signal.SIGKILL, "between firing and resolve", replicas=3, kills=2),
    Cell(signal.SIGSTOP, "between firing and resolve"),
]


@pytest.mark.schedule_alone  # its own servers per cell; the longest test of the module
def test_every_cell_of_the_failover_matrix_pages_once_and_resolves_once(
    tmp_path: Path,
) -> None:
    results: list[Cell] = []
    for cell in CELLS:
        prom = ScriptedPrometheus()
        try:
            with Emulator() as emu, Receivers() as rx:
                _seed(emu, rx)
                c = Cluster(emu, rx, prom, Path(tempfile.mkdtemp(dir=tmp_path)))
                try:
                    _run(c, cell)
                except TimeoutError as exc:
                    cell.problems.append(str(exc))
                    for r in c.replicas:
                        sys.stderr.write(f"--- {r.log.name}\n{r.log.read_text()[-3000:]}\n")
                finally:
                    rx.release(ReceiverKind.PAGERDUTY)
                    c.stop()
        finally:
            prom.close()
        results.append(cell)

    print()
    print(f"{'signal':8} {'kill point':28} {'replicas':>8} {'kills':>5}  figures  verdict")
    for cell in results:
        figures = " ".join(f"{k}={v}" for k, v in cell.figures.items())
        verdict = "held" if cell.held else "FAILED: " + "; ".join(cell.problems)
        print(
            f"{cell.signal.name:8} {cell.point:28} {cell.replicas:>8} {cell.kills:>5}  "
            f"{figures}  {verdict}"
        )
    held = sum(c.held for c in results)
    print(f"failover matrix: {len(results)} cells tried, {held} held")
    assert held == len(results), [c.problems for c in results if not c.held]


# --------------------------------------------------------------------------- single defects


def _page_and_job(c: Cluster) -> Any:
    return c.events("trigger") and c.jobs() and c.hooks("firing")


def test_a_resolve_after_a_restart_reaches_the_channels_that_were_paged(cluster: Cluster) -> None:
    first = cluster.start_replica(election=False)
    cluster.prom.sick.add(AGENT)
    _wait(lambda: _page_and_job(cluster), "the page")
    first.signal(signal.SIGTERM)
    first.wait()
    cluster.start_replica(election=False)
    cluster.prom.sick.discard(AGENT)
    _wait(lambda: cluster.events("resolve") and cluster.hooks("resolved"), "the resolve")
    _wait(cluster.settled, "nothing owed")
    assert [e["dedup_key"] for e in cluster.events("resolve")] == [
        e["dedup_key"] for e in cluster.events("trigger")
    ]


def test_a_resolve_the_receiver_had_not_taken_when_the_operator_died_is_sent_after_restart(
    cluster: Cluster,
) -> None:
    first = cluster.start_replica(election=False)
    cluster.prom.sick.add(AGENT)
    _wait(lambda: _page_and_job(cluster), "the page")
    cluster.rx.fail_next(ReceiverKind.PAGERDUTY, 503, times=50)
    cluster.prom.sick.discard(AGENT)
    _wait(
        lambda: any(
            not r.accepted for r in cluster.rx.received if r.kind is ReceiverKind.PAGERDUTY
        ),
        "the resolve refused",
    )
    first.signal(signal.SIGKILL)
    first.wait()
    cluster.rx.clear_injections()
    cluster.start_replica(election=False)
    _wait(lambda: cluster.events("resolve"), "the resolve after the restart")
    _wait(cluster.settled, "nothing owed")
    assert {e["dedup_key"] for e in cluster.events("resolve")} == {
        e["dedup_key"] for e in cluster.events("trigger")
    }


def test_status_and_state_writes_carry_the_resource_version_they_were_computed_from(
    cluster: Cluster,
) -> None:
    cluster.start_replica(election=False)
    cluster.prom.sick.add(AGENT)
    _wait(lambda: _page_and_job(cluster), "the page")
    writes = [  # kopf's own writes are JSON patches (lists), ours merge patches
        r
        for r in cluster.emu.requests
        if r.method == "PATCH"
        and "/agentpolicies/p" in r.path
        and not r.injected
        and isinstance(r.body, dict)
    ]
    ours = [
        r
        for r in writes
        if r.path.endswith("/status")
        or "agentmedic.io/state" in json.dumps((r.body or {}).get("metadata", {}))
    ]
    assert any(r.path.endswith("/status") for r in ours)
    assert any(not r.path.endswith("/status") for r in ours)
    assert all((r.body or {}).get("metadata", {}).get("resourceVersion") for r in ours), [
        (r.path, r.body) for r in ours
    ]


def test_api_server_faults_on_writes_lose_no_update_and_start_no_second_job(
    cluster: Cluster,
) -> None:
    emu = cluster.emu
    cluster.start_replica(election=False)
    _wait(
        lambda: (emu.get(API, "AgentPolicy", NS, "p") or {}).get("status", {}).get("conditions"),
        "the policy's first status",
    )
    # Conflicts, throttling and errors on every kind of write the episode makes, a slow
    # answer (past nothing, but in flight while the next cycle starts) on the Job's POST.
    for status in (409, 429, 500, 503):
        emu.inject(method="PATCH", path_regex=r"/agentpolicies/p$", status=status)
        emu.inject(method="PATCH", path_regex=r"/agentpolicies/p/status$", status=status)
    emu.inject(method="POST", path_regex=r"/jobs$", status=500)
    emu.inject(method="POST", path_regex=r"/jobs$", status=429)
    emu.inject(method="POST", path_regex=r"/jobs$", status=200, delay=1.5)
    cluster.prom.sick.add(AGENT)
    _wait(lambda: _page_and_job(cluster), "the page")
    cluster.prom.sick.discard(AGENT)
    _wait(lambda: cluster.events("resolve") and cluster.hooks("resolved"), "the resolve")
    _wait(cluster.settled, "nothing owed")
    assert len(cluster.jobs()) == 1
    assert len({e["dedup_key"] for e in cluster.events("trigger")}) == 1
    assert len({d for d, _ in cluster.hooks("firing")}) == 1
    assert len({d for d, _ in cluster.hooks("resolved")}) == 1
    status = (emu.get(API, "AgentPolicy", NS, "p") or {}).get("status", {})
    actions = [a["action"] for a in status.get("recentActions", [])]
    assert "promptOptimization" in actions
    assert any(r.injected for r in emu.requests)
