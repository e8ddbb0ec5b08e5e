"""The whole operator at 1,000 and 10,000 agents under 100 policies (issue 6).

For each size this builds an installation on loopback and measures the real operator:

- the API emulator (in this process) holding N agent Deployments and P AgentPolicies, each
  policy selecting its share of the agents by a label (``bench.agentmedic.io/team``), all
  with the same interval, four rules over built-in metrics and a per-agent daily budget;
- a real Prometheus backfilled (before it starts) with SDK-shaped series for every agent:
  execution counters by status, the execution-duration histogram with the SDK's 20
  buckets, tokens by type, cost, ``agent_info``; one sample a minute from 16 minutes
  before now to several minutes ahead (promtool accepts future timestamps, and an instant
  query at the current time reads only the samples up to it, so windows stay full for the
  whole run while nothing is written during it); healthy values, so a cycle runs every
  query and evaluates every agent but remedies nothing;
- the operator as a subprocess, ``agentmedic run --kubeconfig ...``, so that its CPU time
  (``/proc/<pid>/stat``) and peak RSS (``VmHWM``) are its own.

It prints, per size: time from process start to the first cycle that evaluated every
policy (all statuses written) and the CPU spent until then; then, over ``--cycles``
steady-state cycles after ``--warmup`` more: API requests per cycle (reads and writes, from
the emulator's request log, with the writes explained), PromQL queries per cycle (the
operator's counter, checked against Prometheus' own request count), operator CPU and wall
time per cycle, CPU of the emulator and of Prometheus per cycle, peak RSS, the watch
streams open, and the operator's warnings. Then a reading of the figures.

The interval is 10 s at 1,000 agents and 30 s at 10,000 by default: at 10,000 agents
Prometheus alone needs 9 to 25 CPU-seconds per cycle (the two ``histogram_quantile``
queries over 210,000 bucket series take ~2.5 s each), which two cores cannot serve every
10 s next to the operator; cycles then overrun and queries time out. Figures are per
cycle, so sizes compare; ``--interval 10`` shows the overload. Both sizes take about
8 minutes on 2 cores.

``--profile DIR`` runs the operator under cProfile.

``--api real`` replaces the emulator with the local control plane (etcd and kube-apiserver
of :mod:`agentmedic_sandbox.cluster`; no controllers or kwok: the agents' Deployments need
no pods here). The operator then authenticates with a ServiceAccount token (bound to
cluster-admin) so that the API server's audit log tells its requests apart; requests per
cycle come from that log, the "emulator CPU" figure is kube-apiserver's plus etcd's.

Half the policies (the odd ones) select agents that spend nothing (their cost counter is
flat), the others agents that spend: writes per policy and hour are reported for each half
(``writes_per_policy_hour_spending``, ``writes_per_policy_hour_flat``); a flat fleet should
cause none, a spending one a bounded trickle. The window is ``--cycles`` long, so the hourly
figure is an extrapolation: measure over a few minutes at least.

Modes:

- ``--unselected N`` adds N Deployments that no policy selects (no team label, no metrics):
  they must cost nothing (label-selected watches never send them).
- ``--cycles N`` with a large N is the long mode: the operator's resident memory at the start
  and end of the window is reported (``rss_growth_mib``).
- ``--vary`` gives the policies varied windows (5, 10, 15 minutes) and intervals (1, 2 and 3
  times ``--interval``); with ``--policies 1000`` it measures the watch streams (one per
  distinct selector and kind) and the queries per cycle against their bound, the distinct
  (metric, window) needs per interval (``queries_per_cycle_bound``).

The reference line names the machine and the load; the last line is JSON. For one size it
is that size's figures (``agents``, ``cpu_us_per_agent_cycle``: operator CPU over the window
per agent and ``--interval``, everything the operator does included — its /metrics pages
too, one per cycle as Prometheus would scrape them; the bench's own polls beyond that are
left out and shown as ``bench_polls`` and ``scrape_ms``, and
``operator_cpu_ms_per_cycle_polls_included`` keeps them in; ``peak_rss_mib``, ``first_cycle_s``,
``queries_per_cycle``, ``writes_per_policy_hour_spending``/``_flat``, ``watch_streams``, ...);
for several sizes each size's line comes first and the last line is
``{"bench": "operator", "runs": [...]}``.

    .venv/bin/python tests/bench/bench_operator.py [--agents 1000,10000] [--policies 100]
        [--cycles 5] [--warmup 2] [--interval 10,30] [--unselected N] [--vary]
        [--profile DIR] [--api emulated|real]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from benchlib import emit, reference
from prometheus_client.parser import text_string_to_metric_families

from agentmedic.api.crd import crd_manifest
from agentmedic.api.validation import validate_policy
from agentmedic.engine import requirements
from agentmedic.instrument.series import EXECUTION_DURATION_BUCKETS
from agentmedic.metrics.catalog import SERIES
from agentmedic_sandbox.emulator import ApiEmulator, RecordedRequest
from agentmedic_sandbox.prometheus import PrometheusServer

NS = "agents"
NAMESPACE_WATCHES = 4
"""Watches of the operator's namespace besides policies and workloads: its AgentBudgets, its
AgentSilences, its NotificationChannels and its MetricsBackends (the shared kinds are
watched from start-up so each gets its status on sight; cluster kinds are not read by a
namespaced operator)."""
API_VERSION = "agentmedic.io/v1alpha1"
TEAM_LABEL = "bench.agentmedic.io/team"
MODEL = "gpt-4o-mini"
TIERS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"]
HISTORY_S = 16 * 60
"""History before start: the longest window any policy reads (forecastWindow 15m)."""
STEP_S = 60
"""One sample a minute, a common scrape interval."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
EMULATOR_THREAD = "agentmedic-api-emulator"


# ---------------------------------------------------------------------- the installation


def agent_name(i: int) -> str:
    return f"agent-{i:05d}"


def team(k: int) -> str:
    return f"team-{k:03d}"


def deployment(i: int, policies: int) -> dict[str, Any]:
    name = agent_name(i)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                "app": name,
                "app.kubernetes.io/part-of": "agentmedic-bench",
                TEAM_LABEL: team(i % policies),
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": "ghcr.io/example/agent:1.0",
                            "env": [
                                {"name": "OPENAI_MODEL", "value": MODEL},
                                {"name": "AGENT_NAME", "value": name},
                            ],
                        }
                    ]
                },
            },
        },
    }


