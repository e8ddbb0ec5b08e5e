"""Batched queries vs one query per agent and metric, against a real Prometheus.

For 100, 1,000 and 10,000 agents this backfills a Prometheus with five minutes of history
per agent and runs one evaluation cycle of four metrics (executions, error_rate,
latency_p95_ms, cost_usd) two ways:

- batched (agentmedic): one query per metric for all agents, grouped by agent;
- naive (KEDA's Prometheus scaler): one query per agent and metric.

It prints queries per cycle, Prometheus' own evaluation time (``stats=all``), the client's
time to parse and join, and the wall time, with the naive/batched ratios. The naive run at
10,000 agents queries a random sample of agents and extrapolates linearly (it says so);
``--naive-sample 0`` leaves the naive design out.

It also measures what the operator pays for the batched fetch: the CPU time of this process
(``time.process_time``; Prometheus is another process) for a whole cycle, from building the
queries through sending them, decoding the answers and joining them into the per-agent
table, per agent, over ``--repeat`` cycles after one warm-up (the median is reported; the
answers' caches of the agent set are warm, as in the operator's steady state).

The last line is JSON: ``fetch_us_per_agent`` (median CPU µs per agent per cycle of four
queries, per size), ``fetch_wall_ms``, ``queries_per_cycle`` and, when measured,
``naive_wall_ratio``.

    .venv/bin/python tests/bench/bench_metrics.py [--sizes 100,1000,10000] [--naive-sample 1000]
        [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from benchlib import emit, reference

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    BackendConfig,
    PrometheusBackend,
    build_query,
    fetch_samples,
)
from agentmedic.metrics.promql import agent_matcher
from agentmedic_sandbox.prometheus import PrometheusServer

T0 = 1_700_000_000
AT_S = T0 + 3600
AT = datetime.fromtimestamp(AT_S, UTC)
WINDOW = timedelta(minutes=5)
METRICS = ("executions", "error_rate", "latency_p95_ms", "cost_usd")
BOUNDS = ("0.5", "1", "5", "10", "+Inf")
NS = "agents"
CONCURRENCY = max(2, os.cpu_count() or 2)
"""Queries in flight at once, the same for both designs. More than the cores only inflates
Prometheus' per-query times, whose sum is reported."""


def backfill(n: int) -> str:
    """OpenMetrics text: per agent two execution counters, a 5-bucket histogram, a cost
    counter; one sample a minute over the six minutes before AT (written directly: the
    Series helpers are too slow for millions of lines)."""
    times = [AT_S - 360 + 60 * k for k in range(7)]
    lines: list[str] = []
    for i in range(n):
        lab = f'agent="agent-{i:05d}",model="m",namespace="{NS}"'
        ok, err, cost = 1 + i % 10, 0.05 * (i % 4), 0.001 * (1 + i % 7)
        for t in times:
            lines.append(f'agent_executions_total{{{lab},status="success"}} {ok * (t - T0)} {t}')
        for t in times:
            lines.append(f'agent_executions_total{{{lab},status="error"}} {err * (t - T0)} {t}')
        for b, le in enumerate(BOUNDS):
            rate = (ok + err) * (b + 1) / len(BOUNDS)
            for t in times:
                lines.append(
                    f'agent_execution_duration_seconds_bucket{{{lab},le="{le}"}} '
                    f"{rate * (t - T0)} {t}"
                )
        for t in times:
            lines.append(f"agent_cost_usd_total{{{lab}}} {cost * (t - T0)} {t}")
    # promtool wants each metric family in one block: sort by name, stable within series.
    lines.sort(key=lambda line: line.split("{", 1)[0])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class Figures:
    queries: int
    wall: float
    server: float
    client: float
    extrapolated_from: int | None = None
    cpu: float = 0.0
    """This process' CPU seconds for one cycle (median)."""


async def batched(backend: PrometheusBackend, agents: list[AgentId], repeat: int) -> Figures:
    # The operator hands over a set per key (merged over its policies).
    needs = {SeriesKey(m, None, WINDOW): set(agents) for m in METRICS}
    runs = []
    cpus = []
    for i in range(repeat + 1):
        c0 = time.process_time()
        table, stats = await fetch_samples(backend, needs, AT, max_concurrency=CONCURRENCY)
        cpu = time.process_time() - c0
        assert not stats.errors, stats.errors
        have = sum(v is not None for per in table.values() for v in per.values())
        assert have == len(agents) * len(METRICS), f"only {have} values"
        if i == 0:
            continue  # the warm-up: imports, connections, the agent set's caches
        cpus.append(cpu)
        runs.append(
            Figures(
                stats.queries,
                stats.wall_seconds,
                stats.server_seconds or 0.0,
                stats.parse_seconds + stats.join_seconds,
            )
        )
    best = min(runs, key=lambda f: f.wall)
    best.cpu = statistics.median(cpus)
    return best


