"""The fleet's spend by group and the cost-source check (pure parts and rendering)."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta

import pytest

from agentmedic.engine.series import AgentId
from agentmedic.instrument.prices import ModelPrice
from agentmedic.metrics.pricing import PriceBook
from agentmedic.report.fleet_cost import FleetCostData, FleetCostQuery, analyse_costs
from agentmedic.report.fleet_cost_render import groups_csv, with_costs

AT = datetime(2026, 11, 20, tzinfo=UTC)
BOOK = PriceBook(
    {
        "big": ModelPrice(input=10.0, output=30.0, cached_input=1.0),
        "small": ModelPrice(input=1.0, output=2.0),
    }
)


def _labels(
    agent: str, ns: str, model: str, team: str | None = None
) -> tuple[tuple[str, str], ...]:
    out = {"agent": agent, "namespace": ns, "model": model}
    if team:
        out["team"] = team
    return tuple(sorted(out.items()))


def _data() -> FleetCostData:
    d = FleetCostData(queries=2)
    # a: two models, agrees with the prices exactly
    a_big, a_small = (
        _labels("a", "pay", "big", "payments"),
        _labels("a", "pay", "small", "payments"),
    )
    d.reported[a_big] = (1e6 * 10 + 2e5 * 30 - 5e5 * 9) / 1e6  # 0.5M of the input cached
    d.tokens[(a_big, "input")] = 1e6
    d.tokens[(a_big, "cached_input")] = 5e5
    d.tokens[(a_big, "output")] = 2e5
    d.reported[a_small] = 1.0
    d.tokens[(a_small, "input")] = 1e6
    # b: reports 10 % more than its tokens cost; no team label, namespace pay
    b = _labels("b", "pay", "small")
    d.reported[b] = 2.2
    d.tokens[(b, "input")] = 2e6
    # c: tokens only; d: an unpriced model; e: reported only
    d.tokens[(_labels("c", "lab", "small", "science"), "output")] = 5e5
    d.tokens[(_labels("d", "lab", "house", "science"), "input")] = 1e6
    d.reported[_labels("d", "lab", "house", "science")] = 3.0
    d.reported[_labels("e", "lab", "small", "science")] = 0.5
    return d


def _query(*by: str, teams: dict[str, str] | None = None) -> FleetCostQuery:
    return FleetCostQuery(
        at=AT,
        window=timedelta(days=7),
        by=by,  # type: ignore[arg-type]
        namespace_teams=teams or {},
    )


def test_the_two_queries_group_by_agent_namespace_model_and_team_for_the_whole_fleet() -> None:
    q = FleetCostQuery(at=AT, window=timedelta(days=7), namespace="pay", team_label="cost_centre")
    texts = q.queries()
    assert texts["reported"] == (
        "sum by (agent, namespace, model, cost_centre) "
        '(increase(agent_cost_usd_total{agent!="", namespace="pay"}[7d]))'
    )
    assert texts["tokens"].startswith("sum by (agent, namespace, model, cost_centre, type) ")
    assert 'type=~"cached_input|input|output"' in texts["tokens"]


def test_a_bad_team_label_is_refused_naming_the_flag() -> None:
    q = FleetCostQuery(at=AT, window=timedelta(days=1), team_label="team-name")
    with pytest.raises(ValueError, match="--team-label 'team-name'"):
        q.queries()


def test_agents_whose_sources_disagree_beyond_the_threshold_are_listed_with_both_figures() -> None:
    costs = analyse_costs(
        _data(), _query("agent"), prices=BOOK, prices_source="test", threshold=0.05
    )
    by_agent = {a.agent.name: a for a in costs.agents}
    assert by_agent["a"].reported_usd == pytest.approx(by_agent["a"].priced_usd)
    assert not by_agent["a"].flagged
    assert by_agent["b"].gap == pytest.approx(2.0 / 2.2 - 1)
    assert by_agent["b"].flagged
    assert math.isinf(by_agent["c"].gap or 0.0)  # tokens, no reported cost
    assert by_agent["c"].flagged
    assert by_agent["d"].gap is None  # unpriced: no comparison
    assert not by_agent["d"].flagged
    assert by_agent["d"].unpriced_models == ("house",)
    assert by_agent["e"].gap == -1.0  # cost reported, no tokens at all
    assert {a.agent for a in costs.disagreeing} == {
        AgentId("pay", "b"),
        AgentId("lab", "c"),
        AgentId("lab", "e"),
    }
    # a wider threshold lets b's 9 % through
    wide = analyse_costs(_data(), _query("agent"), prices=BOOK, prices_source="t", threshold=0.1)
    assert AgentId("pay", "b") not in {a.agent for a in wide.disagreeing}


def test_grouping_by_team_uses_the_namespaces_team_for_series_without_one() -> None:
    costs = analyse_costs(
        _data(), _query("team", teams={"pay": "payments"}), prices=BOOK, prices_source="t"
    )
    rows = {g.key: g for g in costs.groups}
    assert set(rows) == {("payments",), ("science",)}
    assert rows[("payments",)].reported_usd == pytest.approx(10.0 + 6.0 - 4.5 + 1.0 + 2.2)
    assert rows[("science",)].unpriced_models == ("house",)
    assert costs.total_reported_usd == pytest.approx(sum(g.reported_usd for g in costs.groups))
    # without the cluster's teams, b has no team
    plain = analyse_costs(_data(), _query("team"), prices=BOOK, prices_source="t")
    assert ("",) in {g.key for g in plain.groups}


def test_groups_csv_rounds_rows_to_cents_and_the_total_is_their_sum() -> None:
    costs = analyse_costs(_data(), _query("team", "model"), prices=BOOK, prices_source="t")
    rows = list(csv.reader(io.StringIO(groups_csv(costs))))
    assert rows[0] == ["team", "model", "reported_usd", "price_list_usd", "unpriced_models"]
    assert rows[-1][0] == "TOTAL"
    body = rows[1:-1]
    assert len(body) == len(costs.groups)
    for column in (2, 3):
        assert sum(float(r[column]) * 100 for r in body) == pytest.approx(
            float(rows[-1][column]) * 100
        )
        assert all(len(r[column].split(".")[1]) == 2 for r in [*body, rows[-1]])


def test_the_json_carries_the_check_and_the_groups_only_when_grouped() -> None:
    costs = analyse_costs(_data(), _query("namespace"), prices=BOOK, prices_source="src")
    plain = with_costs({"schema": "x"}, costs, grouped=False)
    assert "groups" not in plain
    check = plain["costCheck"]
    assert check["prices"] == "src"
    assert [d["agent"] for d in check["disagreeing"]] == ["c", "e", "b"]
    c = check["disagreeing"][0]
    assert c["gap"] is None  # inf is not JSON
    assert c["reportedUSD"] == 0.0
    assert c["priceListUSD"] == pytest.approx(1.0)
    assert check["unpriced"] == [{"namespace": "lab", "agent": "d", "models": ["house"]}]
    grouped = with_costs({"schema": "x"}, costs, grouped=True)
    assert {tuple(r["key"].values()) for r in grouped["groups"]["rows"]} == {("pay",), ("lab",)}
    assert with_costs({"schema": "x"}, None, grouped=True) == {"schema": "x", "costCheck": None}
