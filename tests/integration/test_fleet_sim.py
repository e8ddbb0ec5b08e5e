"""The simulated fleet: reproducible, scripted behaviour that the operator can act on, and
series a real Prometheus can scrape or backfill."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import BackendConfig, PrometheusBackend, fetch_samples
from agentmedic_sandbox.fleet_sim import (
    AgentSpec,
    AgentState,
    AgentTotals,
    Behaviour,
    BudgetBurn,
    ErrorRamp,
    FleetSimulator,
    LatencySpike,
    Outage,
    ToolProfile,
    ToolSlowdown,
    registry_series,
)
from agentmedic_sandbox.prometheus import openmetrics_text

NS = "agents"
TOOLS = (ToolProfile("search", latency_s=0.2, error_rate=0.0), ToolProfile("crm", latency_s=0.5))
BASE = Behaviour(error_rate=0.02, latency_s=2.0, tools=TOOLS)


def spec(name: str, model: str = "gpt-4o", **kwargs: object) -> AgentSpec:
    return AgentSpec(name, NS, model, base=BASE, **kwargs)  # type: ignore[arg-type]


def delta(before: AgentTotals, after: AgentTotals) -> AgentTotals:
    return AgentTotals(
        executions=after.executions - before.executions,
        errors=after.errors - before.errors,
        skipped=after.skipped - before.skipped,
        input_tokens=after.input_tokens - before.input_tokens,
        output_tokens=after.output_tokens - before.output_tokens,
        cost_usd=after.cost_usd - before.cost_usd,
    )


def phases(sim: FleetSimulator, name: str, bounds: list[float]) -> list[AgentTotals]:
    """What the agent did between consecutive simulated instants."""
    out = []
    sim.advance_to(bounds[0])
    previous = sim.totals(NS, name)
    for t in bounds[1:]:
        sim.advance_to(t)
        now = sim.totals(NS, name)
        out.append(delta(previous, now))
        previous = now
    return out


def exposition(
    sim: FleetSimulator, name: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.points[0][1]
        for s in registry_series(sim.registry(NS, name), 0.0)
    }


def test_same_seed_gives_the_same_executions_however_time_is_cut() -> None:
    agents = [
        spec("a", rate=10.0, effects=[ErrorRamp(start=10, ramp=20, to=0.3)]),
        spec("b", rate=10.0),
    ]
    one_step = FleetSimulator(agents, seed=11, epoch=1_700_000_000)
    one_step.advance_to(60)
    ragged = FleetSimulator(agents, seed=11, epoch=1_700_000_000)
    t = 0.0
    for i in range(30):
        t = min(60.0, t + 0.37 * (1 + i % 7))
        ragged.advance_to(t)
    ragged.advance_to(60)
    for name in ("a", "b"):
        assert one_step.totals(NS, name) == ragged.totals(NS, name)
        assert one_step.totals(NS, name).executions == 60 * 10
        assert exposition(one_step, name) == exposition(ragged, name)
    other_seed = FleetSimulator(agents, seed=12, epoch=1_700_000_000)
    other_seed.advance_to(60)
    assert other_seed.totals(NS, "a") != one_step.totals(NS, "a")


def test_error_ramp_climbs_holds_and_recovers() -> None:
    sim = FleetSimulator([spec("bot", effects=[ErrorRamp(start=60, ramp=60, to=0.5, end=180)])])
    before, ramp, high, after = phases(sim, "bot", [0, 60, 120, 180, 300])
    assert before.errors / before.executions < 0.05
    assert 0.15 < ramp.errors / ramp.executions < 0.35  # halfway up on average
    assert 0.42 < high.errors / high.executions < 0.58
    assert after.errors / after.executions < 0.05


def test_latency_spike_shows_in_the_duration_histogram() -> None:
    sim = FleetSimulator([spec("bot", effects=[LatencySpike(start=60, end=120, latency_s=15.0)])])
    registry = sim.registry(NS, "bot")
    labels = {"agent": "bot", "model": "gpt-4o"}

    def mean_latency(start: float, end: float) -> float:
        sim.advance_to(start)
        s0 = registry.get_sample_value("agent_execution_duration_seconds_sum", labels) or 0.0
        c0 = registry.get_sample_value("agent_execution_duration_seconds_count", labels) or 0.0
        sim.advance_to(end)
        s1 = registry.get_sample_value("agent_execution_duration_seconds_sum", labels) or 0.0
        c1 = registry.get_sample_value("agent_execution_duration_seconds_count", labels) or 0.0
        return (s1 - s0) / (c1 - c0)

    assert 1.6 < mean_latency(0, 60) < 2.6
    assert 13.0 < mean_latency(60, 120) < 18.0
    assert 1.6 < mean_latency(120, 180) < 2.6


def test_fleet_outage_fails_every_agent_then_recovers() -> None:
    agents = [spec(f"bot-{i}") for i in range(4)]
    sim = FleetSimulator(agents, seed=3, fleet_effects=[Outage(start=30, end=45)])
    results: dict[str, list[AgentTotals]] = {a.name: [] for a in agents}
    bounds = [0.0, 30.0, 45.0, 90.0]
    previous = {a.name: sim.totals(NS, a.name) for a in agents}
    for t in bounds[1:]:
        sim.advance_to(t)
        for a in agents:
            now = sim.totals(NS, a.name)
            results[a.name].append(delta(previous[a.name], now))
            previous[a.name] = now
    for _name, (before, outage, after) in results.items():
        assert outage.executions == 15 * 20
        assert outage.errors == outage.executions
        assert outage.input_tokens == 0  # the provider never answered: nothing billed
        assert outage.cost_usd == 0
        assert before.errors < before.executions * 0.05
        assert after.errors < after.executions * 0.05


def test_budget_burn_multiplies_tokens_and_spend() -> None:
    sim = FleetSimulator([spec("burner", effects=[BudgetBurn(start=60, token_factor=8.0)])])
    normal, burning = phases(sim, "burner", [0, 60, 120])
    assert burning.input_tokens == pytest.approx(8 * normal.input_tokens, rel=0.05)
    assert burning.cost_usd == pytest.approx(8 * normal.cost_usd, rel=0.05)


def test_tool_slowdown_slows_only_that_tool() -> None:
    sim = FleetSimulator(
        [spec("bot", effects=[ToolSlowdown("crm", start=0, end=None, latency_s=9.0)])]
    )
    sim.advance_to(30)
    registry = sim.registry(NS, "bot")

    def mean(tool: str) -> float:
        labels = {"agent": "bot", "tool": tool}
        total = registry.get_sample_value("agent_tool_duration_seconds_sum", labels)
        count = registry.get_sample_value("agent_tool_duration_seconds_count", labels)
        assert total is not None
        assert count
        return total / count

    assert mean("crm") > 8.0
    assert mean("search") < 0.4


def test_operator_actions_show_in_the_simulation() -> None:
    state = {"replicas": 1, "model": "gpt-4o"}
    sim = FleetSimulator(
        [spec("bot")],
        seed=5,
        state=lambda ns, name: AgentState(str(state["model"]), int(state["replicas"])),
    )
    dear = phases(sim, "bot", [0, 30])[0]
    state["replicas"] = 0  # scaled to zero
    down = phases(sim, "bot", [30, 60])[0]
    assert down.executions == 0
    assert down.skipped == 30 * 20
    state.update(replicas=2, model="gpt-4o-mini")  # restored, one tier down
    cheap = phases(sim, "bot", [60, 90])[0]
    assert cheap.executions == 30 * 20
    assert cheap.cost_usd / cheap.executions < dear.cost_usd / dear.executions / 10
    registry = sim.registry(NS, "bot")
    assert registry.get_sample_value("agent_info", {"agent": "bot", "model": "gpt-4o-mini"}) == 1
    assert registry.get_sample_value("agent_info", {"agent": "bot", "model": "gpt-4o"}) is None
    assert sim.totals(NS, "bot").by_model == {"gpt-4o": 600, "gpt-4o-mini": 600}


def test_background_thread_follows_the_clock_until_stopped() -> None:
    sim = FleetSimulator([spec("bot")], seed=1)
    sim.start(speed=50.0, tick=0.02)
    deadline = time.monotonic() + 20
    while sim.now < 5.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    sim.stop()
    assert sim.now >= 5.0
    stopped_at = sim.totals(NS, "bot").executions
    assert stopped_at >= 5 * 20
    assert sim.totals(NS, "bot").executions == stopped_at  # nothing runs after stop()
    with pytest.raises(ValueError, match="back"):
        sim.advance_to(sim.now - 1)


def test_duplicate_agents_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        FleetSimulator([spec("bot"), spec("bot")])


@pytest.mark.prometheus
def test_prometheus_scrapes_each_agent_with_its_namespace(prometheus_factory) -> None:  # type: ignore[no-untyped-def]
    agents = [spec("alpha"), AgentSpec("beta", "research", "gpt-4o-mini", base=BASE)]
    with FleetSimulator(agents, seed=2) as sim:
        address = sim.serve()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{address}/metrics/agents/nobody", timeout=5)
        assert missing.value.code == 404
        sim.start(speed=1.0, tick=0.1)
        prom = prometheus_factory(
            scrape_targets=sim.scrape_targets(), scrape_interval=timedelta(seconds=1)
        )
        prom.wait_for_targets(timeout=30)
        import httpx

        deadline = time.monotonic() + 30
        found: dict[str, dict[str, str]] = {}
        while len(found) < 2 and time.monotonic() < deadline:
            answer = httpx.get(
                f"{prom.url}/api/v1/query", params={"query": "agent_executions_total > 0"}
            ).json()
            found = {r["metric"]["agent"]: r["metric"] for r in answer["data"]["result"]}
            time.sleep(0.2)
    assert found["alpha"]["namespace"] == "agents"
    assert found["beta"]["namespace"] == "research"
    assert found["beta"]["model"] == "gpt-4o-mini"
    assert not any("exported_agent" in labels for labels in found.values())


@pytest.mark.prometheus
async def test_history_backfill_shows_the_outage_to_the_catalog(prometheus_factory) -> None:  # type: ignore[no-untyped-def]
    start = 1_700_000_000 - 1_700_000_000 % 60
    agents = [spec(f"bot-{i}", rate=2.0) for i in range(3)]
    sim = FleetSimulator(agents, seed=9, fleet_effects=[Outage(start=600, end=720)])
    history = sim.history(start, start + 900, 15, names={"agent_executions_total"})
    assert {s.name for s in history} == {"agent_executions_total"}
    prom = prometheus_factory(backfill=openmetrics_text(history))
    key = SeriesKey("error_rate", None, timedelta(minutes=2))
    ids = [AgentId(NS, a.name) for a in agents]
    async with PrometheusBackend(BackendConfig(url=prom.url)) as backend:
        during, _ = await fetch_samples(
            backend, {key: ids}, datetime.fromtimestamp(start + 720, UTC)
        )
        before, _ = await fetch_samples(
            backend, {key: ids}, datetime.fromtimestamp(start + 540, UTC)
        )
    for agent in ids:
        assert during[agent][key] == pytest.approx(1.0)
        rate = before[agent][key]
        assert rate is not None
        assert rate < 0.1
