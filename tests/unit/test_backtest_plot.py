"""What the backtest plot draws, checked without pixels: markers naming their agents, hollow
suppressed and held-back markers with their reason, labels that never overlap, the
pending/firing/disabled and systemic spans, the faded history after a change, y-limits from
the thresholds rather than from counterfactual spend, clipped values."""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from agentmedic.api.types import AgentPolicy
from agentmedic.api.validation import validate_policy
from agentmedic.backtest.history import Grid, History
from agentmedic.backtest.plotdata import MAX_LABEL_ROWS, Panel, Span, panels
from agentmedic.backtest.report import BacktestResult
from agentmedic.backtest.runner import effective_spec, replay_history
from agentmedic.engine.requirements import requirements
from agentmedic.engine.series import AgentId, SeriesKey

NOW = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
NS = "agents"
MINUTE = timedelta(minutes=1)


def at(i: int) -> datetime:
    return NOW + i * MINUTE


def policy(guardrails: str = "maxDisabledPercent: 50", extra: str = "") -> AgentPolicy:
    text = f"""
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {{name: p, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{team: a}}}}
  interval: 1m
  rules:
    - name: high-errors
      all: [{{metric: error_rate, window: 5m, op: ">", value: 0.2, minSamples: 20}}]
      for: 2m
      actions: [{{scaleToZero: {{}}}}, {{notify: {{channels: [pagerduty]}}}}]
  guardrails: {{{guardrails}}}
  notifications:
    channels:
      - {{name: pagerduty, pagerduty: {{routingKeySecretRef: {{name: pd, key: key}}}}}}
{extra}"""
    parsed, problems = validate_policy(yaml.safe_load(text))
    assert not problems, problems
    assert parsed is not None
    return parsed


def history(p: AgentPolicy, values: Mapping[str, Callable[[int], float]], steps: int) -> History:
    """``values[agent](i)``: the agent's 5m error rate at step i, 100 executions each."""
    spec, _ = effective_spec(p, respect_dry_run=False)
    grid = Grid(NOW, at(steps - 1), MINUTE)
    err = SeriesKey("error_rate", None, timedelta(minutes=5), "agent")
    n = SeriesKey("executions", None, timedelta(minutes=5), "agent")
    agents = [AgentId(NS, name) for name in values]
    columns = {
        err: {a: array("d", [values[a.name](i) for i in range(steps)]) for a in agents},
        n: {a: array("d", [100.0] * steps) for a in agents},
    }
    return History(spec, grid, agents, dict.fromkeys(agents, "gpt-4o"), columns)


def healthy(i: int) -> float:
    return 0.01


def erring_from(start: int) -> Callable[[int], float]:
    return lambda i: 0.5 if i >= start else 0.01


def the_panel(result: BacktestResult) -> Panel:
    [panel] = panels(result)
    return panel


def spans(panel: Panel, agent: str) -> list[tuple[str, datetime, datetime]]:
    return [(s.kind, s.start, s.end) for s in panel.spans if s.agent == AgentId(NS, agent)]


def test_each_marker_names_its_agent_and_a_suppressed_one_is_hollow_with_its_reason() -> None:
    # Four agents at 25%: one may be disabled; the second to fire is held by MaxDisabled.
    p = policy("maxDisabledPercent: 25")
    values = {"a": erring_from(5), "b": erring_from(10), "c": healthy, "d": healthy}
    panel = the_panel(replay_history(p, history(p, values, 30)))

    assert [(m.agent, m.kind, m.outcome, m.reason, m.hollow) for m in panel.markers] == [
        (AgentId(NS, "a"), "scaleToZero", "applied", None, False),
        (AgentId(NS, "b"), "scaleToZero", "suppressed", "MaxDisabled", True),
    ]
    assert [m.label for m in panel.markers] == [
        "a: scaleToZero",
        "b: scaleToZero ✕ MaxDisabled",
    ]
    assert [(m.at, m.y) for m in panel.markers] == [(at(7), 0.5), (at(12), 0.5)]
    assert sorted(label.text for label in panel.labels) == [m.label for m in panel.markers]
    assert panel.unlabelled == 0


