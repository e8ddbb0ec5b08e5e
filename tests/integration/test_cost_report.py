"""``agentmedic report cost`` against a real Prometheus holding two months of counters.

The history is generated from *spend events*: each sample adds a known amount to its
series (or, after a restart, starts it again from that amount). The expected spend of a
period is the sum of the amounts of the samples inside it, computed here without the
report's code; the report must recover it from the counter values, exactly. Amounts are
multiples of 2**-20 dollar, so float sums are exact and the expected figures are exact
decimals.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agentmedic.cli.main import main
from agentmedic_sandbox.prometheus import Series, counter, openmetrics_text

pytestmark = pytest.mark.prometheus

# Hourly: promtool reads the whole file once per 2h block, so the file is kept small.
STEP_S = 3600
HISTORY_START = datetime(2026, 9, 30, 20, tzinfo=UTC)
HISTORY_END = datetime(2026, 12, 2, tzinfo=UTC)
PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60), "gpt-4.1": (2.00, 8.00)}
LONG_TEAM = "platform-engineering-and-developer-experience-europe-central-region"
QUANTUM = Decimal("0.000001")
UNIT = 2**20
"""Amounts are whole numbers of 1/UNIT dollar: binary fractions, exact in floats."""


def ts(*args: int, tz: Any = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp())  # type: ignore[misc]


@dataclass
class Plan:
    """One series-pair (cost and tokens) of an agent's pod, and the amounts per sample."""

    agent: str
    model: str
    namespace: str
    team: str | None
    pod: str
    first: int = ts(2026, 9, 30, 20)
    resets: set[int] = field(default_factory=set)
    overprice: float = 1.0
    """Reported cost = tokens x price x this (a planted disagreement when not 1)."""
    big: dict[int, int] = field(default_factory=dict)
    """Timestamp -> amount in 1/UNIT dollar, for the boundary samples."""

    def labels(self) -> dict[str, str]:
        out = {"agent": self.agent, "model": self.model, "namespace": self.namespace}
        out["pod"] = self.pod
        if self.team is not None:
            out["team"] = self.team
        return out


PLANS = [
    Plan(
        "support-bot",
        "gpt-4o",
        "agents",
        "care",
        "support-1",
        big={ts(2026, 10, 31, 23, 59, 59): UNIT * 1000, ts(2026, 12, 1): UNIT * 2000},
    ),
    # A second pod born mid-November: its first value is spend too.
    Plan("support-bot", "gpt-4o", "agents", "care", "support-2", first=ts(2026, 11, 10, 7, 20)),
    # Restarted mid-month and at a month boundary.
    Plan(
        "triage-bot",
        "gpt-4o-mini",
        "agents",
        "care",
        "triage-1",
        resets={ts(2026, 11, 15, 12), ts(2026, 12, 1)},
        big={ts(2026, 10, 31, 23, 30): UNIT * 300},  # November in Berlin, October in UTC
    ),
    Plan("research-bot", "gpt-4.1", "research", "science", "research-1", overprice=1.2),
    Plan("orphan-bot", "gpt-4o-mini", "agents", None, "orphan-1"),
    Plan("tiny-bot", "gpt-4o-mini", "platform", LONG_TEAM, "tiny-1"),
]


@dataclass
class Point:
    at: int
    cost_units: int  # 2**-20 USD
    input: int
    output: int


def grid() -> list[int]:
    start, end = int(HISTORY_START.timestamp()), int(HISTORY_END.timestamp())
    return list(range(start, end, STEP_S))


def events(plan: Plan, rng: random.Random) -> list[Point]:
    times = sorted({t for t in grid() if t >= plan.first} | set(plan.big))
    out = []
    pin, pout = PRICES[plan.model]
    for t in times:
        tokens_in, tokens_out = rng.randint(0, 4000), rng.randint(0, 800)
        dollars = (tokens_in * pin + tokens_out * pout) / 1e6 * plan.overprice
        units = plan.big.get(t, round(dollars * UNIT))
        out.append(Point(t, units, tokens_in, tokens_out))
    return out


@dataclass
class History:
    series: list[Series]
    points: dict[str, list[Point]]  # by pod


