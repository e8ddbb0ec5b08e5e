"""`agentmedic backtest` against a real Prometheus holding six hours of a known scenario.

The history (:func:`agentmedic.backtest.scenario.standard_scenario`, backfilled with
promtool): three healthy agents; ``erring``'s error ratio jumps to 40% at +2h; ``slow``'s
p95 latency is ~14.5 s from +3h to +4h; ``spender`` burns $1.01 a minute; everyone fails
90% of executions from +5h to +5h20m. The backtest's decisions must equal those of the
engine run live over the same data: ``evaluate`` at every step on instant queries.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agentmedic.api.types import AgentPolicy
from agentmedic.api.validation import validate_policy
from agentmedic.backtest.history import Grid, fetch_history
from agentmedic.backtest.plot import figure_size
from agentmedic.backtest.plotdata import panels
from agentmedic.backtest.report import BacktestResult, json_schema, totals
from agentmedic.backtest.runner import BacktestOptions, policy_input, run_backtest
from agentmedic.backtest.scenario import standard_scenario
from agentmedic.cli.main import main
from agentmedic.engine.evaluate import evaluate
from agentmedic.engine.outcome import Decision, Notification
from agentmedic.engine.replay import apply_decisions
from agentmedic.engine.requirements import requirements
from agentmedic.engine.series import AgentId, Samples
from agentmedic.engine.state import PolicyState
from agentmedic.metrics import BackendConfig, PrometheusBackend, fetch_samples
from agentmedic_sandbox.prometheus import PrometheusServer, Series, openmetrics_text

pytestmark = pytest.mark.prometheus

START = datetime(2024, 3, 5, 6, 0, tzinfo=UTC)
END = START + timedelta(hours=6)
NS = "agents"

POLICY = textwrap.dedent(
    """\
    apiVersion: agentmedic.io/v1alpha1
    kind: AgentPolicy
    metadata: {name: fleet-health, namespace: agents}
    spec:
      selector: {matchLabels: {team: support}}
      interval: 1m
      rules:
        - name: high-errors
          all: [{metric: error_rate, window: 5m, op: ">", value: 0.2, minSamples: 20}]
          for: 5m
          severity: critical
          actions: [{scaleToZero: {}}, {notify: {channels: [pagerduty]}}]
        - name: latency-spike
          all: [{metric: latency_p95_ms, window: 10m, op: ">", value: 8000, minSamples: 30}]
          for: 5m
          actions:
            - promptOptimization: {fromCronJob: prompt-optimizer}
            - notify: {channels: [oncall-slack]}
      budget:
        period: day
        limitUSD: 100
        scope: agent
        soft: {atPercent: 80, actions: [{switchModel: {}}, {notify: {channels: [finance]}}]}
        hard: {actions: [{scaleToZero: {}}, {notify: {channels: [finance]}}]}
      model:
        env: {container: agent, name: OPENAI_MODEL}
        tiers: [gpt-4o, gpt-4o-mini, gpt-4.1-nano]
      guardrails:
        cooldown: 15m
        maxDisabledPercent: 50
        maxActionsPerHour: 2
      notifications:
        channels:
          - {name: pagerduty, pagerduty: {routingKeySecretRef: {name: pd, key: key}}}
          - {name: oncall-slack, slack: {webhookSecretRef: {name: slack, key: url}}}
          - {name: finance, webhook: {urlSecretRef: {name: fin, key: url}}}
    """
)


def _policy(text: str = POLICY) -> AgentPolicy:
    policy, problems = validate_policy(yaml.safe_load(text))
    assert not problems, problems
    assert policy is not None
    return policy


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


@pytest.fixture(scope="module")
def prometheus(prometheus_module_factory: Any) -> PrometheusServer:
    scenario = standard_scenario(START, NS)
    server: PrometheusServer = prometheus_module_factory(
        backfill=openmetrics_text(Series(*s) for s in scenario.series())
    )
    return server


def _backtest(url: str, policy: AgentPolicy, **options: Any) -> BacktestResult:
    async def go() -> BacktestResult:
        async with PrometheusBackend(BackendConfig(url=url)) as backend:
            return await run_backtest(
                policy,
                backend,
                BacktestOptions(start=START, end=END, **options),
                backend_url=url,
            )

    return asyncio.run(go())


@pytest.fixture(scope="module")
def result(prometheus: PrometheusServer) -> BacktestResult:
    return _backtest(prometheus.url, _policy())


def _live(
    url: str, policy: AgentPolicy, agents: list[AgentId], models: dict[AgentId, str | None]
) -> tuple[list[Decision], list[Notification]]:
    """The engine as the operator runs it: at every step, an instant query per series the
    engine asks for (fetched for all steps up front, a few at a time, to keep the test
    quick), then evaluate(), each step's decisions carried out before the next."""
    times = Grid(START, END, timedelta(minutes=1)).times()

    async def fetch_all() -> list[Samples]:
        limit = asyncio.Semaphore(6)
        async with PrometheusBackend(BackendConfig(url=url)) as backend:

            async def one(now: datetime) -> Samples:
                needs = {key: agents for key in requirements(policy.spec, now)}
                async with limit:
                    samples, stats = await fetch_samples(backend, needs, now)
                assert not stats.errors, stats.errors
                return samples

            return await asyncio.gather(*(one(now) for now in times))

    the_input = policy_input(policy, policy.spec, agents, models)
    state: PolicyState | None = None
    decisions: list[Decision] = []
    notifications: list[Notification] = []
    for now, samples in zip(times, asyncio.run(fetch_all()), strict=True):
        outcome = evaluate(the_input, samples, state, now)
        state = outcome.state
        the_input = apply_decisions(the_input, outcome.decisions)
        decisions += outcome.decisions
        notifications += outcome.notifications
    return decisions, notifications


