"""The catalog: built-in names, templates, overrides.

That the SDK exports what the templates read, with the values they compute, is proven
end to end in tests/integration/test_instrument_contract.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.engine.series import SeriesKey
from agentmedic.metrics.catalog import (
    DEFAULT_CATALOG,
    EXECUTIONS,
    SERIES,
    Catalog,
    executions_key,
)

LITELLM = (
    "sum by ({{agent_label}}) (increase(litellm_spend_metric_total{ {{agents}} }[{{window}}]))"
)


def render(catalog: Catalog, metric: str) -> str:
    return catalog.render(
        metric,
        window=timedelta(minutes=5),
        agents='agent=~"a|b"',
        agent_label="agent",
        by="agent, namespace",
    )


def test_catalog_covers_exactly_the_builtin_metric_names():
    assert set(DEFAULT_CATALOG.templates) == set(BUILTIN_METRICS)


@pytest.mark.parametrize("metric", sorted(BUILTIN_METRICS))
def test_every_template_renders_with_all_placeholders_filled(metric):
    query = render(DEFAULT_CATALOG, metric)
    assert "{{" not in query
    assert "[5m]" in query
    assert 'agent=~"a|b"' in query
    assert "by (agent, namespace" in query


@pytest.mark.parametrize("metric", sorted(BUILTIN_METRICS))
def test_templates_read_only_the_series_the_sdk_exports(metric):
    template = DEFAULT_CATALOG.templates[metric]
    used = {name for name in SERIES.values() if name in template}
    assert used, f"{metric} reads none of {sorted(SERIES.values())}"


def test_latencies_are_in_milliseconds():
    for metric in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "tool_latency_p95_ms"):
        assert render(DEFAULT_CATALOG, metric).startswith("1000 * histogram_quantile(")


def test_override_replaces_one_template_and_keeps_the_others():
    custom = DEFAULT_CATALOG.with_overrides({"cost_usd": LITELLM})
    assert "litellm_spend_metric_total" in render(custom, "cost_usd")
    assert render(custom, "error_rate") == render(DEFAULT_CATALOG, "error_rate")
    assert "litellm" not in render(DEFAULT_CATALOG, "cost_usd")  # the default is untouched


def test_override_of_an_unknown_metric_names_it_and_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown metric\(s\) spend_usd; known: cost_per_execution"
    ):
        DEFAULT_CATALOG.with_overrides({"spend_usd": LITELLM})


def test_override_with_an_unknown_placeholder_names_metric_and_placeholder():
    with pytest.raises(ValueError, match=r"metric 'cost_usd': unknown placeholder \{\{agent\}\}"):
        DEFAULT_CATALOG.with_overrides({"cost_usd": "sum(x{ {{agent}} })"})


def test_override_with_unbalanced_brackets_is_refused():
    with pytest.raises(ValueError, match="metric 'tokens': template unclosed"):
        DEFAULT_CATALOG.with_overrides({"tokens": "sum by ({{by}}) (rate(x[{{window}}])"})


def test_render_of_an_unknown_metric_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        render(DEFAULT_CATALOG, "nope")


def test_executions_key_is_the_executions_metric_over_the_window():
    key = executions_key(timedelta(minutes=15), "bot")
    assert key == SeriesKey(EXECUTIONS, None, timedelta(minutes=15), "bot")
    assert EXECUTIONS in BUILTIN_METRICS