def unselected(i: int) -> dict[str, Any]:
    """A Deployment no policy selects: no team label."""
    doc = deployment(i, 1)
    doc["metadata"]["name"] = doc["spec"]["selector"]["matchLabels"]["app"] = f"other-{i:05d}"
    doc["spec"]["template"]["metadata"]["labels"]["app"] = f"other-{i:05d}"
    doc["metadata"]["labels"] = {"app": f"other-{i:05d}"}
    return doc


def flat(k: int, policies: int) -> bool:
    """Whether policy ``k``'s agents spend nothing (every other policy, when there are two
    or more)."""
    return policies > 1 and k % 2 == 1


WINDOWS = ("5m", "10m", "15m")


def policy_interval(k: int, interval: int, vary: bool) -> int:
    return interval * (1 + k % 3) if vary else interval


def policy(k: int, interval: int, vary: bool = False) -> dict[str, Any]:
    """Four rules (nine distinct (metric, window) series with the budget's two) and a
    per-agent daily budget; the same for every policy but the selector, unless ``vary``
    varies the windows and the interval by ``k``."""
    w = [WINDOWS[(k + j) % 3] for j in range(3)] if vary else ["5m", "10m", "10m"]

    def cond(metric: str, window: str, op: str, value: float, **extra: Any) -> dict[str, Any]:
        return {"metric": metric, "window": window, "op": op, "value": value, **extra}

    notify = {"notify": {"channels": ["oncall"]}}
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentPolicy",
        "metadata": {"name": f"bench-{k:03d}", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {TEAM_LABEL: team(k)}},
            "interval": f"{policy_interval(k, interval, vary)}s",
            "rules": [
                {
                    "name": "quality-degradation",
                    "all": [
                        cond("error_rate", w[0], ">", 0.15, minSamples=20),
                        cond("latency_p95_ms", w[0], ">", 10000),
                    ],
                    "for": "5m",
                    "severity": "high",
                    "actions": [notify],
                },
                {
                    "name": "low-success",
                    "all": [cond("success_rate", w[1], "<", 0.8, minSamples=50)],
                    "for": "5m",
                    "severity": "critical",
                    "actions": [{"scaleToZero": {}}, notify],
                },
                {
                    "name": "latency-tail",
                    "all": [cond("latency_p99_ms", w[2], ">", 30000)],
                    "for": "10m",
                    "actions": [notify],
                },
                {
                    "name": "token-burn",
                    "all": [cond("tokens_per_execution", w[0], ">", 20000)],
                    "for": "10m",
                    "actions": [{"switchModel": {}}, notify],
                },
            ],
            "budget": {
                "period": "day",
                "limitUSD": 50,
                "scope": "agent",
                "forecastWindow": "15m",
                "soft": {"atPercent": 80, "forecast": True, "actions": [{"switchModel": {}}]},
                "hard": {"actions": [{"scaleToZero": {}}, notify]},
            },
            "model": {"env": {"container": "agent", "name": "OPENAI_MODEL"}, "tiers": TIERS},
            "guardrails": {"cooldown": "15m", "maxDisabledPercent": 25},
            "notifications": {
                "channels": [
                    {"name": "oncall", "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}
                ]
            },
        },
    }


def hook_secret() -> dict[str, Any]:
    import base64

    url = base64.b64encode(b"http://127.0.0.1:9/never-called").decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hook", "namespace": NS},
        "type": "Opaque",
        "data": {"url": url},
    }


# ---------------------------------------------------------------------- the metrics


@dataclass(frozen=True)
class Profile:
    """One healthy agent's steady behaviour."""

    rate: float  # executions per second
    error_share: float
    median_s: float  # latency: log-logistic with shape 3 (p95 = 2.67 x median)
    tokens_in: float
    tokens_out: float
    usd_per_execution: float

    def latency_cdf(self, le: float) -> float:
        return 1.0 / (1.0 + (self.median_s / le) ** 3)


def profile(i: int, spends: bool = True) -> Profile:
    return Profile(
        rate=0.2 + 0.1 * (i % 5),
        error_share=0.01 + 0.01 * (i % 3),
        median_s=1.5 + 0.5 * (i % 4),
        tokens_in=1500.0,
        tokens_out=300.0,
        # Spread prices so that the policies' spend totals cross status steps out of phase.
        usd_per_execution=0.0003 + 0.0004 * ((i * 0.6180339887) % 1.0) if spends else 0.0,
    )


def write_backfill(out: TextIO, n: int, start: int, end: int, policies: int = 1) -> int:
    """OpenMetrics for ``n`` agents, one sample per STEP_S in [start, end]; returns lines.

    Written family by family (promtool wants each metric's samples together), each series'
    samples in time order, counters as if the agent had run for an hour before ``start``.
    """
    times = list(range(start, end + 1, STEP_S))
    base = start - 3600
    elapsed = [t - base for t in times]
    les = [f"{b:g}" for b in EXECUTION_DURATION_BUCKETS] + ["+Inf"]
    cdf_points = [float(b) for b in EXECUTION_DURATION_BUCKETS]
    written = 0

    def series(name: str, labels: str, per_second: float) -> None:
        nonlocal written
        out.write(
            "".join(
                f"{name}{{{labels}}} {per_second * e:.4f} {t}\n"
                for t, e in zip(times, elapsed, strict=True)
            )
        )
        written += len(times)

    def labels(i: int) -> str:
        return f'agent="{agent_name(i)}",model="{MODEL}",namespace="{NS}"'

    executions = SERIES["executions"]
    duration = SERIES["execution_duration"]
    for i in range(n):
        p, lab = profile(i), labels(i)
        series(executions, f'{lab},status="success"', p.rate * (1 - p.error_share))
        series(executions, f'{lab},status="error"', p.rate * p.error_share)
    for i in range(n):
        p, lab = profile(i), labels(i)
        for le, bound in zip(les, [*cdf_points, math.inf], strict=True):
            share = 1.0 if bound == math.inf else p.latency_cdf(bound)
            series(f"{duration}_bucket", f'{lab},le="{le}"', p.rate * share)
    mean_factor = (math.pi / 3) / math.sin(math.pi / 3)  # log-logistic mean / median
    for i in range(n):
        p, lab = profile(i), labels(i)
        series(f"{duration}_sum", lab, p.rate * p.median_s * mean_factor)
    for i in range(n):
        p, lab = profile(i), labels(i)
        series(f"{duration}_count", lab, p.rate)
    for i in range(n):
        p, lab = profile(i), labels(i)
        series(SERIES["tokens"], f'{lab},type="input"', p.rate * p.tokens_in)
        series(SERIES["tokens"], f'{lab},type="output"', p.rate * p.tokens_out)
    for i in range(n):
        p, lab = profile(i, not flat(i % policies, policies)), labels(i)
        series(SERIES["cost"], lab, p.rate * p.usd_per_execution)
    for i in range(n):
        out.write(
            "".join(f'agent_info{{agent="{agent_name(i)}",model="{MODEL}"}} 1 {t}\n' for t in times)
        )
        written += len(times)
    out.write("# EOF\n")
    return written