def test_backtest_decides_exactly_what_the_live_engine_decides_on_the_same_data(
    prometheus: PrometheusServer, result: BacktestResult
) -> None:
    h = result.history
    decisions, notifications = _live(prometheus.url, _policy(), h.agents, h.models)

    assert decisions, "the scenario must make the live engine act"
    # Whole dataclasses: time, agent, rule, action, outcome, episode and every evidence value.
    assert result.decisions == decisions
    assert result.notifications == notifications


def test_backtest_finds_every_story_of_the_scenario_at_its_time(result: BacktestResult) -> None:
    by = {(d.agent.name, d.rule, d.kind.value): d for d in result.decisions}
    # spender: past $80 (80% of $100) at +80m, past $100 at +100m.
    soft = by[("spender", "budget.soft", "switchModel")]
    assert (soft.at, soft.from_model, soft.to_model) == (at(80), "gpt-4o", "gpt-4o-mini")
    assert by[("spender", "budget.hard", "scaleToZero")].at == at(100)
    # erring: breaching from +2h01 (5m window), firing 5m later, but two changes were made
    # in the last hour (maxActionsPerHour 2): suppressed, then done once the hour has passed.
    first, second = [d for d in result.decisions if d.agent.name == "erring"]
    assert (first.at, first.suppressed_by) == (at(128), "RateLimited")
    assert (second.at, second.suppressed_by) == (at(140), None)
    # slow: one prompt-optimization Job per episode.
    jobs = [d for d in result.decisions if d.kind.value == "promptOptimization"]
    assert [(d.agent.name, d.at) for d in jobs] == [("slow", at(186))]
    # The provider outage (+5h to +5h20m) is systemic: nobody is disabled for it.
    assert not [d for d in result.decisions if at(300) <= d.at <= at(330)]
    [episode] = result.systemic
    assert episode.rule == "high-errors"
    assert {a.name for a in episode.agents} == {"healthy-1", "healthy-2", "healthy-3", "slow"}


