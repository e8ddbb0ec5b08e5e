"""``agentmedic backtest BUDGET.yaml`` against a real Prometheus: when finance's budget
stages would have acted.

Two agents spend every hour from 2026-10-25: checkout-bot $1.00 (namespace pay) and
label-bot $0.50 (namespace ship); checkout-bot's process restarts at 2026-11-03 12:00, so
its counters start again from the hour's amount. The expected crossings are computed here
by hand from the hourly amounts ($1.50 an hour together), in UTC and in Europe/Berlin,
whose November starts at 2026-10-31T23:00Z.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agentmedic.backtest.report import json_schema
from agentmedic.cli.main import main
from agentmedic_sandbox.prometheus import Series, counter, openmetrics_text

pytestmark = pytest.mark.prometheus

HOUR = timedelta(hours=1)
SPEND_FROM = datetime(2026, 10, 25, tzinfo=UTC)
HISTORY_END = datetime(2026, 11, 13, tzinfo=UTC)
RESTART = datetime(2026, 11, 3, 12, tzinfo=UTC)
# checkout-bot's tokens per hour, priced by PRICE_LIST: (80k x $2 + 20k x $0.50 + 10k x $8) / 1M
TOKENS = {"input": 100_000, "cached_input": 20_000, "output": 10_000}
TOKENS_USD_PER_HOUR = 0.25


def _counter(per_hour: float, restart: datetime | None) -> list[tuple[float, float]]:
    out, value, t = [], 0.0, SPEND_FROM
    while t <= HISTORY_END:
        if t > SPEND_FROM:
            value = per_hour if t == restart else value + per_hour
        out.append((t.timestamp(), value))
        t += HOUR
    return out


def history() -> list[Series]:
    checkout = {"agent": "checkout-bot", "namespace": "pay", "model": "house-model"}
    label = {"agent": "label-bot", "namespace": "ship", "model": "house-model"}
    series = [
        counter("agent_cost_usd_total", checkout, _counter(1.0, RESTART)),
        counter("agent_cost_usd_total", label, _counter(0.5, None)),
    ]
    for labels in (checkout, label):
        executions = {**labels, "status": "success"}
        series.append(counter("agent_executions_total", executions, _counter(60.0, None)))
    for kind, amount in TOKENS.items():
        points = _counter(float(amount), RESTART)
        series.append(counter("agent_tokens_total", {**checkout, "type": kind}, points))
    return series


TEAM_BUDGET = """\
apiVersion: agentmedic.io/v1alpha1
kind: ClusterAgentBudget
metadata:
  name: fulfilment
spec:
  namespaces: [pay, ship]
  period: month
  timeZone: {zone}
  limitUSD: 600
  forecastWindow: 6h
  stages:
    - {{name: warn, atPercent: 30, response: notify}}
    - {{name: early, atPercent: 100, onForecast: true, response: notify}}
    - {{name: downgrade, atPercent: 60, response: downgrade}}
    - {{name: stop, atPercent: 100, response: stop}}
"""
CHECKOUT_BUDGET = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentBudget
metadata:
  name: checkout-tokens
  namespace: pay
spec:
  limitUSD: 20
  costSource: priceList
  stages:
    - {name: limit, atPercent: 100, response: stop}
"""
POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {name: reliability, namespace: pay}
spec:
  selector: {matchLabels: {app: checkout}}
  rules:
    - name: low-success
      all: [{metric: success_rate, window: 3h, op: "<", value: 0.8}]
      actions: [{scaleToZero: {}}]
"""
PRICE_LIST = """\
apiVersion: agentmedic.io/v1alpha1
kind: ModelPriceList
metadata: {name: default}
spec:
  includeDefaults: false
  prices:
    - {model: house-model, input: 2.0, cachedInput: 0.5, output: 8.0}
