"""``agentmedic fleet``'s cost-source check and grouping against a real Prometheus.

Four agents record executions, cost and tokens every minute for two hours. Three report
exactly their tokens x the price list (cached input at its discount); ``research-bot``
reports 20 % more. Both sources are counters sampled at the same instants, so however
Prometheus' ``increase()`` extrapolates to the window's edges, the ratio of the two
figures is the ratio of the amounts: the check must flag research-bot alone, with both
figures, and group the fleet by team (a Namespace's team for series without a label).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentmedic.cli.main import main
from agentmedic_sandbox.prometheus import Series, counter, openmetrics_text

pytestmark = pytest.mark.prometheus

AT_S = 1_790_000_000 - 1_790_000_000 % 60
START_S = AT_S - 2 * 3600
PRICE_LIST = """\
apiVersion: agentmedic.io/v1alpha1
kind: ModelPriceList
metadata:
  name: default
spec:
  includeDefaults: false
  prices:
    - {model: big-model, input: 2.0, cachedInput: 0.5, output: 8.0}
    - {model: small-model, input: 0.2, output: 0.8}
"""
PRICES = {"big-model": (2.0, 0.5, 8.0), "small-model": (0.2, 0.2, 0.8)}
# agent, namespace, team label (None: none), model, reported / priced, tokens per minute
AGENTS = [
    ("support-bot", "care", "care", "big-model", 1.0, (30_000, 10_000, 4_000)),
    ("triage-bot", "care", None, "small-model", 1.0, (50_000, 0, 9_000)),
    ("research-bot", "lab", "science", "big-model", 1.2, (20_000, 5_000, 2_000)),
    ("tiny-bot", "lab", "science", "small-model", 1.0, (1_000, 0, 100)),
]


def history() -> list[Series]:
    out: list[Series] = []
    for agent, ns, team, model, factor, (tin, cached, tout) in AGENTS:
        labels = {"agent": agent, "namespace": ns, "model": model}
        if team:
            labels["team"] = team
        pin, pcached, pout = PRICES[model]
        per_minute = ((tin - cached) * pin + cached * pcached + tout * pout) / 1e6 * factor
        times = range(START_S, AT_S + 1, 60)
        steps = [(float(t), float(i)) for i, t in enumerate(times)]

        def scaled(k: float, steps: list[tuple[float, float]] = steps) -> list[tuple[float, float]]:
            return [(t, i * k) for t, i in steps]

        out.append(counter("agent_executions_total", {**labels, "status": "success"}, scaled(3)))
        out.append(counter("agent_cost_usd_total", labels, scaled(per_minute)))
        for kind, amount in (("input", tin), ("cached_input", cached), ("output", tout)):
            if amount:
                out.append(counter("agent_tokens_total", {**labels, "type": kind}, scaled(amount)))
    return out


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory: Any) -> str:
    server = prometheus_module_factory(backfill=openmetrics_text(history()))
    return str(server.url)


@pytest.fixture
def price_list(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICE_LIST)
    return path


def fleet(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    code = main(
        ["fleet", "--prometheus", url, "--window", "1h", "--at", str(AT_S), "--no-progress", *extra]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_only_the_agent_reporting_20_percent_more_than_its_tokens_cost_is_listed(
    capsys: pytest.CaptureFixture[str], prom_url: str, price_list: Path
) -> None:
    code, out, err = fleet(capsys, prom_url, "-o", "json", "--price-list", str(price_list))
    assert code == 0, err
    check = json.loads(out)["costCheck"]
    assert check["agents"] == 4
    assert check["prices"] == f"{price_list} (ModelPriceList)"
    (research,) = check["disagreeing"]
    assert (research["namespace"], research["agent"]) == ("lab", "research-bot")
    assert research["gap"] == pytest.approx(1 / 1.2 - 1, rel=1e-9)
    assert research["reportedUSD"] == pytest.approx(research["priceListUSD"] * 1.2, rel=1e-9)
    assert research["priceListUSD"] > 0
    assert check["unpriced"] == []


def test_the_threshold_flag_moves_the_line(
    capsys: pytest.CaptureFixture[str], prom_url: str, price_list: Path
) -> None:
    code, out, err = fleet(
        capsys, prom_url, "-o", "json", "--price-list", str(price_list), "--cost-threshold", "20"
    )
    assert code == 0, err
    assert json.loads(out)["costCheck"]["disagreeing"] == []  # 16.7 % of reported is within 20


def test_without_the_price_list_the_house_models_are_unpriced_and_not_compared(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, out, err = fleet(capsys, prom_url, "-o", "json")
    assert code == 0, err
    check = json.loads(out)["costCheck"]
    assert check["disagreeing"] == []
    assert {u["agent"] for u in check["unpriced"]} == {a[0] for a in AGENTS}


def test_by_team_groups_as_the_chargeback_and_the_csv_total_is_the_rows_sum(
    capsys: pytest.CaptureFixture[str], prom_url: str, price_list: Path
) -> None:
    flags = ("--price-list", str(price_list))
    code, out, err = fleet(capsys, prom_url, "-o", "json", "--by", "agent", *flags)
    assert code == 0, err
    per_agent = {r["key"]["agent"]: r for r in json.loads(out)["groups"]["rows"]}
    code, out, err = fleet(capsys, prom_url, "-o", "json", "--by", "team", *flags)
    assert code == 0, err
    rows = {r["key"]["team"]: r for r in json.loads(out)["groups"]["rows"]}
    assert set(rows) == {"care", "science", ""}  # triage-bot has no team label
    science = per_agent["research-bot"]["reportedUSD"] + per_agent["tiny-bot"]["reportedUSD"]
    assert rows["science"]["reportedUSD"] == pytest.approx(science, rel=1e-12)
    assert rows[""]["priceListUSD"] == pytest.approx(per_agent["triage-bot"]["priceListUSD"])

    code, out, err = fleet(capsys, prom_url, "-o", "csv", "--by", "team,model", *flags)
    assert code == 0, err
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["team", "model", "reported_usd", "price_list_usd", "unpriced_models"]
    assert table[-1][0] == "TOTAL"
    for column in (2, 3):
        assert sum(Decimal(r[column]) for r in table[1:-1]) == Decimal(table[-1][column])


def test_the_table_lists_the_disagreeing_agent_with_both_figures(
    capsys: pytest.CaptureFixture[str], prom_url: str, price_list: Path
) -> None:
    code, out, err = fleet(capsys, prom_url, "--price-list", str(price_list), "--by", "team")
    assert code == 0, err
    assert "Spend by team" in out
    words = " ".join(out.split())  # the title wraps at the table's width
    assert "1 agent(s) whose reported cost and tokens x prices differ by more than 5.0%" in words
    line = next(x for x in out.splitlines() if "research-bot" in x and "-16.7%" in x)
    assert line.count("$") == 2  # reported, tokens x prices


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--by", "cost"), "--by 'cost': use team, namespace, agent or model"),
        (("--cost-threshold", "-1"), "--cost-threshold -1 must be a percentage"),
        (("--price-list", "/nonexistent.yaml"), "--price-list /nonexistent.yaml"),
        (("--price-list-name", "x"), "--price-list-name reads the cluster"),
    ],
)
def test_bad_cost_flags_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], says: str
) -> None:
    code, out, err = fleet(capsys, "http://127.0.0.1:9", *extra)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert says in err