def test_totals_count_what_the_policy_would_have_done(result: BacktestResult) -> None:
    t = totals(result)
    assert [a.name for a in t.agents_disabled] == ["erring", "spender"]
    assert (t.downgrades, t.jobs, t.restores) == (1, 1, 0)
    assert t.suppressed == 1
    assert t.suppressed_by["RateLimited"] == 1
    # Pages: erring's high-errors episode and the fleet's systemic page (pagerduty channel).
    assert t.pages == 2
    assert (t.systemic_episodes, t.pages_held_back) == (1, 4)
    # Five episodes announced, and spender's two budget stages, still firing 4 h later (the
    # channels' default renotifyAfter), announced again to finance.
    firing = [n for n in result.notifications if n.state == "firing"]
    assert len({n.episode for n in firing}) == 5
    reminders = [n for n in firing if n.at - min(m.at for m in firing if m.episode == n.episode)]
    assert [(n.rule, n.channels) for n in reminders] == [
        ("budget.soft", ("finance",)),
        ("budget.hard", ("finance",)),
    ]
    assert t.notifications_firing == 7


def test_reconstructed_budget_spend_matches_the_exact_query(result: BacktestResult) -> None:
    [check] = result.history.spend_check
    assert check.at == END
    assert check.exact_usd > 0
    assert check.relative_error < 1e-9


def test_chunked_range_queries_give_the_same_history_as_one_query_per_series(
    prometheus: PrometheusServer, result: BacktestResult
) -> None:
    policy = _policy()
    h = result.history

    async def go() -> Any:
        async with PrometheusBackend(BackendConfig(url=prometheus.url)) as backend:
            return await fetch_history(
                backend, policy.spec, h.grid, h.agents, h.models, max_points=100
            )

    chunked = asyncio.run(go())
    # 361 points in chunks of 100: four range queries per series instead of one.
    assert chunked.queries == h.queries + 3 * (len(h.columns) + 1)

    def plain(columns: Any) -> Any:  # NaN (no data) as None, so equal columns compare equal
        return {a: [None if v != v else v for v in c] for a, c in columns.items()}

    assert {k: plain(v) for k, v in chunked.columns.items()} == {
        k: plain(v) for k, v in h.columns.items()
    }
    assert plain(chunked.spend) == plain(h.spend)
    assert any(v is not None for c in plain(h.spend).values() for v in c)


def test_only_the_named_agents_are_replayed(prometheus: PrometheusServer) -> None:
    narrowed = _backtest(prometheus.url, _policy(), agents=["erring", "healthy-1"])
    assert [a.name for a in narrowed.history.agents] == ["erring", "healthy-1"]
    assert {d.agent.name for d in narrowed.decisions} == {"erring", "healthy-1"}
    # Two agents are too few for systemic detection (systemicMinAgents 3): in the outage
    # (breaching from +302m, for 5m) healthy-1 would be disabled, but erring already is and
    # maxDisabledPercent 50 of two agents allows one.
    [outage] = [d for d in narrowed.decisions if d.agent.name == "healthy-1"]
    assert (outage.at, outage.kind.value, outage.suppressed_by) == (
        at(307),
        "scaleToZero",
        "MaxDisabled",
    )
    assert not narrowed.systemic


# --------------------------------------------------------------------------- the command


def _cli(prometheus: PrometheusServer, tmp_path: Path, *extra: str, policy: str = POLICY) -> int:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return main(
        [
            "backtest",
            str(path),
            "--prometheus",
            prometheus.url,
            "--from",
            START.isoformat(),
            "--to",
            END.isoformat().replace("+00:00", "Z"),
            *extra,
        ]
    )


