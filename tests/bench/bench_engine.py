"""Engine time per agent: one policy, 10,000 agents, 5 rules (goal: well under 50 µs/agent).

Prints the median over several cycles for three situations:
- steady: a healthy fleet with a few agents pending, evaluated with the previous state;
- incident: 5% of the agents breach two rules and fire (decisions, notifications);
- outbreak: 30% of the agents breach (below systemicPercent); most are held back by
  maxDisabledPercent and stay firing, so every later cycle re-checks their guardrails;
- budget: as steady, plus a per-agent budget with forecast.

The last line is JSON: ``us_per_agent`` (the steady situation's median), and the median
of each situation under ``us_per_agent_<situation>``.

Run: .venv/bin/python tests/bench/bench_engine.py [--agents 10000] [--cycles 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchlib import emit, reference

from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine import (
    AgentId,
    AgentInput,
    PolicyInput,
    PolicyState,
    SeriesKey,
    apply_decisions,
    evaluate,
    requirements,
)

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
CYCLES = 7


def spec(budget: bool) -> AgentPolicySpec:
    doc: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "agents"}},
        "interval": "30s",
        "rules": [
            {
                "name": "quality",
                "all": [
                    {
                        "metric": "error_rate",
                        "window": "5m",
                        "op": ">",
                        "value": 0.15,
                        "minSamples": 20,
                    },
                    {"metric": "latency_p95_ms", "window": "5m", "op": ">", "value": 10000},
                ],
                "for": "1m",
                "actions": [{"notify": {"channels": ["slack"]}}],
            },
            {
                "name": "low-success",
                "all": [
                    {
                        "metric": "success_rate",
                        "window": "15m",
                        "op": "<",
                        "value": 0.8,
                        "minSamples": 50,
                        "recoverValue": 0.9,
                    }
                ],
                "for": "1m",
                "actions": [{"scaleToZero": {}}, {"notify": {"channels": ["slack"]}}],
            },
            {
                "name": "latency",
                "any": [
                    {"metric": "latency_p99_ms", "window": "10m", "op": ">", "value": 30000},
                    {"metric": "tool_latency_p95_ms", "window": "10m", "op": ">", "value": 8000},
                ],
                "actions": [{"promptOptimization": {"fromCronJob": "optimizer"}}],
            },
            {
                "name": "tokens",
                "all": [
                    {
                        "metric": "tokens_per_execution",
                        "window": "30m",
                        "op": ">",
                        "value": 20000,
                        "minSamples": 10,
                    }
                ],
                "for": "5m",
                "actions": [{"switchModel": {}}],
            },
            {
                "name": "tool-errors",
                "all": [{"metric": "tool_error_rate", "window": "10m", "op": ">", "value": 0.5}],
                "for": "2m",
                "recoverFor": "2m",
            },
        ],
        "model": {
            "env": {"container": "agent", "name": "MODEL"},
            "tiers": ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano"],
        },
        "guardrails": {"maxActionsPerHour": 1000, "maxDisabledPercent": 10},
        "notifications": {
            "channels": [
                {"name": "slack", "slack": {"webhookSecretRef": {"name": "s", "key": "url"}}}
            ]
        },
    }
    if budget:
        doc["budget"] = {
            "period": "day",
            "limitUSD": 50,
            "scope": "agent",
            "soft": {
                "atPercent": 80,
                "forecast": True,
                "actions": [{"switchModel": {}}, {"notify": {"channels": ["slack"]}}],
            },
            "hard": {"actions": [{"scaleToZero": {}}]},
        }
    return AgentPolicySpec.model_validate(doc)


HEALTHY = {
    "error_rate": 0.02,
    "latency_p95_ms": 2000.0,
    "success_rate": 0.98,
    "latency_p99_ms": 4000.0,
    "tool_latency_p95_ms": 300.0,
    "tokens_per_execution": 3000.0,
    "tool_error_rate": 0.01,
    "executions": 120.0,
    "cost_usd": 3.0,
}
SICK = {**HEALTHY, "error_rate": 0.4, "latency_p95_ms": 15000.0, "success_rate": 0.5}


def fleet(n: int) -> dict[AgentId, AgentInput]:
    return {
        AgentId("agents", f"agent-{i:05d}"): AgentInput(
            name=f"agent-{i:05d}", replicas=2, model="gpt-4o"
        )
        for i in range(n)
    }


def samples(
    s: AgentPolicySpec, agents: dict[AgentId, AgentInput], now: datetime, sick: set[AgentId]
) -> dict[AgentId, dict[SeriesKey, float | None]]:
    keys = sorted(requirements(s, now), key=str)
    out: dict[AgentId, dict[SeriesKey, float | None]] = {}
    rng = random.Random(7)
    for a in agents:
        base = SICK if a in sick else HEALTHY
        out[a] = {k: base[k.metric or ""] * (0.9 + 0.2 * rng.random()) for k in keys}
    return out


def run(label: str, n: int, budget: bool, sick_share: float, cycles: int = CYCLES) -> float:
    """Evaluate ``cycles`` cycles; print and return the median µs per agent."""
    s = spec(budget)
    agents = fleet(n)
    policy = PolicyInput(s, "agents", "bench", "uid-bench", agents)
    sick = set(list(agents)[: int(n * sick_share)])
    state: PolicyState | None = None
    times: list[float] = []
    decisions = notifications = 0
    for i in range(cycles):
        now = T0 + timedelta(seconds=30 * i)
        data = samples(s, policy.agents, now, sick)
        gc.collect()  # time the engine, not the collection of the previous cycle's garbage
        start = time.perf_counter()
        outcome = evaluate(policy, data, state, now)
        times.append(time.perf_counter() - start)
        state = outcome.state
        policy = apply_decisions(policy, outcome.decisions)
        decisions += len(outcome.decisions)
        notifications += len(outcome.notifications)
    median = statistics.median(times)
    print(
        f"{label:<9} {n:>6} agents x {len(s.rules)} rules: median {median * 1000:7.1f} ms/cycle, "
        f"{median / n * 1e6:5.2f} µs/agent (min {min(times) / n * 1e6:5.2f}, "
        f"max {max(times) / n * 1e6:5.2f}); "
        f"{decisions} decisions, {notifications} notifications over {cycles} cycles"
    )
    return median / n * 1e6


SITUATIONS = {
    "steady": (False, 0.0),
    "incident": (False, 0.05),
    "outbreak": (False, 0.30),
    "budget": (True, 0.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("size", nargs="?", type=int, help=argparse.SUPPRESS)  # the old form
    parser.add_argument("--agents", type=int, default=10_000, help="agents in the policy")
    parser.add_argument("--cycles", type=int, default=CYCLES, help="cycles per situation")
    args = parser.parse_args()
    n = args.size if args.size is not None else args.agents
    if n < 1 or args.cycles < 1:
        parser.error("--agents and --cycles must be at least 1")
    reference({"agents": n, "policies": 1, "rules": 5, "interval": "30s", "cycles": args.cycles})
    figures: dict[str, object] = {"bench": "engine", "agents": n}
    for label, (budget, share) in SITUATIONS.items():
        us = run(label, n, budget=budget, sick_share=share, cycles=args.cycles)
        figures[f"us_per_agent_{label}"] = round(us, 2)
    figures["us_per_agent"] = figures["us_per_agent_steady"]
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
