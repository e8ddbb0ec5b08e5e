"""A tiny run of each bench that needs a real Prometheus (and the operator): it ends with a
JSON line carrying its figures under the stable names. Sizes are the smallest that exercise
every path; no figure is judged (benches print speed, tests check behaviour).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.test_benches import figures, run_bench

# Each bench runs on its own servers: in a parallel run each test is a unit of its own.
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.schedule_alone,
    pytest.mark.skipif(
        shutil.which("promtool") is None and not Path("/usr/bin/promtool").exists(),
        reason="needs prometheus and promtool (make deps)",
    ),
]


def test_a_tiny_metrics_run_prints_fetch_us_per_agent() -> None:
    out = figures(
        run_bench("bench_metrics.py", "--sizes", "20", "--naive-sample", "5", "--repeat", "1")
    )
    assert out["bench"] == "metrics"
    assert out["queries_per_cycle"] == 4
    assert out["fetch_us_per_agent"]["20"] > 0
    assert out["naive_wall_ratio"]["20"] > 0


def test_a_tiny_backtest_run_prints_seconds(tmp_path: Path) -> None:
    out = figures(
        run_bench(
            "bench_backtest.py",
            *("--agents", "2", "--days", "1", "--keep-going", "--cache", str(tmp_path)),
            timeout=240,
        )
    )
    assert out["bench"] == "backtest"
    assert out["seconds"] > 0


def test_a_tiny_operator_run_prints_its_figures() -> None:
    args = ("--agents", "6", "--policies", "2", "--unselected", "3", "--cycles", "1")
    out = figures(run_bench("bench_operator.py", *args, "--warmup", "1", "--interval", "10"))
    for name in (
        "agents",
        "cpu_us_per_agent_cycle",
        "peak_rss_mib",
        "first_cycle_s",
        "queries_per_cycle",
        "writes_per_policy_hour_spending",
        "writes_per_policy_hour_flat",
        "watch_streams",
        "rss_growth_mib",
    ):
        assert name in out, name
    assert out["agents"] == 6
    assert out["unselected"] == 3
    # One per policy and kind, the policies' own, and the namespace's AgentBudgets,
    # AgentSilences, NotificationChannels and MetricsBackends.
    assert out["watch_streams"] == 9
    assert out["queries_per_cycle_bound"] == 9


def test_a_tiny_latency_run_acts_on_every_breaching_agent() -> None:
    out = figures(run_bench("bench_latency.py", "--agents", "4", "--steps", "1,2"))
    assert out["bench"] == "latency"
    assert out["acted_1"] == 1
    assert out["acted_2"] == 2
    assert out["latency_2_last_s"] >= out["latency_2_p50_s"] > 0
