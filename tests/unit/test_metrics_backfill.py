"""The sandbox's OpenMetrics writer and its refusal of what promtool would mangle silently."""

from __future__ import annotations

import pytest

from agentmedic_sandbox.prometheus import (
    PrometheusNotInstalledError,
    PrometheusServer,
    counter,
    histogram,
    openmetrics_text,
)


def test_openmetrics_text_escapes_label_values_orders_points_and_ends_with_eof():
    text = openmetrics_text(
        [counter("x_total", {"agent": 'a"b\\c\nd', "z": "1"}, [(20, 2.5), (10, 1)])]
    )
    assert text.splitlines() == [
        'x_total{agent="a\\"b\\\\c\\nd",z="1"} 1 10',
        'x_total{agent="a\\"b\\\\c\\nd",z="1"} 2.5 20',
        "# EOF",
    ]


def test_millisecond_timestamps_are_refused_because_promtool_would_accept_them():
    with pytest.raises(ValueError, match="looks like milliseconds"):
        openmetrics_text([counter("x_total", {}, [(1_700_000_000_000, 1)])])


def test_histogram_writes_cumulative_buckets_sum_and_count():
    series = histogram("d_seconds", {"agent": "a"}, [0.5, 1], [(10, [1, 3, 4], 2.5)])
    lines = openmetrics_text(series).splitlines()
    assert 'd_seconds_bucket{agent="a",le="0.5"} 1 10' in lines
    assert 'd_seconds_bucket{agent="a",le="1"} 3 10' in lines
    assert 'd_seconds_bucket{agent="a",le="+Inf"} 4 10' in lines
    assert 'd_seconds_count{agent="a"} 4 10' in lines
    assert 'd_seconds_sum{agent="a"} 2.5 10' in lines


def test_histogram_needs_one_count_per_bound_plus_inf():
    with pytest.raises(ValueError, match=r"needs 3 cumulative counts \(one per bound and \+Inf\)"):
        histogram("d", {}, [0.5, 1], [(10, [1, 3], 2.5)])


def test_a_missing_binary_says_how_to_install_it():
    with pytest.raises(PrometheusNotInstalledError, match=r"apt-get install .*prometheus"):
        PrometheusServer(prometheus_binary="/nonexistent/prometheus")
