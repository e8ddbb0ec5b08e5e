"""Condition choice after a cycle, and when spend alone justifies a status write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.api.types import AgentCounts, AgentPolicyStatus, ConditionStatus, Spend
from agentmedic.operator.entry import PolicyEntry
from agentmedic.operator.reporting import spend_due
from agentmedic.operator.status import ConditionType, Reason, cycle_conditions

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 1, tzinfo=UTC)
REFRESH = timedelta(minutes=5)


def reasons(counts: AgentCounts, selected: int = 3, errors: tuple[str, ...] = ()) -> list[str]:
    conditions = cycle_conditions(
        counts,
        selected=selected,
        selector="team=a",
        interval=timedelta(seconds=30),
        query_errors=errors,
    )
    assert [c[0] for c in conditions] == [
        ConditionType.READY,
        ConditionType.METRICS_AVAILABLE,
        ConditionType.REMEDIATING,
    ]
    return [c[2] for c in conditions]


def test_a_healthy_fleet_is_ready_with_metrics_and_nothing_to_remediate() -> None:
    assert reasons(AgentCounts(total=3, healthy=3)) == [
        Reason.EVALUATING,
        Reason.METRICS_OK,
        Reason.AGENTS_HEALTHY,
    ]


def test_no_selected_agent_is_named_in_ready() -> None:
    assert reasons(AgentCounts(), selected=0)[0] == Reason.NO_AGENTS


def test_a_refused_query_sets_metrics_available_false_with_its_message() -> None:
    conditions = cycle_conditions(
        AgentCounts(total=1, healthy=1),
        selected=1,
        selector="team=a",
        interval=timedelta(seconds=30),
        query_errors=["error_rate[5m]: parse error"],
    )
    assert conditions[1][1:] == (
        ConditionStatus.FALSE,
        Reason.QUERY_ERROR,
        "error_rate[5m]: parse error",
    )


def test_agents_acted_on_outrank_agents_only_breaching() -> None:
    assert reasons(AgentCounts(total=3, breaching=2, disabled=1))[2] == Reason.AGENTS_REMEDIATED
    assert reasons(AgentCounts(total=3, breaching=2))[2] == Reason.AGENTS_BREACHING


def spend(usd: float, start: datetime = DAY, limit: float = 100.0) -> Spend:
    return Spend(period_start=start, usd=usd, limit_usd=limit)


def entry(shown: Spend | None, written: datetime | None) -> PolicyEntry:
    e = PolicyEntry("agents", "p", "uid", 1, None, [])
    e.status = AgentPolicyStatus(spend=shown)
    e.spend_written_at = written
    return e


@pytest.mark.parametrize(
    ("name", "e", "new", "budget_changed", "due"),
    [
        ("spend never shown", entry(None, None), spend(1), False, True),
        ("shown a minute ago", entry(spend(1), NOW - timedelta(minutes=1)), spend(2), False, False),
        ("shown a period ago", entry(spend(1), NOW - REFRESH), spend(2), False, True),
        ("not written by this term", entry(spend(1), None), spend(2), False, True),
        ("a budget stage changed", entry(spend(1), NOW), spend(2), True, True),
        (
            "a new budget period",
            entry(spend(90), NOW),
            spend(0, DAY + timedelta(days=1)),
            False,
            True,
        ),
        ("a new limit", entry(spend(1), NOW), spend(1, limit=200), False, True),
    ],
)
def test_when_spend_alone_is_due(
    name: str, e: PolicyEntry, new: Spend, budget_changed: bool, due: bool
) -> None:
    assert spend_due(e, new, NOW, REFRESH, budget_changed=budget_changed) is due, name


def test_the_linters_warnings_follow_readys_message_and_change_no_reason() -> None:
    conditions = cycle_conditions(
        AgentCounts(total=3, healthy=3),
        selected=3,
        selector="team=a",
        interval=timedelta(seconds=30),
        query_errors=(),
        warnings="1 warning(s): spec.guardrails.maxDisabledPercent: rounds to 0 agents",
    )
    ready = conditions[0]
    assert ready[2] == Reason.EVALUATING
    assert ready[3] == (
        "evaluating 3 agent(s) every 30s; "
        "1 warning(s): spec.guardrails.maxDisabledPercent: rounds to 0 agents"
    )
    plain = cycle_conditions(
        AgentCounts(total=3, healthy=3),
        selected=3,
        selector="team=a",
        interval=timedelta(seconds=30),
        query_errors=(),
    )
    assert plain[0][3] == "evaluating 3 agent(s) every 30s"


def test_the_linters_warnings_are_kept_per_generation_and_fleet_size() -> None:
    from agentmedic.api.types import AgentPolicy
    from agentmedic.operator.reporting import lint_warnings

    policy = AgentPolicy.model_validate(
        {
            "apiVersion": "agentmedic.io/v1alpha1",
            "kind": "AgentPolicy",
            "metadata": {"name": "p", "namespace": "agents"},
            "spec": {
                "selector": {"matchLabels": {"team": "a"}},
                "rules": [
                    {
                        "name": "r",
                        "all": [{"metric": "error_rate", "op": ">", "value": 0.5}],
                        "for": "5m",
                        "actions": [{"scaleToZero": {}}, {"notify": {"channels": ["c"]}}],
                    }
                ],
                "notifications": {
                    "channels": [
                        {"name": "c", "slack": {"webhookSecretRef": {"name": "s", "key": "u"}}}
                    ]
                },
            },
        }
    )
    e = PolicyEntry("agents", "p", "uid", 1, policy, [])
    assert lint_warnings(e, 10) == ""
    one = lint_warnings(e, 1)  # one agent: the cap rounds to zero, systemic never applies
    assert "maxDisabledPercent" in one
    assert "systemicMinAgents" in one
    assert e.lint == ((1, 1), one)
    e.lint = ((1, 1), "kept")
    assert lint_warnings(e, 1) == "kept"  # same generation and size: not linted again
    e.generation = 2
    assert lint_warnings(e, 1) == one  # a new generation is linted again
