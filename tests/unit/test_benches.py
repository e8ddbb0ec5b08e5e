"""Every bench in tests/bench answers ``--help`` without running, and a tiny run of the pure
ones ends with a JSON line carrying their figures under the stable names.

The tiny runs of the benches that need Prometheus and the operator are in
tests/integration/test_benches.py. No figure is judged here: benches print speed, tests
check behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
BENCHES = sorted(p.name for p in BENCH.glob("bench_*.py"))


def run_bench(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def figures(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last line of the output, which must be a JSON object; the reference line too."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert any(line.startswith("reference: ") and " cores " in line for line in lines), lines[:3]
    value = json.loads(lines[-1])
    assert isinstance(value, dict)
    return value


def test_every_bench_is_listed() -> None:
    assert set(BENCHES) >= {
        "bench_backtest.py",
        "bench_engine.py",
        "bench_instrument.py",
        "bench_latency.py",
        "bench_metrics.py",
        "bench_operator.py",
    }


@pytest.mark.parametrize("name", BENCHES)
def test_help_describes_the_bench_and_runs_nothing(name: str) -> None:
    proc = run_bench(name, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: ")
    assert "reference:" not in proc.stdout, "--help ran the bench"
    assert proc.stderr == ""


@pytest.mark.parametrize("name", BENCHES)
def test_a_wrong_option_is_one_line_of_usage_not_a_traceback(name: str) -> None:
    proc = run_bench(name, "--no-such-option", timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unrecognized arguments: --no-such-option" in proc.stderr


def test_a_tiny_engine_run_prints_us_per_agent() -> None:
    out = figures(run_bench("bench_engine.py", "--agents", "20", "--cycles", "1"))
    assert out["bench"] == "engine"
    assert out["agents"] == 20
    assert out["us_per_agent"] > 0
    assert out["us_per_agent"] == out["us_per_agent_steady"]


def test_a_tiny_instrument_run_prints_us_per_execution() -> None:
    out = figures(run_bench("bench_instrument.py", "--executions", "50", "--rounds", "1"))
    assert out["bench"] == "instrument"
    assert out["us_per_execution"] > 0
    assert out["us_per_execution_logged"] > 0
