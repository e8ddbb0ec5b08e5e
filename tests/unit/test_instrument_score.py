"""ex.score: quality scores an agent gives its executions, exported as a summary."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from agentmedic.api.lint import RATIO_METRICS
from agentmedic.api.metric_names import BUILTIN_METRICS, QUALITY_SCORE
from agentmedic.instrument import AgentMonitor


def _value(registry: CollectorRegistry, sample: str, **labels: str) -> float | None:
    return registry.get_sample_value(sample, labels)


def test_scores_are_summed_and_counted_by_agent_model_and_name() -> None:
    registry = CollectorRegistry()
    monitor = AgentMonitor("support-bot", registry, model="gpt-4o")
    with monitor.execution() as ex:
        ex.score("groundedness", 0.5)
        ex.score("groundedness", 1)
        ex.score("user_rating", 0.0)
    monitor.record_execution(latency_s=1.0, model="gpt-4o-mini", scores=[("groundedness", 0.25)])
    labels = {"agent": "support-bot", "model": "gpt-4o", "name": "groundedness"}
    assert _value(registry, QUALITY_SCORE + "_count", **labels) == 2
    assert _value(registry, QUALITY_SCORE + "_sum", **labels) == 1.5
    rating = {**labels, "name": "user_rating"}
    assert _value(registry, QUALITY_SCORE + "_count", **rating) == 1
    mini = {**labels, "model": "gpt-4o-mini"}
    assert _value(registry, QUALITY_SCORE + "_sum", **mini) == 0.25


def test_an_execution_without_scores_exports_no_quality_series() -> None:
    registry = CollectorRegistry()
    monitor = AgentMonitor("quiet-bot", registry, model="gpt-4o")
    with monitor.execution():
        pass
    text = [s.name for f in registry.collect() for s in f.samples]
    assert not [n for n in text if n.startswith(QUALITY_SCORE)]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (1.5, "outside [0, 1]"),
        (-0.1, "outside [0, 1]"),
        (math.nan, "outside [0, 1]"),
        (math.inf, "outside [0, 1]"),
        ("0.5", "must be a number"),
        (True, "must be a number"),
    ],
)
def test_a_score_outside_zero_to_one_is_a_clear_error(value: object, words: str) -> None:
    registry = CollectorRegistry()
    monitor = AgentMonitor("support-bot", registry, model="gpt-4o")
    with (
        pytest.raises(ValueError, match="score 'groundedness'") as err,
        monitor.execution() as ex,
    ):
        ex.score("groundedness", value)  # type: ignore[arg-type]
    assert words in str(err.value)
    with pytest.raises(ValueError, match="score name"):
        monitor.record_execution(latency_s=1.0, scores=[("", 0.5)])
    # nothing was counted for the refused scores
    assert (
        _value(
            registry,
            QUALITY_SCORE + "_count",
            agent="support-bot",
            model="gpt-4o",
            name="groundedness",
        )
        is None
    )


def test_quality_score_is_a_builtin_ratio_that_lint_knows() -> None:
    assert BUILTIN_METRICS["quality_score"].unit == "ratio 0..1"
    assert BUILTIN_METRICS["quality_score"].per_execution
    assert "quality_score" in RATIO_METRICS