def test_pending_firing_and_disabled_spans_follow_the_engine() -> None:
    p = policy("maxDisabledPercent: 25")
    values = {"a": erring_from(5), "b": erring_from(10), "c": healthy, "d": healthy}
    result = replay_history(p, history(p, values, 30))
    panel = the_panel(result)

    # a: breaching from +5, fires after `for: 2m` (+7) and is disabled there to the end.
    assert spans(panel, "a") == [("pending", at(5), at(7)), ("disabled", at(7), at(29))]
    # b: never disabled (MaxDisabled): pending, then firing to the end.
    assert spans(panel, "b") == [("pending", at(10), at(12)), ("firing", at(12), at(29))]
    # Derived from the history, the moments firing starts are those the engine acted at.
    assert [d.at for d in result.decisions] == [at(7), at(12)]
    assert panel.lanes == [AgentId(NS, "a"), AgentId(NS, "b")]


def test_a_rule_clear_again_ends_its_firing_and_a_short_breach_stays_pending() -> None:
    p = policy("maxDisabledPercent: 0")  # nobody disabled: the spans are the rule's own
    values = {
        "blip": lambda i: 0.5 if 3 <= i < 4 else 0.01,
        "burst": lambda i: 0.5 if 5 <= i < 15 else 0.01,
        "c": healthy,
        "d": healthy,
    }
    panel = the_panel(replay_history(p, history(p, values, 20)))
    assert spans(panel, "burst") == [("pending", at(5), at(7)), ("firing", at(7), at(15))]
    assert spans(panel, "blip") == []  # never fired: no decision, not drawn


def test_a_systemic_episode_is_shaded_its_held_back_agents_hollow_and_its_page_drawn() -> None:
    p = policy()
    values = {name: erring_from(10) for name in ("a", "b", "c", "d")} | {"e": healthy}
    result = replay_history(p, history(p, values, 40))
    assert not result.decisions  # page, don't disable
    panel = the_panel(result)

    assert [s for s in panel.spans if s.kind == "systemic"] == [Span("systemic", at(10), at(39))]
    held = [m for m in panel.markers if m.outcome == "heldBack"]
    assert [(m.agent, m.at, m.reason, m.hollow) for m in held] == [
        (AgentId(NS, name), at(12), "SystemicOutage", True) for name in "abcd"
    ]
    [page] = [m for m in panel.markers if m.kind == "fleetPage"]
    assert (page.agent, page.at, page.hollow) == (None, at(10), False)
    # Four held-back markers at one moment share one label naming all four.
    texts = sorted(label.text for label in panel.labels)
    assert texts == ["a, b, c, d: scaleToZero held back ✕ SystemicOutage", "fleet page"]


def test_labels_in_one_row_never_overlap_and_every_marker_is_labelled_or_counted() -> None:
    # Ten agents one minute apart, each disabled when it fires: ten labels close together.
    names = [f"agent-with-a-long-name-{k}" for k in range(10)]
    p = policy("maxDisabledPercent: 100, systemicMinAgents: 100")
    values = {name: erring_from(5 + k) for k, name in enumerate(names)}
    panel = the_panel(replay_history(p, history(p, values, 40)))
    assert len(panel.markers) == 8  # MAX_LINES agents drawn

    for label in panel.labels:
        assert label.x >= 0
        assert label.x + label.width <= 1 + 1e-9
        assert 0 <= label.row < MAX_LABEL_ROWS
    for a, b in itertools.combinations(panel.labels, 2):
        if a.row == b.row:
            assert a.x + a.width <= b.x or b.x + b.width <= a.x, (a, b)
    labelled = sum(len(label.text.split(": ")[0].split(", ")) for label in panel.labels)
    assert labelled + panel.unlabelled == len(panel.markers)
    assert panel.unlabelled > 0  # three rows cannot hold eight such labels so close