def build_history() -> History:
    rng = random.Random(1119)
    series: list[Series] = []
    points: dict[str, list[Point]] = {}
    for plan in PLANS:
        pts = events(plan, rng)
        points[plan.pod] = pts
        cost, tin, tout = 0, 0, 0
        cost_pts, in_pts, out_pts = [], [], []
        for p in pts:
            if p.at in plan.resets:
                cost, tin, tout = 0, 0, 0
            cost, tin, tout = cost + p.cost_units, tin + p.input, tout + p.output
            cost_pts.append((float(p.at), cost / UNIT))
            in_pts.append((float(p.at), float(tin)))
            out_pts.append((float(p.at), float(tout)))
        labels = plan.labels()
        series.append(counter("agent_cost_usd_total", labels, cost_pts))
        series.append(counter("agent_tokens_total", {**labels, "type": "input"}, in_pts))
        series.append(counter("agent_tokens_total", {**labels, "type": "output"}, out_pts))
    # The hand-priced agent: tokens only, born on Nov 5, with a cached part of its input.
    pricing = {"agent": "pricing-bot", "model": "house-model", "namespace": "lab", "team": "lab"}
    for kind, values in (
        ("input", (1_000_000, 3_000_000, 4_500_000)),
        ("cached_input", (0, 500_000, 1_000_000)),
        ("output", (100_000, 300_000, 400_000)),
    ):
        days = (ts(2026, 11, 5, 10), ts(2026, 11, 6, 10), ts(2026, 11, 7, 10))
        pts2 = [(float(d), float(v)) for d, v in zip(days, values, strict=True)]
        series.append(counter("agent_tokens_total", {**pricing, "type": kind}, pts2))
    return History(series, points)


HISTORY = build_history()


def expected(start: datetime, end: datetime, key: str = "team") -> dict[str, Decimal]:
    """Reported spend per group (``key``: ``team``, ``agent``, ``team/model``...): the
    amounts of the samples in [start, end)."""
    lo, hi = start.timestamp(), end.timestamp()
    units: dict[str, int] = {}
    for plan in PLANS:
        parts = {"team": plan.team or "", "agent": plan.agent, "model": plan.model}
        group = "/".join(parts[k] for k in key.split("/"))
        got = sum(p.cost_units for p in HISTORY.points[plan.pod] if lo <= p.at < hi)
        units[group] = units.get(group, 0) + got
    return {
        g: (Decimal(u) / UNIT).quantize(QUANTUM, rounding=ROUND_HALF_EVEN) for g, u in units.items()
    }


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory: Any) -> str:
    server = prometheus_module_factory(backfill=openmetrics_text(HISTORY.series))
    return str(server.url)