# ---------------------------------------------------------------------- measuring
# ---------------------------------------------------------------------- measuring


def proc_cpu(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads) or of one of its threads."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(name: str) -> float:
    """CPU seconds of this process' thread called ``name`` (the API emulator's server)."""
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            return proc_cpu(os.getpid(), thread.native_id)
    raise LookupError(f"no thread {name!r}")


def proc_memory(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def scrape(client: httpx.Client, url: str) -> dict[str, float]:
    """A /metrics page as ``name`` (summed over labels) and ``name{k=v,...}`` → value."""
    text = client.get(url, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
            if s.labels:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


WRAPPER = '''\
"""`agentmedic run`, under cProfile."""
import sys

from agentmedic.cli.main import main

sys.exit(main())
'''


@dataclass
class Snapshot:
    at: float
    cycles: float
    queries: float
    duration_sum: float
    duration_count: float
    overruns: float
    errors: float
    op_cpu: float
    prom_cpu: float
    prom_queries: float
    prom_query_seconds: float
    prom_compactions: float
    emulator_cpu: float


@dataclass
class Result:
    agents: int
    policies: int
    interval: int
    backfill_samples: int = 0
    backfill_s: float = 0.0
    seed_s: float = 0.0
    metrics_up_s: float = 0.0
    first_cycle_s: float = 0.0
    first_cycle_cpu_s: float = 0.0
    first_cycles: int = 0
    first_skipped: int = 0
    startup_reads: int = 0
    startup_writes: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    window_s: float = 0.0
    reads: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    queries: float = 0.0
    prom_queries: float = 0.0
    prom_query_seconds: float = 0.0
    prom_compactions: float = 0.0
    op_cpu: float = 0.0
    op_idle: float | None = None
    """Operator CPU seconds per second between cycles."""
    scrape_cpu: float = 0.0
    bench_polls: int = 0
    """The bench's own /metrics polls in the steady window (their cost is left out of
    ``op_cpu``, but for one per cycle, as Prometheus scraping every interval)."""
    cycle_wall: float = 0.0
    emulator_cpu: float = 0.0
    prom_cpu: float = 0.0
    overruns: float = 0.0
    errors: float = 0.0
    peak_rss: int = 0
    rss_start: int = 0
    rss_end: int = 0
    queries_bound: float = 0.0
    """Distinct needs per interval, scaled to one --interval."""
    writes_by_group: Counter[str] = field(default_factory=Counter)
    """Steady-state writes attributed to a spending or a flat policy (its status, its
    annotations, its agents' workloads)."""
    watches_open: int = 0
    watches_expected: int = 0
    watches_min: int | None = None
    """The fewest open at once, sampled every second over the window (emulated API only:
    the real one's count reads its whole audit log)."""
    counts: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)

    @property
    def reads_per_cycle(self) -> float:
        return sum(self.reads.values()) / self.cycles

    @property
    def writes_per_cycle(self) -> float:
        return sum(self.writes.values()) / self.cycles


_VERB_METHOD = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}


class RealApi:
    """The local control plane behind the emulator's interface the bench uses: create,
    list, a kubeconfig for the operator, and the operator's requests (from the audit log)."""

    OPERATOR_SA = "bench-operator"

    def __init__(self, tmp: Path) -> None:
        from agentmedic_sandbox.cluster import LocalCluster

        self.cluster = LocalCluster(workdir=tmp / "k8s", controllers=False, kwok=False)
        self.user = f"system:serviceaccount:{NS}:{self.OPERATOR_SA}"
        self._offset = 0

    def start(self) -> None:
        c = self.cluster
        c.start()
        print(f"  local control plane up in {c.startup_seconds:.1f}s at {c.url}", flush=True)
        # AgentPolicy alone: the kinds the bench does not use (budgets, silences, shared
        # channels) are not served, which the operator counts as none of them.
        c.install_crd(crd_manifest())
        c.ensure_namespace(NS)
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": self.OPERATOR_SA, "namespace": NS},
            }
        )
        c.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": self.OPERATOR_SA},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": self.OPERATOR_SA, "namespace": NS}],
            }
        )

    def stop(self) -> None:
        self.cluster.stop()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.cluster.create(obj)

    def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        return self.cluster.list_objects(api_version, kind, namespace)

    def write_kubeconfig(self, path: Path) -> Path:
        token = self.cluster.service_account_token(NS, self.OPERATOR_SA, seconds=6 * 3600)
        return self.cluster.kubeconfig_for_token(token, path)

    def cpu(self) -> float:
        pids = self.cluster.pids()
        return proc_cpu(pids["kube-apiserver"]) + proc_cpu(pids["etcd"])

    def _audit(self, start: int = 0) -> list[dict[str, Any]]:
        time.sleep(1.5)  # the audit backend flushes at least once a second
        out = []
        with self.cluster.audit_log_path.open("rb") as f:
            f.seek(start)
            for line in f:
                event = json.loads(line)
                if event["user"]["username"] == self.user:
                    out.append(event)
        return out

    def clear_requests(self) -> None:
        time.sleep(1.5)
        path = self.cluster.audit_log_path
        self._offset = path.stat().st_size if path.exists() else 0

    @property
    def requests(self) -> list[RecordedRequest]:
        out = []
        for e in self._audit(self._offset):
            if e["stage"] != "ResponseComplete" and e["verb"] != "watch":
                continue
            if e["verb"] == "watch" and e["stage"] != "ResponseStarted":
                continue  # a watch counts once, when it starts
            uri = e["requestURI"]
            path, _, query = uri.partition("?")
            out.append(
                RecordedRequest(
                    method=_VERB_METHOD.get(e["verb"], "GET"),
                    path=path,
                    query=dict(q.split("=", 1) for q in query.split("&") if "=" in q),
                    content_type=None,
                    status=int((e.get("responseStatus") or {}).get("code", 0)),
                    verb=e["verb"],
                    body=e.get("requestObject"),
                )
            )
        return out

    @property
    def open_watches(self) -> int:
        events = self._audit()
        started = sum(e["verb"] == "watch" and e["stage"] == "ResponseStarted" for e in events)
        ended = sum(e["verb"] == "watch" and e["stage"] == "ResponseComplete" for e in events)
        return started - ended


