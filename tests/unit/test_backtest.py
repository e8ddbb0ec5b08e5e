"""The backtest without a server: time parsing, the fetch plan, spend reconstruction, the
replay over a hand-made history, the JSON document and its schema, the command's errors."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from array import array
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agentmedic.api.types import AgentPolicy
from agentmedic.api.validation import validate_policy
from agentmedic.backtest.history import (
    BacktestDataError,
    Grid,
    History,
    HistoryFeed,
    ReplayAbortedError,
    _accumulate_into,
    discover_agents,
    fetch_history,
    plan,
)
from agentmedic.backtest.plot import panels
from agentmedic.backtest.report import json_schema, to_json, totals
from agentmedic.backtest.runner import (
    BacktestOptions,
    effective_spec,
    replay_history,
    run_backtest,
)
from agentmedic.backtest.scenario import Phase, Scenario, ScriptedAgent, splice
from agentmedic.backtest.timeparse import parse_time
from agentmedic.cli.main import main
from agentmedic.engine.requirements import spend_key
from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    MetricsUnavailable,
    QueryResult,
    RangeResult,
    RangeSeries,
    Sample,
    UnavailableReason,
)

NOW = datetime(2024, 3, 5, 12, 30, tzinfo=UTC)
NS = "agents"


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("now-7d", NOW - timedelta(days=7)),
        ("now - 1h30m", NOW - timedelta(hours=1, minutes=30)),
        ("now+15m", NOW + timedelta(minutes=15)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T06:00:00Z", datetime(2024, 3, 1, 6, tzinfo=UTC)),
        ("2024-03-01T08:00:00+02:00", datetime(2024, 3, 1, 6, tzinfo=UTC)),
        ("2024-03-01 06:00", datetime(2024, 3, 1, 6, tzinfo=UTC)),  # no offset: UTC
        ("1709272800", datetime(2024, 3, 1, 6, tzinfo=UTC)),
    ],
)
def test_times_parse_in_every_accepted_form(text: str, expected: datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("yesterday", "now-7d"),
        ("now-7", "not a duration"),
        ("2024-13-01", "not a valid date"),
        ("2024-03-01T25:00", "use one of"),
    ],
)
def test_unparseable_times_name_the_accepted_forms(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        parse_time(text, NOW)


# --------------------------------------------------------------------------- grid and plan


def test_grid_includes_both_ends_and_chunks_within_the_point_limit() -> None:
    grid = Grid(NOW, NOW + timedelta(hours=6), timedelta(minutes=1))
    assert grid.size == 361
    assert grid.last == NOW + timedelta(hours=6)
    assert grid.chunks(100) == [(0, 99), (100, 199), (200, 299), (300, 360)]
    assert grid.chunks(11_000) == [(0, 360)]


def test_a_grid_that_ends_before_it_starts_says_to_swap_the_bounds() -> None:
    with pytest.raises(ValueError, match="swap --from and --to"):
        Grid(NOW, NOW - timedelta(hours=1), timedelta(minutes=1))


def _policy(extra: str = "", rules: str | None = None) -> AgentPolicy:
    text = f"""
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {{name: p, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{team: a}}}}
  interval: 1m
  rules:
{
        rules
        or '''    - name: high-errors
      all: [{metric: error_rate, window: 5m, op: ">", value: 0.2, minSamples: 20}]
      for: 2m
      actions: [{scaleToZero: {}}, {notify: {channels: [pagerduty]}}]'''
    }
  guardrails: {{maxDisabledPercent: 50}}
  notifications:
    channels:
      - {{name: pagerduty, pagerduty: {{routingKeySecretRef: {{name: pd, key: key}}}}}}
{extra}"""
    policy, problems = validate_policy(yaml.safe_load(text))
    assert not problems, problems
    assert policy is not None
    return policy


DAILY_BUDGET = """  budget:
    period: day
    limitUSD: 10
    hard: {actions: [{scaleToZero: {}}]}