def report_cli(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    code = main(["report", "cost", "--prometheus", url, "--no-progress", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def report_json(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> dict[str, Any]:
    code, out, err = report_cli(capsys, url, "-o", "json", *extra)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def groups(data: dict[str, Any], field_name: str = "reportedUSD") -> dict[str, Decimal]:
    return {
        "/".join(g["key"].values()): Decimal(g[field_name])
        for g in data["groups"]
        if g[field_name] is not None
    }


def test_november_in_utc_counts_only_samples_inside_the_month_with_resets_and_new_pods(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    data = report_json(capsys, prom_url, "--period", "2026-11")
    want = expected(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert groups(data) == want
    assert data["period"]["start"] == "2026-11-01T00:00:00+00:00"
    assert data["period"]["end"] == "2026-12-01T00:00:00+00:00"
    # The $1000 sample a second before November and the $2000 one at December's first
    # instant are outside; a reset mid-month and the new pod were seen.
    assert want["care"] < Decimal(1000)
    assert data["resets"] == 1
    assert data["bornSeries"] == 1
    total = Decimal(data["total"]["reportedUSD"])
    assert total == sum(groups(data).values())


def test_a_berlin_month_starts_at_23_00_utc_and_takes_the_last_hour_of_october(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    data = report_json(capsys, prom_url, "--period", "2026-11", "--time-zone", "Europe/Berlin")
    start, end = datetime(2026, 11, 1, tzinfo=berlin), datetime(2026, 12, 1, tzinfo=berlin)
    assert data["period"]["start"] == "2026-11-01T00:00:00+01:00"
    assert start.astimezone(UTC) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert groups(data) == expected(start, end)
    utc = expected(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert groups(data)["care"] != utc["care"]  # the $300 at 23:30 UTC on Oct 31 is in


def test_a_new_york_november_spans_the_dst_change_and_is_one_hour_longer(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    ny = ZoneInfo("America/New_York")
    data = report_json(
        capsys, prom_url, "--period", "2026-11", "--tz", "America/New_York", "--by", "agent"
    )
    assert data["period"]["start"] == "2026-11-01T00:00:00-04:00"
    assert data["period"]["end"] == "2026-12-01T00:00:00-05:00"
    start, end = datetime(2026, 11, 1, tzinfo=ny), datetime(2026, 12, 1, tzinfo=ny)
    assert (end.timestamp() - start.timestamp()) / 3600 == 30 * 24 + 1
    assert groups(data) == expected(start, end, key="agent")


def test_october_plus_november_equals_the_two_months_together(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    oct_ = report_json(capsys, prom_url, "--period", "2026-10", "--by", "agent")
    nov = report_json(capsys, prom_url, "--period", "2026-11", "--by", "agent")
    both = report_json(
        capsys, prom_url, "--from", "2026-10-01", "--to", "2026-12-01", "--by", "agent"
    )
    a, b, c = (Decimal(d["total"]["reportedUSD"]) for d in (oct_, nov, both))
    assert a > 0
    assert b > 0
    # Each report rounds each group once, to half a millionth of a dollar at most.
    rounding = Decimal("0.0000005") * sum(len(d["groups"]) for d in (oct_, nov, both))
    assert abs(a + b - c) <= rounding
    exact = expected(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "agent")
    assert groups(both) == exact
    for agent, amount in groups(both).items():
        parts = groups(oct_).get(agent, Decimal(0)) + groups(nov).get(agent, Decimal(0))
        assert abs(parts - amount) <= Decimal("0.0000015")


def price_file(tmp_path: Path) -> Path:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "asOf: 2026-11-01\n"
        "prices:\n"
        "  house-model: {input: 2.00, cached_input: 0.50, output: 8.00}\n"
    )
    return prices


def test_tokens_times_a_price_file_equals_the_hand_computed_figure(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    prices = price_file(tmp_path)
    data = report_json(
        capsys,
        prom_url,
        "--period",
        "2026-11",
        "--source",
        "tokens",
        "--prices",
        str(prices),
        "--by",
        "agent",
    )
    row = next(g for g in data["groups"] if g["key"]["agent"] == "pricing-bot")
    # Born on Nov 5 at 1M input (all counted), 4.5M input of which 1M cached, 0.4M output:
    # 3.5M x $2 + 1M x $0.50 + 0.4M x $8 = $7 + $0.50 + $3.20.
    assert row["tokens"] == {"input": 4_500_000, "output": 400_000, "cached_input": 1_000_000}
    assert row["tokensUSD"] == "10.700000"
    assert data["prices"].startswith(str(prices))
    assert data["total"]["tokensUSD"] == str(sum(groups(data, "tokensUSD").values()))


def test_source_both_flags_the_team_whose_reported_cost_is_20_percent_above_its_tokens(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    data = report_json(
        capsys,
        prom_url,
        "--period",
        "2026-11",
        "--source",
        "both",
        "--prices",
        str(price_file(tmp_path)),
    )
    rows = {g["key"]["team"]: g for g in data["groups"]}
    science = rows["science"]
    assert science["flagged"] is True
    assert science["disagreement"] == pytest.approx(1 / 1.2 - 1, abs=0.01)
    assert rows["care"]["flagged"] is False
    assert abs(rows["care"]["disagreement"]) < 0.01
    # The tokens-only agent has nothing reported: flagged, gap not a number.
    assert rows["lab"]["flagged"] is True
    assert rows["lab"]["disagreement"] is None
    assert rows["lab"]["reportedUSD"] == "0.000000"
    assert rows["lab"]["tokensUSD"] == "10.700000"
    assert data["threshold"] == 0.05
    assert data["bornSeries"] == 6  # the new pod's three series and pricing-bot's three
    assert not any("price" in w for w in data["warnings"])


def test_tokens_of_a_model_without_a_price_are_named_not_guessed(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    data = report_json(capsys, prom_url, "--period", "2026-11", "--source", "tokens")
    lab = next(g for g in data["groups"] if g["key"]["team"] == "lab")
    assert lab["tokensUSD"] == "0.000000"
    assert lab["unpricedModels"] == ["house-model"]
    assert lab["disagreement"] is None
    assert any("house-model" in w for w in data["warnings"])


def test_csv_has_a_header_a_row_per_group_and_a_total_row_that_adds_up(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, out, err = report_cli(
        capsys, prom_url, "--period", "2026-11", "--by", "team,model", "-o", "csv"
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["team", "model", "reported_usd"]
    assert rows[-1][0] == "TOTAL"
    body = rows[1:-1]
    assert ["care", "gpt-4o-mini"] in [r[:2] for r in body]
    assert Decimal(rows[-1][2]) == sum(Decimal(r[2]) for r in body)
    nov = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    want = expected(*nov, key="team/model")
    assert {f"{r[0]}/{r[1]}": Decimal(r[2]) for r in body} == want


def test_the_table_off_a_terminal_keeps_every_cell_whole_and_ends_with_the_total(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, out, err = report_cli(capsys, prom_url, "--period", "2026-11", "--source", "both")
    assert code == 0, err
    assert LONG_TEAM in out
    assert "(none)" in out  # the agent without a team label
    total_line = next(line for line in out.splitlines() if "TOTAL" in line)
    data = report_json(capsys, prom_url, "--period", "2026-11", "--source", "both")
    assert f"${Decimal(data['total']['reportedUSD']):,f}" in total_line
    assert "1 group(s) where" in out  # science; lab's model has no price here
    assert "unpriced" in out
    assert "no price for model(s) house-model" in out


def test_an_unreachable_backend_is_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = report_cli(
        capsys, "http://127.0.0.1:9", "--period", "2026-11", "--query-timeout-seconds", "1"
    )
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("agentmedic report cost:")


def test_a_month_without_series_is_exit_1_naming_the_label(
    capsys: pytest.CaptureFixture[str], prom_url: str
) -> None:
    code, _, err = report_cli(capsys, prom_url, "--period", "2025-03")
    assert code == 1
    assert "'agent' label" in err
    assert "2025-03-01T00:00:00+00:00" in err


MODEL_PRICE_LIST = """\
apiVersion: agentmedic.io/v1alpha1
kind: ModelPriceList
metadata:
  name: default
spec:
  prices:
    - model: house-model
      input: 2.00
      cachedInput: 0.50
      output: 8.00
"""


def test_cost_source_price_list_prices_tokens_with_a_model_price_list_file_to_the_cent(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(MODEL_PRICE_LIST)
    flags = ("--period", "2026-11", "--cost-source", "priceList", "--price-list", str(path))
    data = report_json(capsys, prom_url, *flags, "--by", "agent")
    rows = {g["key"]["agent"]: g for g in data["groups"]}
    # 3.5M uncached input x $2 + 1M cached x $0.50 + 0.4M output x $8 (see build_history)
    assert rows["pricing-bot"]["tokensUSD"] == "10.700000"
    # The others' models are priced by the SDK's table (includeDefaults): tokens x price
    # within the half-millionth each group is rounded to, per sample and series.
    nov = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    lo, hi = (t.timestamp() for t in nov)
    checked = []
    for plan in PLANS:
        if plan.overprice != 1.0 or plan.big:
            continue  # planted disagreements and hand-set boundary amounts
        pin, pout = PRICES[plan.model]
        pts = [p for p in HISTORY.points[plan.pod] if lo <= p.at < hi]
        want = sum(p.input * pin + p.output * pout for p in pts) / 1e6
        if sum(1 for other in PLANS if other.agent == plan.agent) == 1:
            assert Decimal(rows[plan.agent]["tokensUSD"]) == pytest.approx(
                Decimal(repr(want)), abs=Decimal("0.000001")
            )
            checked.append(plan.agent)
    assert checked == ["orphan-bot", "tiny-bot"]
    assert data["prices"] == f"{path} (ModelPriceList)"
    assert data["source"] == "tokens"
    assert Decimal(data["total"]["tokensUSD"]) == sum(groups(data, "tokensUSD").values())


def test_the_clusters_price_list_and_namespace_teams_are_read_with_a_kubeconfig(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    import yaml

    from agentmedic_sandbox.emulator import ApiEmulator

    with ApiEmulator() as api:
        api.apply_crd()
        api.apply(yaml.safe_load(MODEL_PRICE_LIST))
        # orphan-bot's series carry no team label: its namespace's label names the team;
        # the other agents' own labels win over their namespace's.
        for name, team in (("agents", "care"), ("research", "not-science"), ("lab", "lab")):
            api.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"team": team}},
                }
            )
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        data = report_json(
            capsys,
            prom_url,
            "--period",
            "2026-11",
            "--cost-source",
            "both",
            "--kubeconfig",
            str(kubeconfig),
        )
    nov = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    want = expected(*nov)
    want["care"] += want.pop("")  # orphan-bot, in namespace agents
    want["lab"] = Decimal("0.000000")  # pricing-bot reports no cost, only tokens
    assert groups(data) == want
    assert groups(data, "tokensUSD")["lab"] == Decimal("10.700000")
    assert data["prices"] == "ModelPriceList 'default' of the cluster"


def test_a_price_list_name_the_cluster_does_not_have_is_exit_2_naming_it(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    from agentmedic_sandbox.emulator import ApiEmulator

    with ApiEmulator() as api:
        api.apply_crd()
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        code, out, err = report_cli(
            capsys,
            prom_url,
            "--period",
            "2026-11",
            "--cost-source",
            "priceList",
            "--kubeconfig",
            str(kubeconfig),
            "--price-list-name",
            "finance-2027",
        )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "--price-list-name finance-2027: no ModelPriceList 'finance-2027'" in err