class Bench:
    """One size: build, start, measure, stop."""

    def __init__(self, args: argparse.Namespace, n: int, interval: int) -> None:
        self.args = args
        self.n = n
        self.interval = interval
        self.result = Result(agents=n, policies=args.policies, interval=interval)
        self.share = Counter(i % args.policies for i in range(n))
        self.http = httpx.Client()
        self.polls = 0
        """The operator's /metrics pages the bench asked for so far."""
        self.t0 = 0.0
        self.api: Any = None

    def log(self, message: str) -> None:
        print(f"  [{self.n:,} agents] {message}", flush=True)

    def run(self) -> Result:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-op-")))
            stack.callback(self.http.close)
            prom = stack.enter_context(self.prometheus(tmp))
            api: Any = (
                RealApi(tmp) if self.args.api == "real" else ApiEmulator(history_limit=1_000_000)
            )
            api.start()
            stack.callback(api.stop)
            self.api = api
            self.seed(api)
            proc, url = self.start_operator(api, prom, tmp)
            stack.callback(self.stop_operator, proc, tmp)
            start = self.first_cycle(api, prom, proc, url)
            self.steady_state(api, prom, proc, url, start)
        return self.result

    # -- setup

    @contextlib.contextmanager
    def prometheus(self, tmp: Path) -> Iterator[PrometheusServer]:
        args = self.args
        started = time.perf_counter()
        now = int(time.time())
        # Future samples for the slowest run expected, with a wide margin.
        slowest = policy_interval(2, self.interval, args.vary)
        ahead = 120 + self.n * 0.015 + (args.warmup + args.cycles + 4) * slowest
        start, end = now - HISTORY_S, now + int(ahead)
        source = tmp / "backfill.om"
        with source.open("w", buffering=1 << 20) as out:
            samples = write_backfill(out, self.n, start, end, args.policies)
        size = source.stat().st_size
        data = tmp / "prometheus" / "data"
        data.mkdir(parents=True)
        promtool = shutil.which("promtool") or "/usr/bin/promtool"
        proc = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            capture_output=True,
            text=True,
            check=False,
        )
        source.unlink()
        if proc.returncode:
            raise RuntimeError(f"promtool failed: {proc.stderr[-2000:]}")
        server = PrometheusServer(data_dir=tmp / "prometheus").start()
        r = self.result
        r.backfill_samples = samples
        r.backfill_s = time.perf_counter() - started
        self.log(
            f"Prometheus backfilled with {samples:,} samples ({size / 1e6:,.0f} MB of "
            f"OpenMetrics, {(end - start) // 60} min of which {(end - now) // 60} ahead) and "
            f"started in {r.backfill_s:.1f}s"
        )
        try:
            yield server
        finally:
            server.stop()

    def seed(self, api: ApiEmulator) -> None:
        started = time.perf_counter()
        api.create(hook_secret())
        for i in range(self.n):
            api.create(deployment(i, self.args.policies))
        for i in range(self.args.unselected):
            api.create(unselected(i))
        needs: dict[int, set[Any]] = {}
        now = datetime.now(UTC)
        for k in range(self.args.policies):
            doc = policy(k, self.interval, self.args.vary)
            parsed, problems = validate_policy(doc)
            if problems or parsed is None:
                raise ValueError(f"the bench's policy is invalid: {problems}")
            every = policy_interval(k, self.interval, self.args.vary)
            needs.setdefault(every, set()).update(requirements(parsed.spec, now))
            api.create(doc)
        # Queries per --interval may not exceed the distinct needs of each interval, each
        # sent once per its own cycle.
        self.result.queries_bound = sum(
            len(keys) * self.interval / every for every, keys in needs.items()
        )
        self.result.seed_s = time.perf_counter() - started
        self.log(
            f"{self.args.api} API seeded with {self.n:,} Deployments ({self.args.unselected:,} "
            f"more that no policy selects) and {self.args.policies} AgentPolicies in "
            f"{self.result.seed_s:.1f}s"
        )

    def start_operator(
        self, api: ApiEmulator, prom: PrometheusServer, tmp: Path
    ) -> tuple[subprocess.Popen[bytes], str]:
        args = self.args
        script = Path(sys.executable).with_name("agentmedic")
        if args.profile is None and script.exists():
            command = [str(script)]
        else:
            wrapper = tmp / "agentmedic_run.py"
            wrapper.write_text(WRAPPER)
            command = [sys.executable, str(wrapper)]
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                out = args.profile / f"operator-{self.n}.prof"
                command[1:1] = ["-m", "cProfile", "-o", str(out)]
        port = free_port()
        command += [
            "run",
            "--kubeconfig",
            str(api.write_kubeconfig(tmp / "kubeconfig")),
            "--prometheus-url",
            prom.url,
            "--namespaces",
            NS,
            "--peering",
            "",
            "--metrics-port",
            str(port),
            "--health-port",
            "0",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMEDIC_")}
        api.clear_requests()
        self.t0 = time.monotonic()
        with (tmp / "operator.log").open("ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        return proc, f"http://127.0.0.1:{port}/metrics"

    def stop_operator(self, proc: subprocess.Popen[bytes], tmp: Path) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log = tmp / "operator.log"
        self.result.warnings = warnings(log)
        if self.args.keep_logs is not None:
            self.args.keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, self.args.keep_logs / f"operator-{self.n}.log")
        if proc.returncode not in (0, -signal.SIGTERM):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            self.log(f"operator exited with {proc.returncode}; its log ends:\n{tail}")

    # -- measuring

    def all_evaluated(self, api: ApiEmulator) -> bool:
        """Every policy's status counts all its agents: a cycle has evaluated each."""
        for p in api.list(API_VERSION, "AgentPolicy", NS):
            k = int(p["metadata"]["name"].rsplit("-", 1)[1])
            if ((p.get("status") or {}).get("agents") or {}).get("total") != self.share[k]:
                return False
        return True

    def first_cycle(
        self, api: ApiEmulator, prom: PrometheusServer, proc: subprocess.Popen[bytes], url: str
    ) -> Snapshot:
        def alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {proc.returncode}")

        def metrics_up() -> bool:
            alive()
            try:
                self.http.get(url, timeout=1)
            except httpx.TransportError:
                return False
            return True

        def evaluated() -> bool:
            alive()
            return self.all_evaluated(api)

        r = self.result
        wait_for(metrics_up, 120, "the operator's /metrics", 0.05)
        r.metrics_up_s = time.monotonic() - self.t0
        wait_for(evaluated, 600, "a cycle evaluating every policy", 0.1)
        r.first_cycle_s = time.monotonic() - self.t0
        snap = self.snapshot(prom, proc, url)
        r.first_cycle_cpu_s = snap.op_cpu
        r.first_cycles = int(snap.cycles)
        r.first_skipped = int(snap.overruns)
        startup = api.requests
        r.startup_reads = sum(not q.is_write for q in startup)
        r.startup_writes = classify_writes([q for q in startup if q.is_write], {})
        self.log(
            f"operator's /metrics up after {r.metrics_up_s:.1f}s; every policy evaluated after "
            f"{r.first_cycle_s:.1f}s ({r.first_cycles} cycles run, {snap.duration_sum:.1f}s in "
            f"them, {r.first_skipped} skipped) "
            f"using {r.first_cycle_cpu_s:.1f}s CPU; {r.startup_reads:,} reads and "
            f"{r.startup_writes.total():,} writes until then"
        )
        return snap

    def snapshot(self, prom: PrometheusServer, proc: subprocess.Popen[bytes], url: str) -> Snapshot:
        m = scrape(self.http, url)
        self.polls += 1
        assert prom.pid is not None
        pm = scrape(self.http, f"{prom.url}/metrics")
        query = "{code=200,handler=/api/v1/query}"
        return Snapshot(
            at=time.monotonic(),
            cycles=m.get("agentmedic_cycles_total", 0.0),
            queries=m.get("agentmedic_queries_total", 0.0),
            duration_sum=m.get("agentmedic_cycle_duration_seconds_sum", 0.0),
            duration_count=m.get("agentmedic_cycle_duration_seconds_count", 0.0),
            overruns=m.get("agentmedic_cycle_overruns_total", 0.0),
            errors=m.get("agentmedic_errors_total", 0.0),
            op_cpu=proc_cpu(proc.pid),
            prom_cpu=proc_cpu(prom.pid),
            prom_queries=pm.get(f"prometheus_http_requests_total{query}", 0.0),
            prom_query_seconds=pm.get(
                "prometheus_http_request_duration_seconds_sum{handler=/api/v1/query}", 0.0
            ),
            prom_compactions=pm.get("prometheus_tsdb_compactions_total", 0.0),
            emulator_cpu=(
                self.api.cpu() if isinstance(self.api, RealApi) else thread_cpu(EMULATOR_THREAD)
            ),
        )

    def cycles_now(self, url: str) -> float:
        self.polls += 1
        return scrape(self.http, url).get("agentmedic_cycles_total", 0.0)

    def wait_cycles(self, url: str, target: float, not_before: float) -> None:
        """Sleep until shortly before cycle ``target`` should end, then poll for it (the
        polls cost the operator a /metrics page each, so few of them, and those of the
        steady window are counted and left out of its CPU)."""
        sleep_until(not_before)
        wait_for(lambda: self.cycles_now(url) >= target, 20 * self.interval, "a cycle", 0.25)

    @contextlib.contextmanager
    def watch_sampler(self, api: Any) -> Iterator[list[int]]:
        """Open watch streams, sampled every second in a thread while the block runs (a
        count at one moment can fall on watches the server just ended and the operator
        is reopening)."""
        samples: list[int] = []
        if not isinstance(api, ApiEmulator):
            yield samples
            return
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(api.open_watches)

        thread = threading.Thread(target=sample, name="watch-sampler", daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            done.set()
            thread.join()

    def steady_state(
        self,
        api: ApiEmulator,
        prom: PrometheusServer,
        proc: subprocess.Popen[bytes],
        url: str,
        start: Snapshot,
    ) -> None:
        args, r, interval = self.args, self.result, self.interval
        # Warm-up: the cycles right after the first settle what it left open.
        self.wait_cycles(url, start.cycles + args.warmup, start.at + (args.warmup - 1) * interval)
        a = self.snapshot(prom, proc, url)
        polls = self.polls
        r.rss_start = proc_memory(proc.pid).get("VmRSS", 0)
        api.clear_requests()
        before = {
            p["metadata"]["name"]: p.get("status") or {}
            for p in api.list(API_VERSION, "AgentPolicy", NS)
        }
        # Idle CPU: between the end of this cycle and the start of the next.
        done = max(1.0, a.duration_count - start.duration_count)
        wall = (a.duration_sum - start.duration_sum) / done
        idle_from, idle_to = a.at + 0.5, a.at + interval - wall - 1.0
        if idle_to - idle_from >= 1.0:
            sleep_until(idle_from)
            c1, t1 = proc_cpu(proc.pid), time.monotonic()
            sleep_until(idle_to)
            r.op_idle = (proc_cpu(proc.pid) - c1) / (time.monotonic() - t1)
        with self.watch_sampler(api) as samples:
            self.wait_cycles(url, a.cycles + args.cycles, a.at + args.cycles * interval - 1.0)
        r.watches_min = min(samples) if samples else None
        b = self.snapshot(prom, proc, url)
        r.bench_polls = self.polls - polls
        requests = api.requests
        memory = proc_memory(proc.pid)
        r.peak_rss, r.rss_end = memory.get("VmHWM", 0), memory.get("VmRSS", 0)
        r.watches_open = api.open_watches
        # One per policy and workload kind, and the policies' own; on the emulator,
        # which serves every kind, also the namespace's budgets, silences and shared
        # channels and backends (the real server is given the AgentPolicy CRD alone).
        served = 0 if args.api == "real" else NAMESPACE_WATCHES
        r.watches_expected = 2 * args.policies + 1 + served
        # What one of the bench's /metrics polls costs the operator.
        c0 = proc_cpu(proc.pid)
        for _ in range(20):
            self.http.get(url, timeout=10)
        r.scrape_cpu = (proc_cpu(proc.pid) - c0) / 20

        cycles = b.cycles - a.cycles
        r.cycles, r.window_s = int(cycles), b.at - a.at
        r.reads = Counter(q.verb for q in requests if not q.is_write)
        r.writes = classify_writes([q for q in requests if q.is_write], before)
        r.writes_by_group = writes_by_group([q for q in requests if q.is_write], args.policies)
        r.queries = (b.queries - a.queries) / cycles
        r.prom_queries = (b.prom_queries - a.prom_queries) / cycles
        r.prom_query_seconds = (b.prom_query_seconds - a.prom_query_seconds) / cycles
        r.prom_compactions = b.prom_compactions - a.prom_compactions
        # The bench's polls are the bench's: left out, but for one per cycle (what a
        # Prometheus scraping the operator every interval costs it).
        polled = max(0, r.bench_polls - cycles) * r.scrape_cpu
        r.op_cpu = (b.op_cpu - a.op_cpu - polled) / cycles
        r.cycle_wall = (b.duration_sum - a.duration_sum) / max(
            1.0, b.duration_count - a.duration_count
        )
        r.emulator_cpu = (b.emulator_cpu - a.emulator_cpu) / cycles
        r.prom_cpu = (b.prom_cpu - a.prom_cpu) / cycles
        r.overruns = b.overruns - a.overruns
        r.errors = b.errors - a.errors
        for p in api.list(API_VERSION, "AgentPolicy", NS):
            for key, value in ((p.get("status") or {}).get("agents") or {}).items():
                r.counts[key] += int(value)
        self.log(
            f"{r.cycles} steady cycles in {r.window_s:.1f}s: {len(requests)} API requests "
            f"({r.writes.total()} writes), {r.queries:.1f} queries/cycle, operator CPU "
            f"{r.op_cpu * 1000:,.0f} ms/cycle, peak RSS {r.peak_rss / 2**20:,.0f} MiB"
        )


_NAMES = re.compile(r"\b(bench|team|agent)-\d+")
_POLICY_PATH = re.compile(r"/agentpolicies/bench-(\d+)")
_AGENT_PATH = re.compile(r"/(?:deployments|statefulsets)/agent-(\d+)")


def writes_by_group(writes: list[RecordedRequest], policies: int) -> Counter[str]:
    """Writes per group of policies, ``spending`` or ``flat``; ``other`` for the rest."""
    out: Counter[str] = Counter()
    for w in writes:
        if m := _POLICY_PATH.search(w.path):
            k = int(m.group(1))
        elif m := _AGENT_PATH.search(w.path):
            k = int(m.group(1)) % policies
        else:
            out["other"] += 1
            continue
        out["flat" if flat(k, policies) else "spending"] += 1
    return out


def classify_writes(
    writes: list[RecordedRequest], before: dict[str, dict[str, Any]]
) -> Counter[str]:
    """Name each write by what it changed; for status patches, which fields (policy, team
    and agent names folded into ``bench-N``, ``team-N``, ``agent-N``)."""
    kinds: Counter[str] = Counter()
    last = dict(before)
    for w in writes:
        parts = w.path.strip("/").split("/")
        body = w.body if isinstance(w.body, dict) else {}
        if "agentpolicies" in parts and parts[-1] == "status":
            new, old = body.get("status") or {}, last.get(parts[-2]) or {}
            last[parts[-2]] = new
            what = ", ".join(status_changes(old, new)) or "nothing but lastEvaluationTime"
            kinds[f"{w.method} agentpolicies/status: {what}"] += 1
            continue
        resource = parts[-2] if len(parts) >= 2 else w.path
        if w.method == "POST":
            resource = parts[-1]
        annotations = sorted((body.get("metadata") or {}).get("annotations") or {})
        what = f": annotations {', '.join(annotations)}" if annotations else ""
        kinds[_NAMES.sub(r"\1-N", f"{w.method} {resource}{what}")] += 1
    return kinds


def status_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The status fields (one level deep) that differ, ignoring lastEvaluationTime."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key == "lastEvaluationTime" or old.get(key) == new.get(key):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def warnings(log: Path) -> Counter[str]:
    """The operator's warnings and errors, names and numbers folded so that alike ones count
    together."""
    out: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
                continue
            message = _NAMES.sub(r"\1-N", str(record.get("message", "")))
            message = re.sub(r"\d+(\.\d+)?", "N", message)
            out[f"{record['level']} {message[:140]}"] += 1
    return out


# ---------------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} x {cpu}, load {load}"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _backfill(r: Result) -> str:
    return f"{r.backfill_samples / 1e6:.1f} M ({r.backfill_s:.0f} s)"


def _idle(r: Result) -> str:
    return "n/a" if r.op_idle is None else f"{r.op_idle * 1000:,.0f} ms/s"


def _counts(r: Result) -> str:
    c = r.counts
    return f"{c['healthy']:,} / {c['pending']:,} / {c['noData']:,}"


ROWS: list[tuple[str, Callable[[Result], str]]] = [
    ("policy interval", lambda r: f"{r.interval} s"),
    ("backfilled samples (built + promtool + start)", _backfill),
    ("API seeding (Deployments + policies)", lambda r: f"{r.seed_s:.1f} s"),
    ("start -> operator's /metrics answers", lambda r: f"{r.metrics_up_s:.1f} s"),
    ("start -> first cycle evaluating every policy", lambda r: f"{r.first_cycle_s:.1f} s"),
    ("  cycles run / skipped until then", lambda r: f"{r.first_cycles} / {r.first_skipped}"),
    ("  operator CPU until then", lambda r: f"{r.first_cycle_cpu_s:.1f} s"),
    (
        "  API reads / writes until then",
        lambda r: f"{r.startup_reads:,} / {r.startup_writes.total():,}",
    ),
    ("steady-state cycles measured", lambda r: f"{r.cycles} in {r.window_s:.0f} s"),
    ("API reads per cycle", lambda r: f"{r.reads_per_cycle:,.1f}"),
    ("API writes per cycle", lambda r: f"{r.writes_per_cycle:,.1f}"),
    ("PromQL queries per cycle (operator's count)", lambda r: f"{r.queries:.1f}"),
    ("PromQL queries per cycle (Prometheus' count)", lambda r: f"{r.prom_queries:.1f}"),
    ("operator CPU per cycle", lambda r: ms(r.op_cpu)),
    ("  per agent", lambda r: f"{r.op_cpu / r.agents * 1e6:,.0f} us"),
    ("  idle CPU rate between two cycles", _idle),
    ("cycle wall time (mean)", lambda r: ms(r.cycle_wall)),
    ("cycles skipped (overrun) / errors", lambda r: f"{r.overruns:.0f} / {r.errors:.0f}"),
    ("operator peak RSS (VmHWM)", lambda r: f"{r.peak_rss / 2**20:,.0f} MiB"),
    (
        "operator RSS at window start -> end",
        lambda r: f"{r.rss_start / 2**20:,.0f} -> {r.rss_end / 2**20:,.0f} MiB",
    ),
    (
        "steady writes: spending / flat policies",
        lambda r: f"{r.writes_by_group['spending']} / {r.writes_by_group['flat']}",
    ),
    ("PromQL queries per cycle: bound", lambda r: f"{r.queries_bound:.1f}"),
    (
        "watch streams open (expected; fewest)",
        lambda r: f"{r.watches_open} ({r.watches_expected}; {r.watches_min})",
    ),
    (
        "API CPU per cycle (emulator thread; real: apiserver+etcd)",
        lambda r: ms(r.emulator_cpu),
    ),
    ("Prometheus CPU per cycle", lambda r: ms(r.prom_cpu)),
    ("Prometheus query time per cycle (summed)", lambda r: ms(r.prom_query_seconds)),
    ("agents healthy / pending / no data (status)", _counts),
]


def table(results: list[Result], args: argparse.Namespace) -> None:
    width = max(len(label) for label, _ in ROWS)
    heads = [f"{r.agents:,} agents" for r in results]
    colw = max(14, *(len(fn(r)) for r in results for _, fn in ROWS), *(len(h) for h in heads))
    print()
    print(
        f"{args.policies} policies, each selecting its share of the agents by label; 4 rules "
        "and a per-agent daily budget (9 distinct (metric, window) series); the operator is an "
        "`agentmedic run` subprocess"
    )
    header = f"{'':<{width}}  " + "  ".join(f"{h:>{colw}}" for h in heads)
    print(header)
    print("-" * len(header))
    for label, fn in ROWS:
        print(f"{label:<{width}}  " + "  ".join(f"{fn(r):>{colw}}" for r in results))
    for r in results:
        print()
        print(f"{r.agents:,} agents:")
        for kind, count in r.startup_writes.most_common(6):
            print(f"  startup writes  {count:>6,} x {kind}")
        reads = ", ".join(f"{v} {k}" for k, v in sorted(r.reads.items())) or "none"
        print(f"  steady reads    {reads}")
        if not r.writes:
            print("  steady writes   none")
        for kind, count in r.writes.most_common(6):
            print(f"  steady writes   {count:>6,} x {kind}")
        for message, count in r.warnings.most_common(4):
            print(f"  operator log    {count:>6,} x {message}")
        if r.prom_compactions:
            print(f"  (Prometheus compacted {r.prom_compactions:.0f} times in the window)")
        print(
            f"  (each /metrics poll of the bench cost the operator {ms(r.scrape_cpu)}; its "
            f"{r.bench_polls} polls in the window are left out of the operator's CPU but "
            "one per cycle, as a Prometheus scraping it every interval)"
        )


def reading(results: list[Result]) -> str:
    lo, hi = results[0], results[-1]
    parts = []
    if lo is not hi:
        parts.append(
            f"From {lo.agents:,} to {hi.agents:,} agents ({hi.agents / lo.agents:.0f}x) under "
            f"the same {lo.policies} policies, what grows with the agents: operator CPU per "
            f"cycle {ms(lo.op_cpu)} -> {ms(hi.op_cpu)} ({hi.op_cpu / lo.op_cpu:.1f}x, "
            f"{lo.op_cpu / lo.agents * 1e6:,.0f} -> {hi.op_cpu / hi.agents * 1e6:,.0f} us per "
            f"agent), cycle wall time {ms(lo.cycle_wall)} -> {ms(hi.cycle_wall)}, peak RSS "
            f"{lo.peak_rss / 2**20:,.0f} -> {hi.peak_rss / 2**20:,.0f} MiB, Prometheus' CPU "
            f"per cycle {ms(lo.prom_cpu)} -> {ms(hi.prom_cpu)} (at {hi.agents:,} agents the "
            f"largest cost of all, {hi.prom_cpu / max(hi.op_cpu, 1e-9):.1f}x the operator's), "
            f"and start -> first complete cycle {lo.first_cycle_s:.0f} -> "
            f"{hi.first_cycle_s:.0f} s (intervals {lo.interval} and {hi.interval} s)."
        )
        parts.append(
            f"What does not grow: PromQL queries per cycle ({lo.queries:.0f} and "
            f"{hi.queries:.0f}: one per distinct (metric, window) over all policies, never per "
            f"agent or policy) and API reads per cycle ({lo.reads_per_cycle:.0f} and "
            f"{hi.reads_per_cycle:.0f}: workloads come from the label-selected watch cache)."
        )
    else:
        parts.append(
            f"At {lo.agents:,} agents a cycle cost the operator {ms(lo.op_cpu)} of CPU, "
            f"{lo.queries:.0f} PromQL queries and {lo.reads_per_cycle:.0f} API reads."
        )
    for r in results:
        if r.writes:
            kind, count = r.writes.most_common(1)[0]
            parts.append(
                f"At {r.agents:,} agents the steady state was NOT write-free: "
                f"{r.writes_per_cycle:,.1f} writes per cycle ({count} of "
                f"{r.writes.total()} were '{kind}')."
            )
        else:
            parts.append(f"At {r.agents:,} agents the steady state sent zero writes.")
        if r.watches_open < r.watches_expected:
            parts.append(
                f"Only {r.watches_open} of {r.watches_expected} watch streams were open at "
                f"{r.agents:,} agents: the policies whose watch has no connection evaluate the "
                "workloads of their last LIST until a connection frees up (at best when the "
                "server ends a watch after its 300 s timeout), and the retries cost CPU."
            )
        if r.overruns:
            parts.append(
                f"At {r.agents:,} agents {r.overruns:.0f} cycles were skipped because the "
                f"previous one overran its {r.interval} s interval."
            )
        if r.counts["noData"] or r.counts["healthy"] != r.agents:
            parts.append(
                f"At {r.agents:,} agents only {r.counts['healthy']:,} agents read as healthy "
                f"({r.counts['noData']:,} without data): the cycle did not see every series."
            )
    return " ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--policies", type=int, default=100, help="AgentPolicies (default 100)")
    parser.add_argument(
        "--cycles",
        type=int,
        default=5,
        help="steady-state cycles measured; many of them make the long mode (RSS growth)",
    )
    parser.add_argument(
        "--unselected", type=int, default=0, help="Deployments that no policy selects"
    )
    parser.add_argument(
        "--vary",
        action="store_true",
        help="vary the policies' windows (5m, 10m, 15m) and intervals (1-3 x --interval)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="cycles skipped after the first")
    parser.add_argument(
        "--interval",
        default=None,
        help="policy interval in seconds, one for all sizes or one per size (default: 10 up "
        "to 1,000 agents, 30 above)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the operator under cProfile, writing DIR/operator-N.prof"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the operator's logs to this dir")
    parser.add_argument(
        "--api",
        choices=("emulated", "real"),
        default="emulated",
        help="the Kubernetes API: the in-process emulator or the local control plane",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.agents.split(",")]
    if args.interval is None:
        intervals = [10 if n <= 1000 else 30 for n in sizes]
    else:
        intervals = [int(s) for s in args.interval.split(",")]
    if len(intervals) == 1:
        intervals *= len(sizes)
    if len(intervals) != len(sizes):
        parser.error("--interval takes one value or one per size")
    if args.policies < 1 or args.cycles < 1 or args.warmup < 1 or args.unselected < 0:
        parser.error("--policies, --cycles and --warmup must be at least 1, --unselected 0")
    reference(
        {
            "agents": args.agents,
            "unselected": args.unselected,
            "policies": args.policies,
            "interval": ",".join(f"{i}s" for i in dict.fromkeys(intervals))
            + (" x1-3 (varied)" if args.vary else ""),
            "cycles": args.cycles,
            "api": args.api,
        }
    )
    # SIGTERM unwinds like Ctrl-C, so Prometheus and the control plane are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {machine()}")
    results = []
    for n, interval in zip(sizes, intervals, strict=True):
        print(f"{n:,} agents under {args.policies} policies, interval {interval}s:", flush=True)
        results.append(Bench(args, n, interval).run())
    table(results, args)
    print()
    print(reading(results))
    print(f"machine after the run: load {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    summaries = [summary(r, args) for r in results]
    if len(summaries) == 1:
        emit(summaries[0])
    else:
        for one in summaries:
            print(json.dumps(one))
        emit({"bench": "operator", "runs": summaries})
    return 0


def per_policy_hour(r: Result, group: str) -> float | None:
    """Writes per policy and hour for one group of policies, over the steady window."""
    members = sum(1 for k in range(r.policies) if flat(k, r.policies) == (group == "flat"))
    if not members or not r.window_s:
        return None
    return round(r.writes_by_group[group] / members / (r.window_s / 3600), 2)


def summary(r: Result, args: argparse.Namespace) -> dict[str, Any]:
    """The figures to compare runs by, one JSON object per size."""
    cpu_rate = r.op_cpu * r.cycles / r.window_s if r.window_s else 0.0  # CPU s per s
    return {
        "bench": "operator",
        "api": args.api,
        "agents": r.agents,
        "unselected": args.unselected,
        "policies": r.policies,
        "vary": args.vary,
        "interval_s": r.interval,
        "cpu_us_per_agent_cycle": round(cpu_rate * r.interval / r.agents * 1e6, 1),
        "writes_per_policy_hour_spending": per_policy_hour(r, "spending"),
        "writes_per_policy_hour_flat": per_policy_hour(r, "flat"),
        "watch_streams": r.watches_open,
        "watch_streams_min": r.watches_min,
        "queries_per_cycle_bound": round(r.queries_bound, 1),
        "rss_start_mib": round(r.rss_start / 2**20, 1),
        "rss_end_mib": round(r.rss_end / 2**20, 1),
        "rss_growth_mib": round((r.rss_end - r.rss_start) / 2**20, 1),
        "window_s": round(r.window_s),
        "first_cycle_s": round(r.first_cycle_s, 1),
        "reads_per_cycle": round(r.reads_per_cycle, 1),
        "writes_per_cycle": round(r.writes_per_cycle, 1),
        "queries_per_cycle": round(r.queries * r.cycles / r.window_s * r.interval, 1)
        if r.window_s
        else 0.0,
        "operator_cpu_ms_per_cycle": round(r.op_cpu * 1000),
        "bench_polls": r.bench_polls,
        "operator_cpu_ms_per_cycle_polls_included": round(
            (r.op_cpu + max(0, r.bench_polls - r.cycles) * r.scrape_cpu / max(r.cycles, 1)) * 1000
        ),
        "scrape_ms": round(r.scrape_cpu * 1000, 1),
        "cycle_wall_ms": round(r.cycle_wall * 1000),
        "api_cpu_ms_per_cycle": round(r.emulator_cpu * 1000),
        "prometheus_cpu_ms_per_cycle": round(r.prom_cpu * 1000),
        "peak_rss_mib": round(r.peak_rss / 2**20),
        "overruns": int(r.overruns),
        "errors": int(r.errors),
    }


if __name__ == "__main__":
    sys.exit(main())