"""


def test_plan_fetches_fixed_series_once_and_rebuilds_calendar_spend_per_period() -> None:
    spec = _policy(DAILY_BUDGET).spec
    grid = Grid(
        datetime(2024, 3, 4, 22, tzinfo=UTC),
        datetime(2024, 3, 6, 1, tzinfo=UTC),
        timedelta(hours=1),
    )
    p = plan(spec, grid)
    assert p.calendar_spend
    assert [str(k) for k in p.range_keys] == [
        "cost_usd[1h]",
        "error_rate[5m]",
        "executions[5m]",
    ]
    assert p.increment_key == SeriesKey("cost_usd", None, timedelta(hours=1), "agent")
    # 22:00, 23:00 on the 4th; the 5th from 00:00; the 6th from 00:00.
    assert [grid.at(i).isoformat() for i in p.period_starts] == [
        "2024-03-04T22:00:00+00:00",
        "2024-03-05T00:00:00+00:00",
        "2024-03-06T00:00:00+00:00",
    ]
    assert [grid.at(i).hour for i in p.period_ends] == [23, 23, 1]


def test_a_rolling_budget_window_is_one_fixed_series() -> None:
    spec = _policy(DAILY_BUDGET.replace("period: day", "period: 24h")).spec
    p = plan(spec, Grid(NOW, NOW + timedelta(hours=3), timedelta(minutes=1)))
    assert not p.calendar_spend
    assert p.increment_key is None
    assert SeriesKey("cost_usd", None, timedelta(hours=24), "agent") in p.range_keys


def test_spend_is_the_exact_value_at_each_period_start_plus_later_increases() -> None:
    a, b = AgentId(NS, "a"), AgentId(NS, "b")
    nan = math.nan
    increments = {
        a: array("d", [9.0, 1.0, nan, 2.0, 5.0, 1.0]),
        b: array("d", [nan, nan, nan, 3.0, nan, nan]),
    }
    spend = {a: array("d", [nan]) * 6, b: array("d", [nan]) * 6}
    bases = {0: {a: 10.0, b: None}, 4: {a: 0.5, b: None}}
    running = {a: nan, b: nan}
    _accumulate_into(spend, increments, bases, running, 0, 3)  # in two runs, as chunks land
    _accumulate_into(spend, increments, bases, running, 3, 6)
    assert list(spend[a]) == [10.0, 11.0, 11.0, 13.0, 0.5, 1.5]
    # No data stays no data (never 0) until the first value; a new period starts over.
    assert [None if v != v else v for v in spend[b]] == [None, None, None, 3.0, None, None]


# --------------------------------------------------------------------------- discovery


class CannedBackend:
    """A MetricsBackend answering range queries from a function of the query text."""

    def __init__(self, answer: Callable[[str], Sequence[RangeSeries]]) -> None:
        self.answer = answer
        self.queries: list[str] = []

    async def query(self, promql: str, at: datetime) -> QueryResult:
        raise AssertionError("no instant queries expected")

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        self.queries.append(promql)
        return RangeResult(series=tuple(self.answer(promql)))

    async def aclose(self) -> None:
        pass


def _series(labels: Mapping[str, str], *times: float) -> RangeSeries:
    return RangeSeries(labels, tuple((t, 1.0) for t in times))


async def test_agents_are_discovered_from_history_with_their_first_model() -> None:
    t0 = NOW.timestamp()

    def answer(query: str) -> list[RangeSeries]:
        if query.startswith("group by (agent, namespace, model) (last_over_time(agent_info"):
            return [
                _series({"agent": "a", "namespace": NS, "model": "gpt-4o-mini"}, t0 + 600),
                _series({"agent": "a", "namespace": NS, "model": "gpt-4o"}, t0, t0 + 60),
            ]
        return [
            _series({"agent": "b", "namespace": NS, "model": "gpt-4.1-nano"}, t0 + 120),
            _series({"agent": "c", "namespace": "elsewhere", "model": "gpt-4o"}, t0),
        ]

    backend = CannedBackend(answer)
    grid = Grid(NOW, NOW + timedelta(hours=1), timedelta(minutes=1))
    agents, models, queries = await discover_agents(
        backend, grid, agent_label="agent", namespace=NS, namespace_label="namespace"
    )
    assert agents == [AgentId(NS, "a"), AgentId(NS, "b")]
    assert models == {AgentId(NS, "a"): "gpt-4o", AgentId(NS, "b"): "gpt-4.1-nano"}
    assert queries == 2
    assert all('namespace="agents"' in q for q in backend.queries)


async def test_named_agents_are_replayed_even_without_history() -> None:
    backend = CannedBackend(lambda q: [])
    grid = Grid(NOW, NOW + timedelta(hours=1), timedelta(minutes=1))
    agents, models, _ = await discover_agents(
        backend, grid, agent_label="agent", namespace=NS, namespace_label=None, names=["x", "y"]
    )
    assert agents == [AgentId(NS, "x"), AgentId(NS, "y")]
    assert models == {AgentId(NS, "x"): None, AgentId(NS, "y"): None}
    assert all('agent=~"x|y"' in q and "namespace" not in q for q in backend.queries)


# --------------------------------------------------------------------------- replay


def _history(
    policy: AgentPolicy, values: Mapping[str, Callable[[int], tuple[float, float]]], steps: int
) -> History:
    """A history of ``error_rate``/``executions`` over 5m: ``values[agent](i)`` gives both."""
    spec, _ = effective_spec(policy, respect_dry_run=False)
    grid = Grid(NOW, NOW + (steps - 1) * timedelta(minutes=1), timedelta(minutes=1))
    err = SeriesKey("error_rate", None, timedelta(minutes=5), "agent")
    n = SeriesKey("executions", None, timedelta(minutes=5), "agent")
    agents = [AgentId(NS, name) for name in values]
    columns = {
        err: {a: array("d", [values[a.name](i)[0] for i in range(steps)]) for a in agents},
        n: {a: array("d", [values[a.name](i)[1] for i in range(steps)]) for a in agents},
    }
    return History(spec, grid, agents, dict.fromkeys(agents, "gpt-4o"), columns)


def healthy(i: int) -> tuple[float, float]:
    return (0.01, 100.0)


def erring_from(start: int) -> Callable[[int], tuple[float, float]]:
    return lambda i: (0.5 if i >= start else 0.01, 100.0)


def test_the_replay_acts_once_the_breach_held_for_its_for_duration() -> None:
    policy = _policy()
    history = _history(
        policy,
        {"a": erring_from(10), "b": healthy, "c": healthy, "d": healthy},
        steps=30,
    )
    result = replay_history(policy, history)
    [decision] = result.decisions
    assert (decision.agent.name, decision.kind.value, decision.at) == (
        "a",
        "scaleToZero",
        NOW + timedelta(minutes=12),  # pending at +10m, for 2m
    )
    assert decision.applies
    [page] = result.notifications
    assert (page.state, page.channels, page.at) == ("firing", ("pagerduty",), decision.at)


def test_a_dry_run_policy_is_replayed_as_enabled_unless_asked_to_respect_it() -> None:
    doc = _policy().model_dump(by_alias=True, mode="json")
    doc["spec"]["guardrails"]["dryRun"] = True
    dry, _ = validate_policy(doc)
    assert dry is not None
    values = {"a": erring_from(5), "b": healthy, "c": healthy}

    enabled = replay_history(dry, _history(dry, values, 20), dry_run_ignored=True)
    assert [d.applies for d in enabled.decisions] == [True]
    assert to_json(enabled)["policy"]["dryRunIgnored"] is True

    spec, ignored = effective_spec(dry, respect_dry_run=True)
    assert not ignored
    history = _history(dry, values, 20)
    history.spec = spec
    as_dry_run = replay_history(dry, history)
    assert [totals(as_dry_run).applied, as_dry_run.decisions[0].dry_run] == [0, True]


def test_a_fleet_wide_breach_is_one_systemic_episode_listing_its_agents() -> None:
    policy = _policy()
    values = {name: erring_from(10) for name in ("a", "b", "c", "d")}
    values["e"] = healthy
    result = replay_history(policy, _history(policy, values, 40))
    assert not [d for d in result.decisions if d.applies]
    [episode] = result.systemic
    assert (episode.rule, episode.start, episode.end) == (
        "high-errors",
        NOW + timedelta(minutes=10),
        None,
    )
    assert [a.name for a in episode.agents] == ["a", "b", "c", "d"]
    t = totals(result)
    assert (t.systemic_episodes, t.pages_held_back, t.pages) == (1, 4, 1)


# --------------------------------------------------------------------------- JSON and plot


def _validate(document: Any) -> None:
    jsonschema.Draft202012Validator(
        json_schema(), format_checker=jsonschema.FormatChecker()
    ).validate(document)


def test_the_published_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_json_document_validates_and_keeps_every_guardrail_count() -> None:
    policy = _policy()
    values = {"a": erring_from(5), "b": erring_from(6), "c": healthy, "d": healthy, "e": healthy}
    result = replay_history(policy, _history(policy, values, 30))
    document = json.loads(json.dumps(to_json(result)))
    _validate(document)
    assert document["totals"]["suppressed"]["byReason"] == {
        "Cooldown": 0,
        "MaxDisabled": 0,
        "QuietHours": 0,
        "RateLimited": 0,
        "SystemicOutage": 0,
    }
    assert document["totals"]["disabledAgents"] == ["agents/a", "agents/b"]
    [first, _second] = document["decisions"]
    assert (first["time"], first["agent"]) == ("2024-03-05T12:37:00Z", "agents/a")
    condition = first["evidence"]["conditions"][0]
    assert (condition["metric"], condition["window"], condition["observed"]) == (
        "error_rate",
        "5m",
        0.5,
    )


def test_a_document_missing_a_required_total_is_rejected_by_the_schema() -> None:
    policy = _policy()
    result = replay_history(policy, _history(policy, {"a": healthy}, 5))
    document = json.loads(json.dumps(to_json(result)))
    del document["totals"]["pagesHeldBack"]
    with pytest.raises(jsonschema.ValidationError, match="pagesHeldBack"):
        _validate(document)


def test_plot_panels_show_the_agents_acted_on_or_else_the_closest_to_the_threshold() -> None:
    policy = _policy()
    acted = replay_history(
        policy, _history(policy, {"a": erring_from(5), "b": healthy, "c": healthy}, 20)
    )
    [panel] = panels(acted)
    assert list(panel.lines) == [AgentId(NS, "a")]
    assert [d.kind.value for d in panel.decisions] == ["scaleToZero"]
    assert panel.thresholds == [(0.2, "threshold 20%")]

    near = lambda i: (0.15, 100.0)  # noqa: E731
    calm = replay_history(policy, _history(policy, {"a": healthy, "b": near}, 20))
    [panel] = panels(calm)
    assert next(iter(panel.lines)) == AgentId(NS, "b")
    assert "never fired" in panel.note


# --------------------------------------------------------------------------- scenario


def test_scenario_counters_follow_each_phase_and_start_at_zero() -> None:
    start = datetime(2024, 3, 5, tzinfo=UTC)
    agent = ScriptedAgent(
        "a",
        (
            Phase(executions_per_minute=10, error_ratio=0.1),
            Phase(at=timedelta(minutes=2), executions_per_minute=10, error_ratio=0.5),
        ),
    )
    scenario = Scenario(start, timedelta(minutes=4), (agent,), buckets=(1.0, 5.0))
    series = {
        (name, labels.get("status", labels.get("le", ""))): points
        for name, labels, points in scenario.series()
    }
    errors = [v for _, v in series[("agent_executions_total", "error")]]
    assert errors == [0, 1, 2, 7, 12]
    assert series[("agent_execution_duration_seconds_bucket", "+Inf")][-1][1] == 40 * 1.0
    assert series[("agent_execution_duration_seconds_count", "")][-1][1] == 40


def test_an_outage_spliced_into_a_story_keeps_the_story_before_and_after() -> None:
    h = timedelta(hours=1)
    phases = splice((Phase(), Phase(at=2 * h, error_ratio=0.4)), 1 * h, 3 * h, error_ratio=0.9)
    assert [(p.at, p.error_ratio) for p in phases] == [
        (timedelta(0), 0.02),
        (h, 0.9),
        (2 * h, 0.9),
        (3 * h, 0.4),
    ]


# --------------------------------------------------------------------------- the command


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, policy: str | None = None
) -> tuple[int, str]:
    path = tmp_path / "policy.yaml"
    path.write_text(
        policy
        if policy is not None
        else yaml.safe_dump(_policy().model_dump(by_alias=True, mode="json", exclude_none=True))
    )
    code = main(["backtest", str(path), *args])
    return code, capsys.readouterr().err


BASE = ("--prometheus", "http://127.0.0.1:9", "--from", "now-1h")


def test_an_invalid_policy_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = yaml.safe_dump(
        {
            "apiVersion": "agentmedic.io/v1alpha1",
            "kind": "AgentPolicy",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {
                "selector": {},
                "rules": [{"name": "r", "all": [{"metric": "error_rate", "op": ">>", "value": 1}]}],
            },
        }
    )
    code, err = _run(tmp_path, capsys, *BASE, policy=broken)
    assert code == 2
    assert "spec.rules[0].all[0].op" in err
    assert "agentmedic validate" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "now-1h"), "--prometheus URL is required"),
        (("--prometheus", "http://127.0.0.1:9"), "--from is required"),
        ((*BASE[:2], "--from", "last week"), "'last week' is not a time"),
        ((*BASE, "--to", "now-2h"), "must be after --from"),
        ((*BASE, "--step", "1"), "'1' is not a duration"),
        ((*BASE, "--plot", "out.pdf"), "ending in .png or .html"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.delenv("AGENTMEDIC_PROMETHEUS_URL", raising=False)
    code, err = _run(tmp_path, capsys, *args)
    assert code == 2
    assert message in err


def test_print_schema_prints_the_published_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--print-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_an_unreachable_backend_exits_1_with_the_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(tmp_path, capsys, *BASE, "--query-timeout-seconds", "2")
    assert code == 1
    assert "discovering agents failed" in err
    assert "127.0.0.1:9" in err


def test_spend_key_changes_every_step_of_a_calendar_period() -> None:
    # Why calendar spend cannot be one range query: the window is the elapsed period.
    spec = _policy(DAILY_BUDGET).spec
    first = spend_key(spec, NOW)
    later = spend_key(spec, NOW + timedelta(minutes=1))
    assert first is not None
    assert later is not None
    assert first.window + timedelta(minutes=1) == later.window


# --------------------------------------------------------------------------- pipelined fetch


class GatedBackend:
    """Answers each range query only once its chunk (by start time) is released; every
    agent has the value 1.0 at every step."""

    def __init__(self, agents: Sequence[str]) -> None:
        self.agents = agents
        self.gates: dict[datetime, asyncio.Event] = {}
        self.fail: str | None = None

    def gate(self, start: datetime) -> asyncio.Event:
        return self.gates.setdefault(start, asyncio.Event())

    async def query(self, promql: str, at: datetime) -> QueryResult:
        raise AssertionError("no instant queries expected")

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        await self.gate(start).wait()
        if self.fail is not None and self.fail in promql:
            raise MetricsUnavailable(UnavailableReason.SERVER_ERROR, "HTTP 503: overloaded")
        n = round((end - start) / step) + 1
        times = [start.timestamp() + k * step.total_seconds() for k in range(n)]
        return RangeResult(
            series=tuple(
                RangeSeries({"agent": a, "namespace": NS}, tuple((t, 1.0) for t in times))
                for a in self.agents
            )
        )

    async def aclose(self) -> None:
        pass


async def test_a_range_split_in_chunks_is_filled_whatever_order_the_answers_arrive_in() -> None:
    spec = _policy().spec  # two series: error_rate[5m] and executions[5m]
    grid = Grid(NOW, NOW + timedelta(minutes=4), timedelta(minutes=1))  # 5 steps
    backend = GatedBackend(["a", "b"])
    answered: list[str] = []
    second_chunk_in = asyncio.Event()

    def on_query(done: int, total: int, what: str) -> None:
        answered.append(what)
        if len(answered) == 2:
            second_chunk_in.set()

    agents = [AgentId(NS, "a"), AgentId(NS, "b")]
    running = asyncio.ensure_future(
        fetch_history(
            backend, spec, grid, agents, max_points=2, max_concurrency=4, on_query=on_query
        )
    )
    # Four queries are in flight (the first two chunks); the second chunk answers first.
    backend.gate(grid.at(2)).set()
    await second_chunk_in.wait()
    assert all("[3-4/5]" in what for what in answered)
    backend.gate(grid.at(0)).set()
    backend.gate(grid.at(4)).set()
    history = await running

    assert history.queries == 6  # two series, three chunks each
    for key in history.columns:
        for agent in agents:
            assert history.series(key, agent) == [1.0] * 5


async def test_a_backend_failure_stops_the_backtest_and_names_the_series() -> None:
    policy = _policy()
    backend = GatedBackend(["a", "b"])
    backend.fail = "status!="  # error_rate's query
    for day in range(3):
        backend.gate(NOW + timedelta(days=day)).set()

    async def discovery(promql: str, *args: Any) -> RangeResult:
        return RangeResult(
            series=tuple(
                RangeSeries(
                    {"agent": a, "namespace": NS, "model": "gpt-4o"}, ((NOW.timestamp(), 1.0),)
                )
                for a in ("a", "b")
            )
        )

    original = backend.query_range

    async def answer(promql: str, start: datetime, end: datetime, step: timedelta) -> RangeResult:
        if promql.startswith("group by"):
            return await discovery(promql)
        return await original(promql, start, end, step)

    backend.query_range = answer  # type: ignore[method-assign]
    options = BacktestOptions(start=NOW, end=NOW + timedelta(days=2), max_points=1440)
    with pytest.raises(BacktestDataError, match=r"error_rate\[5m\].*HTTP 503: overloaded"):
        await run_backtest(policy, backend, options)


class RecordingFeed(HistoryFeed):
    def __init__(self) -> None:
        super().__init__()
        self.advances: list[int] = []

    def advance(self, history: History, upto: int) -> None:
        self.advances.append(upto)
        super().advance(history, upto)


async def test_the_feed_gets_each_run_of_leading_moments_once_it_is_complete() -> None:
    spec = _policy().spec
    grid = Grid(NOW, NOW + timedelta(minutes=4), timedelta(minutes=1))  # chunks 0-1, 2-3, 4
    backend = GatedBackend(["a", "b"])
    feed = RecordingFeed()
    answered = asyncio.Event()
    count = 0

    def on_query(done: int, total: int, what: str) -> None:
        nonlocal count
        count += 1
        if count % 2 == 0:  # both series of a chunk are in
            answered.set()

    agents = [AgentId(NS, "a"), AgentId(NS, "b")]
    running = asyncio.ensure_future(
        fetch_history(backend, spec, grid, agents, max_points=2, on_query=on_query, feed=feed)
    )
    # Four queries go out at once: the first two chunks. The second answers first.
    backend.gate(grid.at(2)).set()
    await answered.wait()
    answered.clear()
    assert feed.advances == []  # the second chunk is in, but not the first
    backend.gate(grid.at(0)).set()
    await answered.wait()
    answered.clear()
    assert feed.advances == [2, 4]
    backend.gate(grid.at(4)).set()
    history = await running
    assert feed.advances == [2, 4, 5]
    expected = history.sampler()
    moments = list(feed.moments(grid))
    assert [t for t, _ in moments] == grid.times()
    assert [samples for _, samples in moments] == [expected(i) for i in range(grid.size)]


def test_a_replay_waiting_on_the_feed_stops_when_the_fetch_is_abandoned() -> None:
    feed = HistoryFeed()
    grid = Grid(NOW, NOW + timedelta(minutes=4), timedelta(minutes=1))
    history = _history(_policy(), {"a": healthy}, 5)
    feed.advance(history, 2)
    seen: list[datetime] = []
    outcome: list[BaseException] = []

    def replay() -> None:
        try:
            for t, _ in feed.moments(grid):
                seen.append(t)
        except ReplayAbortedError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=replay)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive()  # waiting for the third moment
    feed.abort()
    thread.join(5)
    assert not thread.is_alive()
    assert seen == grid.times()[:2]
    assert len(outcome) == 1


class SpendBackend:
    """Spend of agent ``a``: $0.5 a minute by range query, $100 at each period start."""

    def __init__(self) -> None:
        self.instant: list[datetime] = []

    async def query(self, promql: str, at: datetime) -> QueryResult:
        self.instant.append(at)
        sample = Sample({"agent": "a", "namespace": NS}, 100.0)
        return QueryResult(result_type="vector", samples=(sample,))

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        n = round((end - start) / step) + 1
        value = 0.5 if promql.startswith("sum by (agent, namespace) (increase(agent_cost") else 0.0
        points = tuple((start.timestamp() + k * step.total_seconds(), value) for k in range(n))
        return RangeResult(series=(RangeSeries({"agent": "a", "namespace": NS}, points),))

    async def aclose(self) -> None:
        pass


async def test_calendar_spend_accumulates_chunk_by_chunk_across_a_period_boundary() -> None:
    spec = _policy(DAILY_BUDGET).spec
    start = datetime(2024, 3, 4, 23, 57, tzinfo=UTC)
    grid = Grid(start, start + timedelta(minutes=6), timedelta(minutes=1))  # 23:57 to 00:03
    feed = RecordingFeed()
    backend = SpendBackend()
    a = AgentId(NS, "a")
    history = await fetch_history(backend, spec, grid, [a], max_points=2, feed=feed)
    assert history.spend is not None
    # 23:57 is the first moment of the range in the 4th, 00:00 the first of the 5th.
    assert list(history.spend[a]) == [100.0, 100.5, 101.0, 100.0, 100.5, 101.0, 101.5]
    assert feed.advances == [2, 4, 6, 7]
    spends = [samples[a][spend_key(spec, t)] for t, samples in feed.moments(grid)]
    assert spends == list(history.spend[a])


def test_a_history_and_a_result_repr_as_summaries_not_as_their_data() -> None:
    policy = _policy()
    history = _history(policy, {f"agent-{k}": healthy for k in range(50)}, 2000)
    result = replay_history(policy, history)
    for thing in (history, result):
        text = repr(thing)
        assert len(text) < 600, text
        assert "50 agents" in text
        assert "2000 moments" in text


def test_plot_panels_draw_the_agents_acted_on_before_those_only_in_an_outage() -> None:
    policy = _policy()
    outage_for_all = {f"a{i}": erring_from(20) for i in range(9)}
    outage_for_all["z"] = lambda i: (0.5 if 5 <= i < 12 or i >= 20 else 0.01, 100.0)
    result = replay_history(policy, _history(policy, outage_for_all, 30))
    assert [d.agent.name for d in result.decisions] == ["z"]
    assert result.systemic  # the other nine (and z) breach together from +20m
    [panel] = panels(result)
    assert next(iter(panel.lines)).name == "z"
    assert (len(panel.lines), panel.more) == (8, 2)


async def test_a_policy_that_needs_no_series_ends_with_no_history_not_a_wait() -> None:
    """No rules, no budget: no range query at all. The replay thread must not wait for
    moments that no query will complete."""
    policy = _policy(rules="    []")
    assert policy.spec.rules == []

    async def answer(promql: str, start: datetime, end: datetime, step: timedelta) -> RangeResult:
        assert promql.startswith("group by"), promql  # discovery only
        series = RangeSeries(
            {"agent": "a", "namespace": NS, "model": "m"}, ((NOW.timestamp(), 1.0),)
        )
        return RangeResult(series=(series,))

    backend = CannedBackend(lambda q: [])
    backend.query_range = answer  # type: ignore[method-assign]
    options = BacktestOptions(start=NOW, end=NOW + timedelta(hours=1))
    with pytest.raises(BacktestDataError, match="holds no data"):
        await asyncio.wait_for(run_backtest(policy, backend, options), timeout=30)


def test_plot_titles_and_threshold_labels_read_in_the_metrics_unit() -> None:
    policy = _policy()
    acted = replay_history(
        policy, _history(policy, {"a": erring_from(5), "b": healthy, "c": healthy}, 20)
    )
    [panel] = panels(acted)
    assert panel.title.endswith("] > 20%")
    assert panel.thresholds == [(0.2, "threshold 20%")]