"""


@pytest.fixture(scope="module")
def prom_url(prometheus_module_factory: Any) -> str:
    server = prometheus_module_factory(backfill=openmetrics_text(history()))
    return str(server.url)


def backtest(
    capsys: pytest.CaptureFixture[str], url: str, files: list[Path], *extra: str
) -> tuple[int, str, str]:
    span = ("--from", "2026-10-28", "--to", "2026-11-12", "--step", "1h")
    code = main(["backtest", *map(str, files), "--prometheus", url, *span, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def crossings(document: dict[str, Any], name: str) -> list[tuple[str, str, str]]:
    budget = next(b for b in document["budgets"] if b["name"] == name)
    return [(c["stage"], c["at"], c["trigger"]) for c in budget["crossings"]]


def test_a_berlin_team_budget_across_two_namespaces_crosses_its_stages_on_time(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM_BUDGET.format(zone="Europe/Berlin"))
    code, out, err = backtest(capsys, prom_url, [path], "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    jsonschema.Draft202012Validator(
        json_schema(), format_checker=jsonschema.FormatChecker()
    ).validate(document)
    # October (from Sep 30 22:00Z): $1.50/h from Oct 25 00:00 reaches $180 after 120 h.
    # November (from Oct 31 23:00Z): the step ending then is November's; $180 after 120
    # steps, $360 after 240. The forecast ($1.50/h over 720 h) passes $600 at once.
    assert crossings(document, "fulfilment") == [
        ("warn", "2026-10-30T00:00:00Z", "spend"),
        ("early", "2026-10-31T23:00:00Z", "forecast"),
        ("warn", "2026-11-05T22:00:00Z", "spend"),
        ("downgrade", "2026-11-10T22:00:00Z", "spend"),
    ]
    budget = document["budgets"][0]
    assert budget["agents"] == ["pay/checkout-bot", "ship/label-bot"]
    october, november = budget["periods"]
    assert (october["start"], october["complete"]) == ("2026-09-30T22:00:00Z", True)
    assert october["spendUSD"] == pytest.approx(1.5 * (6 * 24 + 22))  # to Oct 31 22:00Z
    assert (november["start"], november["complete"]) == ("2026-10-31T23:00:00Z", False)
    # 266 steps: the one ending Oct 31 23:00Z to the one ending Nov 12 00:00Z
    assert november["spendUSD"] == pytest.approx(1.5 * 266)
    assert november["stages"] == ["early", "warn", "downgrade"]


def test_the_same_budget_in_utc_crosses_an_hour_later_and_the_restart_loses_nothing(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM_BUDGET.format(zone="UTC"))
    code, out, err = backtest(capsys, prom_url, [path], "-o", "json")
    assert code == 0, err
    november = [c for c in crossings(json.loads(out), "fulfilment") if c[1] >= "2026-11"]
    # Without the reset rule the restart at Nov 3 12:00 would drop checkout-bot's spend.
    assert november == [
        ("early", "2026-11-01T00:00:00Z", "forecast"),
        ("warn", "2026-11-05T23:00:00Z", "spend"),
        ("downgrade", "2026-11-10T23:00:00Z", "spend"),
    ]


def test_a_price_list_budget_prices_the_token_counters(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    budget, prices = tmp_path / "checkout.yaml", tmp_path / "prices.yaml"
    budget.write_text(CHECKOUT_BUDGET)
    prices.write_text(PRICE_LIST)
    code, out, err = backtest(capsys, prom_url, [budget], "--price-list", str(prices), "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    # $0.25 an hour of tokens: $20 after 80 steps of each month (October's from Oct 25
    # 01:00, November's first ends Nov 1 00:00).
    assert crossings(document, "checkout-tokens") == [
        ("limit", "2026-10-28T08:00:00Z", "spend"),
        ("limit", "2026-11-04T07:00:00Z", "spend"),
    ]
    (only,) = document["budgets"]
    assert only["prices"] == f"{prices} (ModelPriceList)"
    assert only["agents"] == ["pay/checkout-bot"]  # label-bot is in another namespace


def test_budgets_and_a_policy_in_two_files_plot_the_stages_and_print_tables(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    team, policy = tmp_path / "team.yaml", tmp_path / "policy.yaml"
    team.write_text(TEAM_BUDGET.format(zone="Europe/Berlin") + "---\n" + CHECKOUT_BUDGET)
    policy.write_text(POLICY)
    code, out, err = backtest(capsys, prom_url, [policy, team], "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    jsonschema.Draft202012Validator(
        json_schema(), format_checker=jsonschema.FormatChecker()
    ).validate(document)
    assert document["policy"]["name"] == "reliability"
    assert document["decisions"] == []  # every execution succeeded
    assert [b["name"] for b in document["budgets"]] == ["fulfilment", "checkout-tokens"]
    both = tmp_path / "both.png"
    code, _, err = backtest(capsys, prom_url, [policy, team], "--plot", str(both))
    assert code == 0, err
    import matplotlib.image

    # one panel for the rule's condition and one per budget: 1.4 + 3 x 3.6 inches at 100 dpi
    assert matplotlib.image.imread(both).shape[:2] == (1220, 1200)
    png = tmp_path / "budgets.png"
    code, out, err = backtest(capsys, prom_url, [team], "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    words = " ".join(out.split())
    assert "ClusterAgentBudget fulfilment: $600.00 per month (Europe/Berlin)" in words
    assert "2026-11-10 22:00" in out
    assert "downgrade (60%)" in out
    page = tmp_path / "budgets.html"
    code, out, err = backtest(capsys, prom_url, [team], "--plot", str(page), "-o", "json")
    assert code == 0, err
    html = page.read_text()
    assert html.count("<svg") == 1
    assert "downgrade 60% downgrade" in html
    # without --price-list the house model has no price: named, not guessed, not dropped
    checkout = next(b for b in json.loads(out)["budgets"] if b["name"] == "checkout-tokens")
    assert checkout["agents"] == ["pay/checkout-bot"]
    assert checkout["crossings"] == []
    assert any(w.startswith("no price for model(s) house-model") for w in checkout["warnings"])


def test_an_agent_budget_without_a_namespace_is_refused_naming_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(CHECKOUT_BUDGET.replace("  namespace: pay\n", ""))
    code, out, err = backtest(capsys, "http://127.0.0.1:9", [path])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "an AgentBudget needs metadata.namespace (or -n NAMESPACE)" in err


def test_a_namespace_selector_is_resolved_in_the_cluster_given(
    capsys: pytest.CaptureFixture[str], prom_url: str, tmp_path: Path
) -> None:
    from agentmedic_sandbox.emulator import ApiEmulator

    path = tmp_path / "team.yaml"
    by_label = "  namespaceSelector: {matchLabels: {team: fulfilment}}\n"
    budget = TEAM_BUDGET.format(zone="Europe/Berlin")
    path.write_text(budget.replace("  namespaces: [pay, ship]\n", by_label))
    code, out, err = backtest(capsys, prom_url, [path])
    assert code == 2
    assert "give --kubeconfig to find its namespaceSelector's Namespaces" in err
    with ApiEmulator() as api:
        for name, team in (("pay", "fulfilment"), ("ship", "fulfilment"), ("lab", "science")):
            api.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"team": team}},
                }
            )
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        code, out, err = backtest(
            capsys, prom_url, [path], "--kubeconfig", str(kubeconfig), "-o", "json"
        )
    assert code == 0, err
    document = json.loads(out)
    (budget,) = document["budgets"]
    assert budget["namespaces"] == ["pay", "ship"]
    assert budget["agents"] == ["pay/checkout-bot", "ship/label-bot"]
    assert not any("namespaceSelector" in w for w in budget["warnings"])
    assert ("downgrade", "2026-11-10T22:00:00Z", "spend") in crossings(document, "fulfilment")
