"""lint_policy: what a valid policy does differently from what it appears to say."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agentmedic.api.lint import RATIO_METRICS, Finding, Severity, errors, lint_policy, summary
from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.api.types import AgentPolicySpec

SLACK = {"name": "oncall", "slack": {"webhookSecretRef": {"name": "s", "key": "url"}}}


def spec(*rules: dict[str, Any], **extra: Any) -> AgentPolicySpec:
    return AgentPolicySpec.model_validate(
        {
            "selector": {"matchLabels": {"team": "a"}},
            "rules": list(rules),
            "notifications": {"channels": [SLACK]},
            **extra,
        }
    )


def rule(*conditions: dict[str, Any], actions: list[Any] | None = None, **extra: Any) -> Any:
    return {
        "name": "r",
        "all": list(conditions),
        "actions": actions if actions is not None else [{"notify": {"channels": ["oncall"]}}],
        **extra,
    }


def cond(metric: str = "error_rate", op: str = ">", value: float = 0.5, **extra: Any) -> Any:
    return {"metric": metric, "op": op, "value": value, **extra}


DISABLE = [{"scaleToZero": {}}, {"notify": {"channels": ["oncall"]}}]


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def test_the_ratio_metrics_come_from_the_catalogs_units() -> None:
    assert {"success_rate", "error_rate", "tool_error_rate"} <= RATIO_METRICS
    assert all(BUILTIN_METRICS[m].unit.startswith("ratio") for m in RATIO_METRICS)
    assert "latency_p95_ms" not in RATIO_METRICS


def test_a_well_written_policy_has_no_findings() -> None:
    assert lint_policy(spec(rule(cond(), actions=DISABLE, **{"for": "5m"})), fleet_size=10) == []


def test_success_rate_below_70_is_an_error_suggesting_0_7() -> None:
    [found] = lint_policy(spec(rule(cond("success_rate", "<", 70))))
    assert found.code == "RatioOutOfRange"
    assert found.severity is Severity.ERROR
    assert found.path == "spec.rules[0].all[0].value"
    assert found.fix == "did you mean 0.7?"
    assert "always true" in found.message


def test_error_rate_above_15_is_an_error_that_can_never_hold() -> None:
    [found] = lint_policy(spec(rule(cond("error_rate", ">", 15))))
    assert found.fix == "did you mean 0.15?"
    assert "never true" in found.message


def test_a_ratio_above_100_has_no_percentage_to_suggest() -> None:
    [found] = lint_policy(spec(rule(cond("tool_error_rate", ">", 500))))
    assert found.fix == "use a share between 0 and 1"


def test_a_recover_value_outside_0_1_is_reported_on_its_own_field() -> None:
    found = lint_policy(spec(rule(cond("error_rate", ">", 0.5, recoverValue=-0.2))))
    assert [f.path for f in found] == ["spec.rules[0].all[0].recoverValue"]


def test_latency_is_not_a_ratio() -> None:
    assert lint_policy(spec(rule(cond("latency_p95_ms", ">", 8000)))) == []


@pytest.mark.parametrize(
    ("fleet", "percent", "warned"),
    [
        (1, 50, True),  # 50% of 1 rounds down to 0
        (3, 25, True),  # 0.75 → 0
        (4, 25, False),  # exactly 1
        (2, 50, False),
        (None, 50, False),  # unknown fleet: only a 0% cap is knowably useless
        (None, 0, True),
    ],
)
def test_a_cap_rounding_to_no_agent_is_a_warning_for_the_fleet_size(
    fleet: int | None, percent: float, warned: bool
) -> None:
    policy = spec(rule(cond(), actions=DISABLE), guardrails={"maxDisabledPercent": percent})
    found = lint_policy(policy, fleet_size=fleet)
    assert ("CapRoundsToZero" in codes(found)) is warned
    if warned:
        [cap] = [f for f in found if f.code == "CapRoundsToZero"]
        assert cap.severity is Severity.WARNING
        assert cap.path == "spec.guardrails.maxDisabledPercent"


def test_the_cap_fix_names_the_smallest_percent_that_acts() -> None:
    policy = spec(rule(cond(), actions=DISABLE), guardrails={"maxDisabledPercent": 25})
    [cap] = lint_policy(policy, fleet_size=3)
    assert cap.fix == "raise it to at least 34"


def test_a_cap_blocking_several_rules_is_reported_once() -> None:
    rules = [rule(cond(), actions=DISABLE) | {"name": n} for n in ("a", "b")]
    policy = spec(*rules, guardrails={"maxDisabledPercent": 10})
    assert codes(lint_policy(policy, fleet_size=5)) == ["CapRoundsToZero"]


def test_a_cap_does_not_matter_to_a_policy_that_never_disables() -> None:
    policy = spec(rule(cond()), guardrails={"maxDisabledPercent": 0})
    assert lint_policy(policy, fleet_size=1) == []


def test_for_shorter_than_two_scrapes_is_a_warning_and_0s_is_not() -> None:
    short = lint_policy(spec(rule(cond(), **{"for": "45s"})), scrape_interval=timedelta(seconds=30))
    assert codes(short) == ["ForShorterThanTwoScrapes"]
    assert short[0].fix == "use 0s to act at once, or at least 1m"
    assert lint_policy(spec(rule(cond(), **{"for": "0s"}))) == []
    assert lint_policy(spec(rule(cond(), **{"for": "1m"}))) == []


def test_a_window_shorter_than_four_scrapes_is_a_warning() -> None:
    found = lint_policy(spec(rule(cond(window="1m"))), scrape_interval=timedelta(seconds=30))
    assert codes(found) == ["WindowTooShort"]
    assert found[0].path == "spec.rules[0].all[0].window"
    assert found[0].fix == "use at least 2m"
    assert lint_policy(spec(rule(cond(window="1m"))), scrape_interval=timedelta(seconds=15)) == []


def test_a_raw_query_without_rate_has_no_window_need() -> None:
    gauge = {"query": "max by (agent) (queue_depth{ {{agents}} })", "op": ">", "value": 3}
    assert lint_policy(spec(rule({**gauge, "window": "30s"}))) == []
    rated = {**gauge, "query": "sum by (agent) (rate(x_total{ {{agents}} }[{{window}}]))"}
    assert codes(lint_policy(spec(rule({**rated, "window": "30s"})))) == ["WindowTooShort"]


def test_scale_to_zero_without_a_notification_is_a_warning_in_rules_and_budgets() -> None:
    silent = spec(rule(cond(), actions=[{"scaleToZero": {}}]))
    assert codes(lint_policy(silent)) == ["ScaleToZeroWithoutNotify"]
    assert lint_policy(silent)[0].path == "spec.rules[0].actions[0].scaleToZero"
    budget = spec(budget={"limitUSD": 10, "hard": {"actions": [{"scaleToZero": {}}]}})
    [found] = lint_policy(budget)
    assert found.path == "spec.budget.hard.actions[0].scaleToZero"


def test_errors_come_first_and_errors_filters_them() -> None:
    policy = spec(rule(cond(window="30s")), rule(cond("success_rate", "<", 80)) | {"name": "r2"})
    found = lint_policy(policy)
    assert codes(found) == ["RatioOutOfRange", "WindowTooShort"]
    assert codes(errors(found)) == ["RatioOutOfRange"]
    assert str(found[0]).startswith("spec.rules[1].all[0].value: 80 is outside 0..1")


def test_summary_is_one_bounded_line_for_a_condition_message() -> None:
    policy = spec(rule(cond("success_rate", "<", 80), actions=[{"scaleToZero": {}}]))
    found = lint_policy(policy)
    text = summary(found)
    assert text.startswith("1 error(s), 1 warning(s): spec.rules[0].all[0].value: 80 is outside")
    assert "\n" not in text
    assert len(summary(found, max_chars=40)) == 40
    assert summary([]) == ""


def test_a_fleet_smaller_than_systemic_min_agents_is_warned_that_outages_disable_one_by_one() -> (
    None
):
    policy = spec(rule(cond(), actions=DISABLE), guardrails={"maxDisabledPercent": 100})
    [found] = lint_policy(policy, fleet_size=2)
    assert found.code == "SystemicNeverApplies"
    assert found.severity is Severity.WARNING
    assert found.path == "spec.guardrails.systemicMinAgents"
    assert "more than the 2 agent(s) selected" in found.message
    assert found.fix.startswith("lower it to 2")


def test_systemic_detection_that_lapses_once_the_cap_is_disabled_is_warned() -> None:
    # 4 agents, 50 %: two may be disabled, and the two left are fewer than the default 3.
    policy = spec(rule(cond(), actions=DISABLE, **{"for": "5m"}))
    [found] = lint_policy(policy, fleet_size=4)
    assert found.code == "SystemicLapsesAfterDisables"
    assert "only 2 remain" in found.message
    assert lint_policy(policy, fleet_size=6) == []  # 3 remain: still recognised
    assert lint_policy(policy) == []  # fleet size unknown: nothing to say


def test_systemic_size_does_not_matter_to_a_policy_that_never_disables() -> None:
    assert lint_policy(spec(rule(cond(), **{"for": "5m"})), fleet_size=1) == []
