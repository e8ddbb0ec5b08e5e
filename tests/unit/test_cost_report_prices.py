"""``report cost``'s price sources and teams: a ModelPriceList file, the flags that choose
them, a Namespace's team for series without one."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import pytest

from agentmedic.cli._errors import CliError
from agentmedic.cli._finance import price_book, price_list_from_file
from agentmedic.cli.main import main
from agentmedic.instrument.prices import DEFAULT_PRICES, ModelPrice
from agentmedic.metrics.pricing import PriceBook
from agentmedic.report.cost import CostQuery, Samples, build_report, parse_period

NOV = parse_period("2026-11")
S = NOV.start_ms / 1000

PRICE_LIST = """\
apiVersion: agentmedic.io/v1alpha1
kind: ModelPriceList
metadata:
  name: default
spec:
  includeDefaults: false
  prices:
    - model: house-model
      input: 2.0
      cachedInput: 0.5
      output: 8.0
"""


def _args(**over: object) -> argparse.Namespace:
    base: dict[str, object] = dict(
        price_list=None, prices=None, price_list_name=None, kubeconfig=None, context=None
    )
    base.update(over)
    return argparse.Namespace(**base)


def test_a_model_price_list_file_prices_only_its_models_without_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICE_LIST)
    book = price_list_from_file(path)
    assert book.price("house-model") == ModelPrice(input=2.0, output=8.0, cached_input=0.5)
    assert book.price("gpt-4o") is None
    book2, source = price_book(_args(price_list=path))
    assert list(book2) == ["house-model"]
    assert source == f"{path} (ModelPriceList)"


def test_a_price_list_file_with_defaults_keeps_the_sdk_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICE_LIST.replace("includeDefaults: false", "includeDefaults: true"))
    assert price_list_from_file(path).price("gpt-4o") == DEFAULT_PRICES["gpt-4o"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("kind: AgentPolicy\nspec: {}\n", "expected one ModelPriceList document"),
        (PRICE_LIST.replace("input: 2.0", "input: -1"), "spec.prices.0.input"),
        (PRICE_LIST.replace("output: 8.0", "outpt: 8.0"), "spec.prices.0"),
        (PRICE_LIST + "---\n" + PRICE_LIST, "found 2"),
    ],
)
def test_a_bad_price_list_file_names_the_flag_and_the_field(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(CliError) as caught:
        price_list_from_file(path)
    assert caught.value.message.startswith(f"--price-list {path}")
    assert says in caught.value.message
    assert caught.value.code == 2


def test_without_a_file_or_a_cluster_the_sdk_table_prices() -> None:
    book, source = price_book(_args())
    assert dict(book.prices) == dict(DEFAULT_PRICES)
    assert source.startswith("the SDK's table (as of ")


def test_a_price_list_name_without_a_cluster_is_refused() -> None:
    with pytest.raises(CliError, match="--price-list-name reads the cluster"):
        price_book(_args(price_list_name="finance"))


def test_both_price_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="give --price-list or --prices, not both"):
        price_book(_args(price_list=tmp_path / "a", prices=tmp_path / "b"))


def _team_samples() -> Samples:
    s = Samples(queries=2)
    for agent, ns, team, amount in (
        ("a", "payments", "", 1.0),  # no team label: the Namespace's
        ("b", "payments", "care", 2.0),  # its own label wins
        ("c", "lab", "", 4.0),  # a Namespace without a team label
    ):
        labels = {"agent": agent, "namespace": ns, "model": "m"}
        if team:
            labels["team"] = team
        s.add_points("agent_cost_usd_total", labels, [(S, 0.0), (S + 60, amount)])
        s.add_previous("agent_cost_usd_total", labels, 0.0)
    return s


def test_series_without_a_team_label_take_their_namespaces_team() -> None:
    q = CostQuery(period=NOV, by=("team",), namespace_teams={"payments": "pay"})
    report = build_report(_team_samples(), q, prices=PriceBook.default())
    assert {r.key: r.reported_usd for r in report.groups} == {
        ("pay",): Decimal("1.000000"),
        ("care",): Decimal("2.000000"),
        ("",): Decimal("4.000000"),
    }
    assert report.total_reported_usd == Decimal("7.000000")


def test_the_price_list_source_and_the_old_spelling_are_one_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ModelPriceList\nspec: {prices: [{model: m, input: x, output: 1}]}\n")
    for flags in (("--cost-source", "priceList"), ("--source", "tokens")):
        prom = ("--prometheus", "http://127.0.0.1:9", "--period", "2026-11")
        code = main(["report", "cost", *prom, *flags, "--price-list", str(bad)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1
        assert f"--price-list {bad}: spec.prices.0.input" in err
