"""What people read from the demo and the notifications: plain text on the terminal, Slack
markup for Slack, a rule state per agent, feed lines never cut in the middle of a word."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentmedic.api.types import Severity
from agentmedic.cli.demo import ellipsize, rule_state
from agentmedic.engine.state import AgentState, Mark, RuleState
from agentmedic.notify import Delivery, Evidence, Message, MessageState, slack_payload
from agentmedic.notify.pagerduty import pagerduty_event
from agentmedic.notify.slack import escape, plain_text
from agentmedic_sandbox.receivers import NotificationReceivers, Received, ReceiverKind
from agentmedic_sandbox.world import AgentView

T0 = datetime(2026, 12, 3, 8, 29, 19, tzinfo=UTC)


def _message(state: MessageState = MessageState.FIRING) -> Message:
    return Message(
        episode="uid-1:agents/*:low-success:1764750000",
        policy_namespace="agents",
        policy_name="auto-disable",
        agent=None,
        rule="low-success",
        severity=Severity.CRITICAL,
        state=state,
        summary="policy agents/auto-disable: 9 of 9 agents breach success_rate < 80% & more",
        time=T0,
        evidence=(Evidence("success_rate < 0.8", 0.3, 0.8, timedelta(seconds=30)),),
    )


# --------------------------------------------------------------------- notification text


def test_message_evidence_reads_in_peoples_units_with_the_window_as_written() -> None:
    assert str(Evidence("latency_p95_ms > 10000", 25690.0, 10000, timedelta(minutes=5))) == (
        "latency_p95_ms[5m] = 25.7s > 10s"
    )
    assert str(Evidence("success_rate < 0.7", 0.3, 0.7, timedelta(minutes=15))) == (
        "success_rate[15m] = 30% < 70%"
    )
    assert str(Evidence("cost_usd >= 16", 12.4, 16, timedelta(hours=1))) == (
        "cost_usd[1h] = $12.40, not >= $16.00"
    )
    assert str(Evidence("query > 3", 25690.0, 3, timedelta(minutes=5))) == (
        "query[5m] = 25,690 > 3"
    )
    # Text of another form is kept as written, its value still without an exponent.
    assert str(Evidence("something else", 25690.0, None)) == "something else: 25,690"


def test_slack_gets_escaped_mrkdwn_and_the_terminal_reads_it_back_as_plain_text() -> None:
    """Slack: escape &, < and > as &amp;, &lt;, &gt; (docs.slack.dev, "Formatting text for
    app surfaces", escaping); nothing else is escaped."""
    payload = slack_payload(_message(), Delivery(T0))
    assert "&lt; 80% &amp; more" in payload["text"]
    evidence = payload["blocks"][3]["text"]["text"]
    assert "success_rate[30s] = 30% &lt; 80%" in evidence
    shown = plain_text(payload["text"])
    assert "&lt;" not in shown
    assert "&amp;" not in shown
    assert "success_rate < 80% & more" in shown
    assert plain_text(escape("a &lt; b < c & d")) == "a &lt; b < c & d"
    assert plain_text("see <https://x.example/p|the runbook> or <https://y.example>") == (
        "see the runbook or https://y.example"
    )


def _received(kind: ReceiverKind, body: dict[str, Any]) -> Received:
    return Received(kind, "POST", "/", {}, json.dumps(body).encode(), 202, 0.0)


def test_a_pagerduty_resolve_shows_its_dedup_key_and_its_triggers_summary() -> None:
    """The demo printed ``→ pagerduty: resolve`` with nothing after it: a resolve carries
    only routing_key, event_action and dedup_key on the wire."""
    rx = NotificationReceivers()
    trigger = _received(ReceiverKind.PAGERDUTY, pagerduty_event(_message(), Delivery(T0), "k"))
    resolve = _received(
        ReceiverKind.PAGERDUTY,
        pagerduty_event(_message(MessageState.RESOLVED), Delivery(T0), "k"),
    )
    assert "payload" not in resolve.json()
    rx._received.extend([trigger, resolve])

    line = rx.describe(resolve)
    assert line.startswith("resolve uid-1:agents/*:low-success:1764750000: ")
    assert "9 of 9 agents breach" in line
    assert rx.describe(trigger).startswith("trigger uid-1:agents/*:low-success:1764750000: ")
    orphan = _received(ReceiverKind.PAGERDUTY, {"event_action": "resolve", "dedup_key": "zz"})
    assert rx.describe(orphan) == "resolve zz (no trigger seen for this key)"


def test_the_demo_shows_slack_text_without_entities() -> None:
    rx = NotificationReceivers()
    slack = _received(ReceiverKind.SLACK, slack_payload(_message(), Delivery(T0)))
    line = rx.describe(slack)
    assert "&lt;" not in line
    assert "success_rate < 80% & more" in line


# --------------------------------------------------------------------- the live view


def _agent(replicas: int = 2, model: str = "gpt-4o", **states: AgentState) -> AgentView:
    return AgentView(replicas=replicas, model=model, states=dict(states))


def _agent(replicas: int = 2, model: str = "gpt-4o", **states: AgentState) -> AgentView:
    return AgentView(replicas=replicas, model=model, states=dict(states))


def test_an_agent_without_a_breaching_rule_is_clear_never_healthy_by_assumption() -> None:
    assert rule_state(_agent(), "gpt-4o", {"success": 0.98}) == ("clear", "green")
    assert rule_state(_agent(), "gpt-4o", {"success": None, "p95": None})[0] == (
        "no data (rules held)"
    )


@pytest.mark.parametrize(
    ("states", "replicas", "model", "text"),
    [
        (
            {"p": AgentState(rules={"latency-spike": RuleState(pending_since=T0)})},
            2,
            "gpt-4o",
            "pending: latency-spike",
        ),
        (
            {
                "p": AgentState(
                    rules={
                        "latency-spike": RuleState(pending_since=T0, firing_since=T0, episode="e")
                    }
                )
            },
            2,
            "gpt-4o",
            "firing: latency-spike",
        ),
        (
            {"p": AgentState(rules={"low-success": RuleState(pending_since=T0, systemic=True)})},
            2,
            "gpt-4o",
            "systemic: low-success",
        ),
        (
            {
                "p": AgentState(
                    rules={"low-success": RuleState(pending_since=T0, firing_since=T0)},
                    disabled=Mark("e", "low-success", T0, confirmed=True),
                )
            },
            0,
            "gpt-4o",
            "disabled (low-success)",
        ),
        (
            {
                "p": AgentState(
                    rules={"budget.soft": RuleState(pending_since=T0, firing_since=T0)},
                    downgraded=Mark("e", "budget.soft", T0),
                )
            },
            2,
            "gpt-4o-mini",
            "downgraded (gpt-4o → gpt-4o-mini, budget.soft)",
        ),
        ({"p": AgentState(no_data_since=T0)}, 2, "gpt-4o", "no data (rules held)"),
    ],
)
def test_the_live_view_shows_each_agents_rule_state(
    states: dict[str, AgentState], replicas: int, model: str, text: str
) -> None:
    assert rule_state(_agent(replicas, model, **states), "gpt-4o", {"success": 0.3})[0] == text


def test_two_policies_states_are_both_shown() -> None:
    view = _agent(
        a=AgentState(rules={"low-success": RuleState(pending_since=T0, systemic=True)}),
        b=AgentState(rules={"quality": RuleState(pending_since=T0)}),
    )
    assert rule_state(view, "gpt-4o", {})[0] == "systemic: low-success · pending: quality"


def test_feed_lines_are_cut_at_a_word_never_inside_one() -> None:
    line = (
        "[ 50.4s] → webhook: agents/spendy-bot: budget.soft firing; "
        "switched model gpt-4o → gpt-4o-mini"
    )
    assert ellipsize(line, 200) == line
    cut = ellipsize(line, 80)
    assert len(cut) <= 80
    assert cut.endswith(" …")
    kept = cut.removesuffix(" …")
    assert line.startswith(kept)
    assert line[len(kept)] == " "  # the cut falls between words
    assert ellipsize("x" * 50, 10) == "x" * 8 + " …"


def test_a_pagerduty_summary_names_its_subject_and_rule_once() -> None:
    """It read ``low-success on agents/flaky-bot: agents/flaky-bot: low-success firing — …``."""
    from dataclasses import replace

    from agentmedic.engine.series import AgentId

    said = "agents/flaky-bot: low-success firing — success_rate[30s] = 39% < 80% (n=301)"
    msg = replace(_message(), agent=AgentId("agents", "flaky-bot"), summary=said)
    assert pagerduty_event(msg, Delivery(T0), "k")["payload"]["summary"] == said
    other = replace(msg, summary="error rate 31% for 6m")
    assert pagerduty_event(other, Delivery(T0), "k")["payload"]["summary"] == (
        "low-success on agents/flaky-bot: error rate 31% for 6m"
    )


class _Receivers:
    def accepted(self) -> list[Received]:
        return []


class _World:
    """What the live view reads of a World, without servers."""

    real_api = False

    def __init__(self) -> None:
        from agentmedic_sandbox.world import demo_scenario

        self.scenario = demo_scenario(agents=4)
        self.receivers = _Receivers()
        self.views = {
            "flaky-bot": _workload(
                0,
                states={
                    "p": AgentState(
                        rules={"low-success": RuleState(pending_since=T0, firing_since=T0)},
                        disabled=Mark("e", "low-success", T0, confirmed=True),
                    )
                },
            ),
            "slow-bot": _workload(
                states={
                    "p": AgentState(
                        rules={"latency-spike": RuleState(pending_since=T0, firing_since=T0)}
                    )
                }
            ),
        }

    def elapsed(self) -> float:
        return 42.0

    def agent_view(self, name: str) -> AgentView:
        spec = next(a for a in self.scenario.agents if a.name == name)
        return self.views.get(name, _workload(2, spec.model))


def _workload(
    replicas: int = 2, model: str = "gpt-4o", states: dict[str, AgentState] | None = None
) -> AgentView:
    return AgentView(replicas=replicas, model=model, states=dict(states or {}))


def test_the_live_view_renders_rule_states_units_and_whole_words() -> None:
    """slow-bot at p95 27 s read ``healthy``; the feed cut ``gpt-4o → gpt-4o`` mid-word."""
    from rich.console import Console

    from agentmedic.cli.demo import Tracker
    from agentmedic.cli.demo import _view as live_view

    world = _World()
    tracker = Tracker(world)
    tracker.feed.append(
        "[ 50.4s] [DRY RUN] ModelSwitched: switched the model of deployment/spendy-bot in "
        "agents from gpt-4o to gpt-4o-mini: rule budget.soft of policy agents/daily-budget: "
        "budget stage budget.soft firing: cost_usd[48m] = $16.61 >= $16.00; switch model gpt-4o → "
        "gpt-4o-mini (cost_usd[48m] = $16.61 >= $16.00); undo: agentmedic restore "
        "agents/spendy-bot --kind deployment " + "word " * 60
    )
    metrics = {
        "slow-bot": {"success": 0.98, "p95": 27100.0, "cost": 12.4},
        "helper-1": {"success": 0.3, "p95": 850.0, "cost": 0.5},
    }
    console = Console(width=160, record=True, color_system=None)
    console.print(live_view(world, tracker, metrics, console.width))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "-bot" in line}
    assert "firing: latency-spike" in rows["slow-bot"]
    assert "27.1s" in rows["slow-bot"]
    assert "$12.40" in rows["slow-bot"]
    assert "disabled (low-success)" in rows["flaky-bot"]
    assert "healthy" not in text
    assert "30%" in text
    assert "850ms" in text
    assert "[DRY RUN]" in text  # shown as text, not taken for markup
    assert "gpt-4o-mini" in text
    assert " …" in text  # the long line ends at a word


def test_a_slack_fallback_names_its_subject_once() -> None:
    from dataclasses import replace

    from agentmedic.engine.series import AgentId

    said = "agents/flaky-bot: low-success firing — success_rate[30s] = 39% < 80% (n=301)"
    msg = replace(_message(), agent=AgentId("agents", "flaky-bot"), summary=said)
    text = plain_text(slack_payload(msg, Delivery(T0))["text"])
    assert text == f"Firing (critical): {said}"
