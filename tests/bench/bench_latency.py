"""Detection → remediation latency: a metric steps into breach, how long until the action.

One installation on loopback: the API emulator (in this process) with ``--agents``
Deployments, one AgentPolicy selecting them all with one rule (a raw query over the gauge
``bench_breach``, above 0.5 → scaleToZero, no ``for``), guardrails that allow every action
(``maxDisabledPercent: 100``, ``systemicPercent: 100``, no hourly cap), a real Prometheus
fed by remote write, and the operator as an ``agentmedic run`` subprocess.

After the first cycle has evaluated every agent, each step of ``--steps`` (default 1, then
1,000) pushes ``bench_breach = 1`` for that many fresh agents at once and records, for each
of them, when the operator's first write to its Deployment reached the API server (the
emulator's request log, polled every 20 ms). The latency includes the wait for the next
cycle, so it is at most about one interval plus the cycle's own work.

Goals (issue 17): one agent within ``interval + 1 s``, 1,000 at once within
``interval + 20 s`` (the last action).

The reference line names the machine and the load; the last line is JSON:
``latency_<n>_p50_s``, ``latency_<n>_p99_s``, ``latency_<n>_last_s`` and ``acted_<n>`` per
step of n agents, and ``interval_s``.

    .venv/bin/python tests/bench/bench_latency.py [--agents 1100] [--steps 1,1000]
        [--interval 10]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_operator import API_VERSION, NS, agent_name, deployment, free_port, wait_for
from benchlib import emit, reference

from agentmedic.api.validation import validate_policy
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.prometheus import PrometheusServer, Series

GAUGE = "bench_breach"
_DEPLOYMENT = re.compile(r"/deployments/(agent-\d+)")


def latency_policy(interval: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentPolicy",
        "metadata": {"name": "latency", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "agentmedic-bench"}},
            "interval": f"{interval}s",
            "rules": [
                {
                    "name": "breach",
                    "all": [
                        {
                            "query": f"max by (agent, namespace) ({GAUGE}{{ {{{{agents}}}} }})",
                            "op": ">",
                            "value": 0.5,
                        }
                    ],
                    "actions": [{"scaleToZero": {}}],
                }
            ],
            "guardrails": {
                "cooldown": "1m",
                "maxDisabledPercent": 100,
                "systemicPercent": 100,
                "maxActionsPerHour": 1_000_000,
            },
        },
    }


def gauge(agents: range | list[int], value: float) -> list[Series]:
    now = time.time()
    return [
        Series(GAUGE, {"agent": agent_name(i), "namespace": NS}, [(now, value)]) for i in agents
    ]


class FirstWrites(threading.Thread):
    """Polls the emulator's request log; the first moment a write to each agent's
    Deployment was seen."""

    def __init__(self, api: ApiEmulator) -> None:
        super().__init__(name="bench-first-writes", daemon=True)
        self.api = api
        self.seen: dict[str, float] = {}
        self._done = threading.Event()
        self._offset = 0

    def run(self) -> None:
        while not self._done.is_set():
            requests = self.api.requests
            now = time.monotonic()
            for r in requests[self._offset :]:
                if r.is_write and (m := _DEPLOYMENT.search(r.path)):
                    self.seen.setdefault(m.group(1), now)
            self._offset = len(requests)
            self._done.wait(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def start_operator(api: ApiEmulator, prom: PrometheusServer, tmp: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("agentmedic")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "agentmedic.cli.main"]
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
        str(free_port()),
        "--health-port",
        "0",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMEDIC_")}
    with (tmp / "operator.log").open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env=env)


def stop_operator(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def evaluated(api: ApiEmulator, n: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the operator exited with {proc.returncode}")
    doc = api.get(API_VERSION, "AgentPolicy", NS, "latency")
    return bool(doc) and ((doc.get("status") or {}).get("agents") or {}).get("total") == n


def run(args: argparse.Namespace, steps: list[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {"bench": "latency", "agents": args.agents}
    figures["interval_s"] = args.interval
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-latency-")))
        prom = PrometheusServer(remote_write_receiver=True).start()
        stack.callback(prom.stop)
        api = ApiEmulator(history_limit=1_000_000)
        api.start()
        stack.callback(api.stop)
        for i in range(args.agents):
            api.create(deployment(i, 1))
        doc = latency_policy(args.interval)
        _, problems = validate_policy(doc)
        if problems:
            raise ValueError(f"the bench's policy is invalid: {problems}")
        api.create(doc)
        prom.remote_write(gauge(range(args.agents), 0.0))
        proc = start_operator(api, prom, tmp)
        stack.callback(stop_operator, proc)
        started = time.monotonic()
        wait_for(lambda: evaluated(api, args.agents, proc), 300, "the first cycle", 0.2)
        print(f"  every agent evaluated {time.monotonic() - started:.1f}s after start", flush=True)
        watcher = FirstWrites(api)
        watcher.start()
        stack.callback(watcher.stop)
        fresh = 0
        for size in steps:
            chosen = list(range(fresh, fresh + size))
            fresh += size
            figures.update(step(args, prom, watcher, chosen))
    return figures


def step(
    args: argparse.Namespace, prom: PrometheusServer, watcher: FirstWrites, chosen: list[int]
) -> dict[str, Any]:
    """Breach ``chosen`` at once; the latency of each one's first write."""
    n = len(chosen)
    names = [agent_name(i) for i in chosen]
    prom.remote_write(gauge(chosen, 1.0))
    t0 = time.monotonic()
    limit = args.interval + 60 + n * 0.1
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: all(name in watcher.seen for name in names), limit, "the actions", 0.1)
    latencies = [watcher.seen[name] - t0 for name in names if name in watcher.seen]
    out: dict[str, Any] = {f"acted_{n}": len(latencies)}
    if latencies:
        out[f"latency_{n}_p50_s"] = round(percentile(latencies, 50), 2)
        out[f"latency_{n}_p99_s"] = round(percentile(latencies, 99), 2)
        out[f"latency_{n}_last_s"] = round(max(latencies), 2)
    goal = args.interval + (1 if n == 1 else 20)
    last = max(latencies) if latencies else math.inf
    print(
        f"  {n:,} agents breached at once: {len(latencies):,} acted on; latency p50 "
        f"{out.get(f'latency_{n}_p50_s', 'n/a')} s, p99 {out.get(f'latency_{n}_p99_s', 'n/a')} "
        f"s, last {last:.2f} s (goal: within {goal} s: {'met' if last <= goal else 'NOT met'})",
        flush=True,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1100, help="agents the policy selects")
    parser.add_argument(
        "--steps", default="1,1000", help="agents breached at once, per step (comma-separated)"
    )
    parser.add_argument("--interval", type=int, default=10, help="policy interval in seconds")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if any(s < 1 for s in steps) or sum(steps) > args.agents:
        parser.error("--steps must be positive and add up to at most --agents")
    if args.interval < 10:
        parser.error("--interval must be at least 10 (the policy's minimum)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reference(
        {
            "agents": args.agents,
            "policies": 1,
            "interval": f"{args.interval}s",
            "steps": args.steps,
            "api": "emulated",
        }
    )
    emit(run(args, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