def test_json_output_validates_against_the_published_schema(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(prometheus, tmp_path, "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)

    jsonschema.Draft202012Validator(
        json_schema(), format_checker=jsonschema.FormatChecker()
    ).validate(document)
    assert document["schemaVersion"] == 1
    assert document["range"] == {
        "from": "2024-03-05T06:00:00Z",
        "to": "2024-03-05T12:00:00Z",
        "step": "1m",
        "steps": 361,
    }
    assert document["totals"]["agentsDisabled"] == 2
    first = document["decisions"][0]
    assert (first["time"], first["agent"], first["rule"], first["action"]) == (
        "2024-03-05T07:20:00Z",
        "agents/spender",
        "budget.soft",
        "switchModel",
    )
    assert first["evidence"]["conditions"][0]["observed"] > 80


def test_png_plot_is_a_valid_image_of_the_documented_size(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.image

    png = tmp_path / "backtest.png"
    assert _cli(prometheus, tmp_path, "--plot", str(png)) == 0

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    # Three panels (two rules, the budget): 12 by 1.4 + 3 * 3.6 inches at 100 dpi.
    assert figure_size(3) == (12.0, 12.2)
    assert (width, height) == (1200, 1220)
    assert pixels.std() > 0  # something was drawn
    assert "spender" in capsys.readouterr().out  # the table still goes to stdout


def test_the_plot_of_the_scenario_marks_what_the_engine_decided(result: BacktestResult) -> None:
    high_errors, latency, budget = panels(result)
    erring, spender = AgentId(NS, "erring"), AgentId(NS, "spender")
    # erring: held by the rate limit (hollow, with the reason), then disabled.
    assert [(m.label, m.at, m.hollow) for m in high_errors.markers if m.agent == erring] == [
        ("erring: scaleToZero ✕ RateLimited", at(128), True),
        ("erring: scaleToZero", at(140), False),
    ]
    assert high_errors.faded_from[erring] == 140
    # The outage: one fleet page, and the agents it held back from being disabled.
    held = {m.agent.name for m in high_errors.markers if m.outcome == "heldBack" and m.agent}
    assert held == {"healthy-1", "healthy-2", "healthy-3", "slow"}
    assert [m.at for m in high_errors.markers if m.kind == "fleetPage"] == [
        result.systemic[0].start
    ]
    # Derived firing spans start where the engine acted.
    [job] = [m for m in latency.markers if m.kind == "promptOptimization"]
    firing = [s for s in latency.spans if s.kind == "firing" and s.agent == job.agent]
    assert firing[0].start == job.at == at(186)
    # spender: faded from the model switch at $80; the axis stops well short of its
    # replayed $360 a day.
    assert budget.faded_from[spender] == 80
    assert budget.ylim[1] < 150
    assert any(c.agent == spender and c.above for c in budget.clips)


def test_html_plot_is_one_self_contained_page(prometheus: PrometheusServer, tmp_path: Path) -> None:
    page = tmp_path / "backtest.html"
    assert _cli(prometheus, tmp_path, "--format", "json", "--plot", str(page)) == 0

    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<svg" in text
    # Nothing to fetch: no external scripts, styles or images (SVG namespaces are names).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script" not in text
    assert "<link" not in text
    assert "budget.soft" in text


def test_a_range_without_history_fails_with_a_clear_error(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    args = ["--prometheus", prometheus.url, "--from", "2023-01-01", "--to", "2023-01-02"]
    code = main(["backtest", str(path), *args])
    err = capsys.readouterr().err
    assert code == 1
    assert "no agents in namespace 'agents'" in err
    assert "2023-01-01T00:00:00+00:00" in err
    assert "--from/--to" in err


TOOLS_POLICY = textwrap.dedent(
    """\
    apiVersion: agentmedic.io/v1alpha1
    kind: AgentPolicy
    metadata: {name: tools, namespace: agents}
    spec:
      selector: {matchLabels: {team: support}}
      rules:
        - name: tool-errors
          all: [{metric: tool_error_rate, window: 5m, op: ">", value: 0.5}]
          actions: [{scaleToZero: {}}]
    """
)


def test_agents_without_the_policys_metrics_fail_with_a_clear_error(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The scenario's agents make no tool calls: the agents exist, the metric does not.
    code = _cli(prometheus, tmp_path, policy=TOOLS_POLICY)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "holds no data for the policy's metrics (tool_error_rate[5m])" in err
    assert "6 agent(s) in namespace 'agents'" in err


def test_a_namespace_without_agents_is_named_in_the_error(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(prometheus, tmp_path, "--namespace", "elsewhere") == 1
    assert "no agents in namespace 'elsewhere'" in capsys.readouterr().err
