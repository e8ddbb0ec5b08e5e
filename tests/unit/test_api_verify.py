"""spec.verify: defaults, bounds and the checks that span fields; quality_score in rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentmedic.api.lint import lint_policy
from agentmedic.api.validation import validate_policy
from agentmedic.api.verify import OnRegression, Verify
from tests.unit.test_cli_validate import policy, run, write


def _doc(**verify: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": "p", "namespace": "agents"},
        "spec": {
            "selector": {"matchLabels": {"team": "a"}},
            "interval": "1m",
            "model": {"env": {"container": "agent", "name": "MODEL"}, "tiers": ["a", "b"]},
            "verify": verify,
        },
    }


def test_an_empty_verify_takes_the_documented_defaults() -> None:
    parsed, problems = validate_policy(_doc())
    assert problems == []
    assert parsed is not None
    v = parsed.spec.verify
    assert v == Verify()
    assert (v.window, v.baseline_window, v.min_executions) == (
        timedelta(minutes=15),
        timedelta(hours=1),
        50,
    )
    assert (v.on_regression, v.reject_for) == (OnRegression.REVERT, timedelta(days=1))
    assert v.max_windows == 3


@pytest.mark.parametrize(
    ("verify", "path", "words"),
    [
        ({"qualityScoreDrop": 2}, "spec.verify.qualityScoreDrop", "less than or equal to 1"),
        ({"minExecutions": 0}, "spec.verify.minExecutions", "greater than or equal to 1"),
        ({"maxWindows": 0}, "spec.verify.maxWindows", "greater than or equal to 1"),
        ({"maxWindows": 101}, "spec.verify.maxWindows", "less than or equal to 100"),
        ({"onRegression": "rollback"}, "spec.verify.onRegression", "revert"),
        ({"window": "10s"}, "spec.verify.window", "between 30s and 30d"),
        ({"rejectFor": "40d"}, "spec.verify.rejectFor", "between 0s and 30d"),
        ({"windw": "5m"}, "spec.verify.windw", "not a known field"),
        ({"window": "30s"}, "spec.verify.window", "shorter than spec.interval (1m)"),
    ],
)
def test_a_bad_verify_field_is_named_with_the_fix(
    verify: dict[str, Any], path: str, words: str
) -> None:
    _, problems = validate_policy(_doc(**verify))
    assert [p.path for p in problems] == [path], problems
    assert words in problems[0].message


def test_quality_score_in_a_rule_is_a_ratio_lint_knows() -> None:
    parsed, problems = validate_policy(
        {
            **_doc(),
            "spec": {
                **_doc()["spec"],
                "rules": [
                    {
                        "name": "worse-answers",
                        "all": [
                            {"metric": "quality_score", "window": "15m", "op": "<", "value": 70}
                        ],
                        "actions": [],
                    }
                ],
            },
        }
    )
    assert problems == []
    assert parsed is not None
    (found,) = lint_policy(parsed.spec)
    assert "outside 0..1" in found.message
    assert "quality_score" in found.message


def test_validate_reports_a_bad_tolerance_in_one_line_and_exits_1(tmp_path: Path) -> None:
    text = policy() + "  verify: {latencyP95Rise: -1}\n"
    code, _, err = run("validate", str(write(tmp_path, text)))
    assert code == 1
    assert "spec.verify.latencyP95Rise: " in err
    assert "greater than or equal to 0" in err
    assert "Traceback" not in err
