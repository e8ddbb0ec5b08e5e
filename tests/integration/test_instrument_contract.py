"""Contract: what the SDK exports is what the metric catalog reads.

A script of executions for several agents is recorded with the SDK, each agent on its own
registry as in its own pod. After every 15-second step the registries are read the way a
scrape would read them (``namespace`` added as a target label would add it); the snapshots
are backfilled into a real Prometheus, and every built-in metric of the catalog, fetched
through the metrics layer, must equal the value the script implies, computed here
independently of both the SDK and the catalog.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.instrument import AgentMonitor, LLMCall, ModelPrice, PriceTable, ToolCallRecord
from agentmedic.instrument.series import EXECUTION_DURATION_BUCKETS, TOOL_DURATION_BUCKETS
from agentmedic.metrics import BackendConfig, PrometheusBackend, fetch_samples
from agentmedic_sandbox.fleet_sim import registry_series
from agentmedic_sandbox.prometheus import Series, openmetrics_text

pytestmark = pytest.mark.prometheus

NS = "agents"
T0 = 1_700_000_000 - 1_700_000_000 % 60
STEP = 15
AT_S = T0 + 40 * 60
AT = datetime.fromtimestamp(AT_S, UTC)
WINDOWS = (timedelta(minutes=5), timedelta(minutes=10))

# The test's own prices, handed to the SDK, so expected costs need no SDK code.
PRICES = {
    "gpt-4o": (2.50, 1.25, 10.00),  # input, cached input, output per 1M
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
}
PRICE_TABLE = PriceTable(
    {m: ModelPrice(input=i, cached_input=c, output=o) for m, (i, c, o) in PRICES.items()}
)


@dataclass(frozen=True)
class Plan:
    """How one scripted agent behaves."""

    name: str
    model: str
    per_step: int  # executions per 15 s step
    error_every: int  # every n-th execution fails (0: never)
    latency: tuple[float, float]  # uniform range of execution latency, seconds
    tools: tuple[tuple[str, float, int], ...]  # (name, duration, fail every n-th call; 0 never)
    switch_to: str | None = None  # model from minute 5 on
    idle_from: int | None = None  # no executions from this second after T0 on


PLANS = [
    Plan("support-bot", "gpt-4o", 3, 7, (1.0, 9.0), (("search", 0.3, 9), ("crm", 1.2, 4))),
    Plan("mini-bot", "gpt-4o-mini", 5, 0, (0.2, 2.5), (("search", 0.05, 0),)),
    Plan(
        "switcher",
        "gpt-4o",
        2,
        5,
        (3.0, 200.0),
        (("browser", 6.0, 3),),
        switch_to="gpt-4.1",
    ),
    Plan("lab-bot", "house-llm", 2, 3, (0.5, 4.0), (("search", 0.2, 2),)),
    Plan("retired", "gpt-4o-mini", 4, 0, (0.5, 1.0), (("search", 0.1, 0),), idle_from=20 * 60),
]


SCORED = ("support-bot", "switcher")
"""Agents that give their executions quality scores; the others have none (no data)."""


@dataclass
class Done:
    """One recorded execution, as the script decided it."""

    at: int
    model: str
    ok: bool
    latency: float
    input_tokens: int
    cached: int
    output_tokens: int
    tools: list[tuple[float, bool]] = field(default_factory=list)
    scores: list[tuple[str, float]] = field(default_factory=list)

    @property
    def cost(self) -> float | None:
        if self.model not in PRICES:
            return None
        i, c, o = PRICES[self.model]
        fresh = self.input_tokens - self.cached
        return (fresh * i + self.cached * c + self.output_tokens * o) / 1e6


def run_script() -> tuple[list[Series], dict[str, list[Done]]]:
    rng = random.Random(42)
    score_rng = random.Random(7)  # its own stream: the other values stay as they were
    registries = {p.name: CollectorRegistry() for p in PLANS}
    monitors = {
        p.name: AgentMonitor(p.name, registries[p.name], model=p.model, prices=PRICE_TABLE)
        for p in PLANS
    }
    done: dict[str, list[Done]] = {p.name: [] for p in PLANS}
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    for t in range(T0, AT_S + 1, STEP):
        for p in PLANS:
            if p.idle_from is not None and t - T0 >= p.idle_from:
                continue
            model = p.switch_to if p.switch_to and t - T0 >= 300 else p.model
            if model != monitors[p.name].model:
                monitors[p.name].set_model(model)  # as the agent does when told its tier
            for _ in range(p.per_step):
                n = len(done[p.name])
                ok = not (p.error_every and n % p.error_every == p.error_every - 1)
                item = Done(
                    at=t,
                    model=model,
                    ok=ok,
                    latency=rng.uniform(*p.latency),
                    input_tokens=rng.randint(200, 4000),
                    cached=0,
                    output_tokens=rng.randint(20, 900),
                )
                item.cached = rng.randint(0, item.input_tokens // 2)
                tools = []
                for tool, duration, fail_every in p.tools:
                    d = duration * rng.uniform(0.5, 1.5)
                    tool_ok = not (fail_every and rng.randrange(fail_every) == 0)
                    tools.append(ToolCallRecord(tool, d, tool_ok))
                    item.tools.append((d, tool_ok))
                if p.name in SCORED:
                    item.scores.append(("groundedness", round(score_rng.uniform(0.2, 1.0), 3)))
                    if n % 3 == 0:
                        item.scores.append(("user_rating", score_rng.choice((0.0, 0.5, 1.0))))
                monitors[p.name].record_execution(
                    latency_s=item.latency,
                    status="success" if ok else "error",
                    error_type=None if ok else "BadAnswer",
                    model=model,
                    llm_calls=[
                        LLMCall(
                            request_model=model,
                            input_tokens=item.input_tokens,
                            output_tokens=item.output_tokens,
                            cached_input_tokens=item.cached,
                            duration_s=item.latency * 0.8,
                        )
                    ],
                    tools=tools,
                    timestamp=t - item.latency,
                    scores=item.scores,
                )
                done[p.name].append(item)
        for p in PLANS:
            for s in registry_series(registries[p.name], t, {"namespace": NS}):
                key = (s.name, tuple(sorted(s.labels.items())))
                series.setdefault(key, []).extend(s.points)
    return [Series(n, dict(lab), pts) for (n, lab), pts in series.items()], done


@functools.cache
def script() -> tuple[list[Series], dict[str, list[Done]]]:
    """Run on first use, not at import: collecting the tests stays cheap."""
    return run_script()


def done() -> dict[str, list[Done]]:
    """What the script recorded, per agent."""
    return script()[1]


def bucket_quantile(q: float, bounds: Sequence[float], values: Sequence[float]) -> float | None:
    """Prometheus' histogram_quantile (promql/quantile.go, v2.42) over raw observations."""
    if not values:
        return None
    upper = [*bounds, math.inf]
    counts = [sum(1 for v in values if v <= b) for b in upper]
    rank = q * counts[-1]
    b = next((i for i, c in enumerate(counts[:-1]) if c >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return upper[-2]
    start = 0.0 if b == 0 else upper[b - 1]
    below = counts[b - 1] if b else 0
    return start + (upper[b] - start) * ((rank - below) / (counts[b] - below))


def expected(name: str, metric: str, window: timedelta) -> float | None:
    since = AT_S - window.total_seconds()
    runs = [d for d in done()[name] if since < d.at <= AT_S]
    n = len(runs)
    tokens = sum(d.input_tokens + d.output_tokens for d in runs)
    # The SDK creates an agent's cost series with its first priced execution; without one
    # the spend is unknown (no data), never 0.
    priced = any(d.cost is not None for d in done()[name] if d.at <= AT_S)
    cost = sum(d.cost for d in runs if d.cost is not None) if priced else None
    tool_calls = [t for d in runs for t in d.tools]
    ms = [1000 * d.latency for d in runs]
    tool_ms = [1000 * duration for duration, _ in tool_calls]
    bounds_ms = [1000 * b for b in EXECUTION_DURATION_BUCKETS]
    tool_bounds_ms = [1000 * b for b in TOOL_DURATION_BUCKETS]
    ratio = (lambda part: part / n) if n else (lambda part: None)
    scores = [v for d in runs for _, v in d.scores]
    return {
        "executions": float(n),
        "success_rate": ratio(sum(d.ok for d in runs)),
        "error_rate": ratio(sum(not d.ok for d in runs)),
        "latency_p50_ms": bucket_quantile(0.5, bounds_ms, ms),
        "latency_p95_ms": bucket_quantile(0.95, bounds_ms, ms),
        "latency_p99_ms": bucket_quantile(0.99, bounds_ms, ms),
        "tokens": float(tokens),
        "tokens_per_execution": tokens / n if n else None,
        "cost_usd": cost,
        "cost_per_execution": cost / n if n and cost is not None else None,
        "tool_error_rate": (
            sum(not ok for _, ok in tool_calls) / len(tool_calls) if tool_calls else None
        ),
        "tool_latency_p95_ms": bucket_quantile(0.95, tool_bounds_ms, tool_ms),
        "quality_score": sum(scores) / len(scores) if scores else None,
    }[metric]


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory) -> str:  # type: ignore[no-untyped-def]
    return prometheus_module_factory(backfill=openmetrics_text(script()[0])).url


@pytest.fixture
async def backend(prom_url: str) -> AsyncIterator[PrometheusBackend]:
    async with PrometheusBackend(BackendConfig(url=prom_url)) as b:
        yield b


AGENTS = [AgentId(NS, p.name) for p in PLANS]


def test_the_script_exercises_what_the_contract_must_cover() -> None:
    last_10m = [d for d in done()["support-bot"] if d.at > AT_S - 600]
    assert any(not d.ok for d in last_10m)
    assert any(not ok for d in last_10m for _, ok in d.tools)
    assert all(d.ok for d in done()["mini-bot"])  # never fails: error counter stays at 0
    assert not any(d.scores for d in done()["mini-bot"])  # no scores: quality is no data
    assert any(len(d.scores) == 2 for d in done()["switcher"])  # two names in one execution
    assert {d.model for d in done()["switcher"]} == {"gpt-4o", "gpt-4.1"}
    assert not [d for d in done()["retired"] if d.at > AT_S - 600]  # idle in every window
    # some latencies land in the +Inf bucket
    assert max(d.latency for d in done()["switcher"]) > EXECUTION_DURATION_BUCKETS[-1]


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{int(w.total_seconds())}s")
async def test_every_catalog_metric_returns_what_the_script_implies(
    backend: PrometheusBackend, window: timedelta
) -> None:
    needs = {SeriesKey(m, None, window): AGENTS for m in BUILTIN_METRICS}
    table, stats = await fetch_samples(backend, needs, AT)
    assert not stats.errors
    for agent in AGENTS:
        for metric in BUILTIN_METRICS:
            want = expected(agent.name, metric, window)
            got = table[agent][SeriesKey(metric, None, window)]
            if want is None:
                assert got is None, f"{agent.name} {metric}: {got}, expected no data"
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (
                    f"{agent.name} {metric}[{window}]: {got} != {want}"
                )


async def test_unpriced_model_cost_is_no_data_not_zero(backend: PrometheusBackend) -> None:
    key = SeriesKey("cost_usd", None, timedelta(minutes=5))
    table, _ = await fetch_samples(backend, {key: [AgentId(NS, "lab-bot")]}, AT)
    assert table[AgentId(NS, "lab-bot")][key] is None


async def test_sdk_exports_no_cost_series_for_an_unpriced_model(backend: PrometheusBackend) -> None:
    result = await backend.query('agent_cost_usd_total{agent="lab-bot"}', AT)
    assert result.samples == ()
    tokens = await backend.query('agent_tokens_total{agent="lab-bot"}', AT)
    # tokens are known even when their price is not
    assert {s.labels["type"] for s in tokens.samples} == {"input", "output", "cached_input"}


async def test_tokens_times_the_same_prices_equal_the_sdks_own_cost_cached_input_included(
    backend: PrometheusBackend,
) -> None:
    """The cached part of input is exported as type="cached_input", so a price list equal
    to the SDK's prices reproduces the SDK's cost: the fleet's cost-source check starts
    from no disagreement at all."""
    from agentmedic.metrics.pricing import PriceBook

    book = PriceBook(PRICE_TABLE.prices)
    tokens = await backend.query("agent_tokens_total", AT)
    cost = await backend.query("agent_cost_usd_total", AT)
    by_agent: dict[str, dict[tuple[str, str], float]] = {}
    for sample in tokens.samples:
        slot = (sample.labels["model"], sample.labels["type"])
        by_agent.setdefault(sample.labels["agent"], {})[slot] = sample.value
    reported: dict[str, float] = {}
    for sample in cost.samples:
        agent = sample.labels["agent"]
        reported[agent] = reported.get(agent, 0.0) + sample.value
    checked = 0
    for agent, items in done().items():
        cached = [v for (_, kind), v in by_agent[agent].items() if kind == "cached_input"]
        assert sum(cached) == sum(item.cached for item in items)
        usd, unpriced = book.spend(by_agent[agent])
        if unpriced:
            assert agent not in reported  # no price: no cost series, never a cost of 0
            continue
        assert usd == pytest.approx(reported[agent], rel=1e-9)
        assert usd == pytest.approx(sum(item.cost or 0.0 for item in items), rel=1e-9)
        checked += 1
    assert checked >= 3


async def test_agent_info_names_each_agents_current_model(backend: PrometheusBackend) -> None:
    result = await backend.query(f'agent_info{{namespace="{NS}"}} == 1', AT)
    models = {s.labels["agent"]: s.labels["model"] for s in result.samples}
    assert models == {
        "support-bot": "gpt-4o",
        "mini-bot": "gpt-4o-mini",
        "switcher": "gpt-4.1",
        "lab-bot": "house-llm",
        "retired": "gpt-4o-mini",
    }


async def test_opentelemetry_genai_series_agree_with_the_script(
    backend: PrometheusBackend,
) -> None:
    query = (
        "sum by (agent, gen_ai_token_type) "
        '(increase(gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",'
        ' gen_ai_provider_name="openai"}[10m]))'
    )
    result = await backend.query(query, AT)
    got = {(s.labels["agent"], s.labels["gen_ai_token_type"]): s.value for s in result.samples}
    for p in PLANS:
        runs = [d for d in done()[p.name] if d.at > AT_S - 600]
        want_in = sum(d.input_tokens for d in runs)
        want_out = sum(d.output_tokens for d in runs)
        assert got[(p.name, "input")] == pytest.approx(want_in)
        assert got[(p.name, "output")] == pytest.approx(want_out)
    count = await backend.query(
        'sum(increase(gen_ai_client_operation_duration_seconds_count{agent="switcher",'
        ' gen_ai_request_model="gpt-4.1"}[10m]))',
        AT,
    )
    assert count.samples[0].value == pytest.approx(
        len([d for d in done()["switcher"] if d.at > AT_S - 600])
    )