def test_a_dry_run_decision_is_hollow_and_says_so() -> None:
    p = policy("maxDisabledPercent: 50, dryRun: true")
    spec, _ = effective_spec(p, respect_dry_run=True)
    h = history(p, {"a": erring_from(5), "b": healthy, "c": healthy}, 20)
    h.spec = spec
    [marker] = the_panel(replay_history(p, h)).markers
    assert (marker.outcome, marker.hollow, marker.label) == (
        "dryRun",
        True,
        "a: scaleToZero (dry run)",
    )


BUDGET = """  budget:
    period: day
    limitUSD: 50
    scope: agent
    soft: {atPercent: 80, actions: [{switchModel: {}}]}
    hard: {actions: [{scaleToZero: {}}]}
  model:
    env: {container: agent, name: OPENAI_MODEL}
    tiers: [gpt-4o, gpt-4o-mini]
"""


def budget_history(p: AgentPolicy, spend: Mapping[str, Callable[[int], float]]) -> History:
    """A day's spend so far per agent; the rule's error rate healthy throughout."""
    h = history(p, dict.fromkeys(spend, healthy), 120)
    h.spend = {a: array("d", [spend[a.name](i) for i in range(120)]) for a in h.agents}
    keys = requirements(h.spec, NOW)
    for key in keys:
        if key not in h.columns and key.metric != "error_rate":
            h.columns[key] = {a: array("d", [0.0] * 120) for a in h.agents}
    return h


def test_after_a_model_switch_the_history_is_faded_and_the_axis_ignores_it() -> None:
    p = policy(extra=BUDGET)
    # spender: $1 a minute, $275 by the end; steady: $0.30 a minute, under the soft stage.
    h = budget_history(p, {"spender": lambda i: i * 1.0, "steady": lambda i: i * 0.3})
    result = replay_history(p, h)
    kinds = [(d.agent.name, d.rule, d.kind.value, d.at) for d in result.decisions]
    assert kinds == [
        ("spender", "budget.soft", "switchModel", at(40)),
        ("spender", "budget.hard", "scaleToZero", at(50)),
    ]
    rule_panel, budget = panels(result)
    spender, steady = AgentId(NS, "spender"), AgentId(NS, "steady")

    assert budget.faded_from == {spender: 40}  # from the switch on, not the hard stop
    # The rule never fired; its panel draws the agents closest to it, spender faded too.
    assert rule_panel.faded_from == {spender: 40}
    lo, hi = budget.ylim
    assert 50 < hi < 80  # from the $50 limit and the $40 before the switch, not $119
    assert lo < 0  # room for the state lanes under zero
    [clip] = budget.clips
    assert (clip.agent, clip.above, clip.extreme) == (spender, True, 119.0)
    assert clip.at == at(min(i for i in range(120) if i * 1.0 > hi))
    assert steady not in budget.lines  # never reached a stage: not involved
    markers = [(m.label, m.at, m.y) for m in budget.markers]
    assert markers == [
        ("spender: switchModel → gpt-4o-mini", at(40), 40.0),
        ("spender: scaleToZero", at(50), 50.0),
    ]
    assert spans(budget, "spender") == [("firing", at(40), at(50)), ("disabled", at(50), at(119))]


def test_an_agent_never_changed_is_never_faded_and_always_within_the_limits() -> None:
    p = policy()
    values = {"a": lambda i: 0.9 if i >= 5 else 0.01, "b": healthy, "c": healthy}
    panel = the_panel(replay_history(p, history(p, values, 20)))
    assert panel.faded_from == {AgentId(NS, "a"): 7}
    assert not panel.clips
    lo, hi = panel.ylim
    assert lo < 0.01  # the values that made the decision stay on the plot
    assert hi > 0.9


@pytest.mark.parametrize("start", [0, 5])
def test_a_quiet_policy_draws_the_closest_agents_without_markers_or_spans(start: int) -> None:
    p = policy()
    values = {"a": lambda i: 0.15 if i >= start else 0.01, "b": healthy}
    panel = the_panel(replay_history(p, history(p, values, 20)))
    assert next(iter(panel.lines)) == AgentId(NS, "a")
    assert "never fired" in panel.note
    assert (panel.markers, panel.labels, panel.spans, panel.faded_from) == ([], [], [], {})
    assert panel.ylim[1] > 0.2  # the threshold is on the plot