async def naive(backend: PrometheusBackend, agents: list[AgentId], sample: int) -> Figures:
    chosen = agents if len(agents) <= sample else random.Random(1).sample(agents, sample)
    queries = [
        DEFAULT_CATALOG.render(
            m, window=WINDOW, agents=agent_matcher("agent", [a.name]), by="agent"
        )
        for a in chosen
        for m in METRICS
    ]
    semaphore = asyncio.Semaphore(CONCURRENCY)
    server = client = 0.0

    async def one(q: str) -> None:
        nonlocal server, client
        async with semaphore:
            result = await backend.query(q, AT)
        # KEDA requires exactly one sample per query; so do we here.
        assert len(result.samples) == 1, (q, result.samples)
        server += result.timing.server or 0.0
        client += result.timing.parse

    started = time.perf_counter()
    await asyncio.gather(*(one(q) for q in queries))
    wall = time.perf_counter() - started
    scale = len(agents) / len(chosen)
    return Figures(
        int(len(queries) * scale),
        wall * scale,
        server * scale,
        client * scale,
        extrapolated_from=len(chosen) if scale != 1 else None,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


async def bench(n: int, sample: int, repeat: int) -> tuple[Figures, Figures | None, int]:
    text_started = time.perf_counter()
    text = backfill(n)
    with PrometheusServer(backfill=text) as prom:
        setup = time.perf_counter() - text_started
        print(f"  {n:,} agents: {len(text) / 1e6:.1f} MB backfilled, server ready in {setup:.1f}s")
        agents = [AgentId(NS, f"agent-{i:05d}") for i in range(n)]
        query_bytes = len(build_query(SeriesKey("error_rate", None, WINDOW), agents))
        config = BackendConfig(url=prom.url, query_stats=True, timeout=60, deadline=120)
        async with PrometheusBackend(config) as backend:
            b = await batched(backend, agents, repeat)
            v = await naive(backend, agents, sample) if sample > 0 else None
    return b, v, query_bytes


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated agent counts")
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=1000,
        help="agents queried one by one for the naive design (0: leave it out)",
    )
    parser.add_argument("--repeat", type=int, default=7, help="batched cycles measured per size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    reference(
        {
            "agents": args.sizes,
            "policies": "n/a (fetch only)",
            "queries per cycle": len(METRICS),
            "window": "5m",
        }
    )
    print(f"one cycle = {len(METRICS)} metrics ({', '.join(METRICS)}), window 5m,")
    print(
        f"queries run {CONCURRENCY} at a time (both designs); best of 3 for batched; times in "
        f"ms; {os.cpu_count()} CPUs shared with Prometheus, so figures vary with machine load"
    )
    rows = []
    for n in sizes:
        b, v, size = asyncio.run(bench(n, args.naive_sample, args.repeat))
        rows.append((n, b, v, size))
        print(
            f"  {n:,} agents: fetch + decode + join {b.cpu * 1000:,.1f} ms CPU per cycle, "
            f"{b.cpu / n * 1e6:.2f} us per agent",
            flush=True,
        )

    header = (
        f"{'agents':>7} {'design':<8} {'queries':>8} {'server':>10} {'client':>10} "
        f"{'wall':>10}  note"
    )
    print()
    print(header)
    print("-" * len(header))
    for n, b, v, size in rows:
        print(
            f"{n:>7,} {'batched':<8} {b.queries:>8,} {ms(b.server):>10} {ms(b.client):>10} "
            f"{ms(b.wall):>10}  largest query {size / 1024:,.0f} KiB (sent by POST)"
        )
        if v is None:
            continue
        note = (
            f"extrapolated from {v.extrapolated_from:,} sampled agents"
            if v.extrapolated_from
            else "measured"
        )
        print(
            f"{'':>7} {'naive':<8} {v.queries:>8,} {ms(v.server):>10} {ms(v.client):>10} "
            f"{ms(v.wall):>10}  {note}"
        )
        print(
            f"{'':>7} {'ratio':<8} {v.queries / b.queries:>8,.0f} "
            f"{v.server / b.server if b.server else float('nan'):>10,.1f} "
            f"{v.client / b.client if b.client else float('nan'):>10,.1f} "
            f"{v.wall / b.wall:>10,.1f}  naive / batched"
        )
    print()
    print(
        "server: Prometheus' execTotalTime summed over queries; client: our JSON decode + "
        "join to agents; wall: the cycle's elapsed time."
    )
    per_agent = statistics.median(r[1].wall / r[0] for r in rows)
    print(f"batched cycle wall time per agent (median over sizes): {per_agent * 1e6:.1f} us")
    figures: dict[str, object] = {
        "bench": "metrics",
        "agents": sizes,
        "queries_per_cycle": len(METRICS),
        "fetch_us_per_agent": {str(n): round(b.cpu / n * 1e6, 2) for n, b, _, _ in rows},
        "fetch_wall_ms": {str(n): round(b.wall * 1000, 1) for n, b, _, _ in rows},
    }
    ratios = {str(n): round(v.wall / b.wall, 1) for n, b, v, _ in rows if v is not None}
    if ratios:
        figures["naive_wall_ratio"] = ratios
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
