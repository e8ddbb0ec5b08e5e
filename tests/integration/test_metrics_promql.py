"""Agent names are data: whatever they contain, the built matcher selects exactly them.

Property test against a real Prometheus: each example pushes series for a few arbitrary
names (quotes, backslashes, regex metacharacters, control characters, unicode) and for
decoys that a broken escaping would also select (prefixes, suffixes, ``.*``, case
variants), then queries with :func:`agent_matcher` and checks the exact set that comes back.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import BackendConfig, PrometheusBackend, build_query, fetch_samples
from agentmedic.metrics.promql import agent_matcher, quote_string
from agentmedic_sandbox.prometheus import PrometheusServer, Series

pytestmark = pytest.mark.prometheus

TRICKY = list("\\\"'`.*+?()[]{}|^$-,=~!#\n\r\t\x00 aAß€😀")
names = st.one_of(
    st.text(st.sampled_from(TRICKY), min_size=1, max_size=8),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=16),
)
_metric_ids = itertools.count()


@pytest.fixture(scope="module")
def prom(prometheus_module_factory) -> PrometheusServer:
    return prometheus_module_factory(remote_write_receiver=True)


def decoys_of(wanted: list[str]) -> set[str]:
    out = {".*", ".+", "", " "}
    for n in wanted:
        out |= {n + "x", "x" + n, n[:-1], n[1:], n.upper(), n.lower(), n * 2, f"{n}|{n}"}
        out |= {n.replace("\\", ""), n.replace('"', "")}
    return {d for d in out if d and d not in wanted}


def push(prom: PrometheusServer, metric: str, agents: set[str]) -> None:
    now = time.time()
    prom.remote_write(Series(metric, {"agent": a}, [(now, 1.0)]) for a in agents)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    wanted=st.lists(names, min_size=1, max_size=4, unique=True), extra=st.lists(names, max_size=3)
)
async def test_agent_matcher_selects_exactly_the_named_agents(prom, wanted, extra):
    metric = f"prop_case_{next(_metric_ids)}"
    others = (decoys_of(wanted) | set(extra)) - set(wanted)
    push(prom, metric, set(wanted) | others)

    query = f"sum by (agent) ({metric}{{{agent_matcher('agent', wanted)}}})"
    async with PrometheusBackend(BackendConfig(url=prom.url)) as backend:
        result = await backend.query(query, datetime.now(UTC) + timedelta(seconds=1))

    assert sorted(s.labels["agent"] for s in result.samples) == sorted(wanted), query


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names)
async def test_a_catalog_query_for_any_agent_name_parses_and_finds_that_agent(prom, name):
    ts = time.time()
    labels = {"agent": name, "status": "success", "case": str(next(_metric_ids))}
    # Two samples a minute apart so that increase() has something to work on.
    prom.remote_write([Series("agent_executions_total", labels, [(ts - 60, 0.0), (ts, 6.0)])])
    key = SeriesKey("executions", None, timedelta(minutes=5))
    agent = AgentId("default", name)
    async with PrometheusBackend(BackendConfig(url=prom.url)) as backend:
        table, stats = await fetch_samples(backend, {key: [agent]}, datetime.fromtimestamp(ts, UTC))
    assert not stats.errors, build_query(key, [agent])
    assert table[agent][key] is not None


def test_quote_string_round_trips_through_promql_label_values(prom):
    # A label value written with quote_string comes back byte for byte from the server.
    value = 'a"b\\c\nd\te\x00f\u2028g😀'
    push(prom, "roundtrip", {value})
    body = httpx.get(
        f"{prom.url}/api/v1/series", params={"match[]": f"roundtrip{{agent={quote_string(value)}}}"}
    ).json()
    assert [s["agent"] for s in body["data"]] == [value]


async def test_range_answers_with_nan_and_infinities_from_a_real_prometheus(prom, monkeypatch):
    """Go writes +Inf as "+Inf", which the fast range decoder refuses; such an answer must
    still decode (on the general path), with each value where it was."""
    from agentmedic.metrics import answers as module

    fast: list[bool] = []
    decode, exact = module.decode_range, module.decode_exact
    taken: list[str] = []

    def spy_exact(content: bytes):
        taken.append("exact")
        return exact(content)

    def spy(content: bytes):
        taken.clear()
        answer = decode(content)
        fast.append(not taken)
        return answer

    monkeypatch.setattr(module, "decode_exact", spy_exact)
    monkeypatch.setattr(module, "decode_range", spy)
    end = datetime.now(UTC).replace(microsecond=0)
    start, step = end - timedelta(minutes=2), timedelta(minutes=1)
    query = (
        'label_replace(vector(1) / 0, "v", "pos", "", "") or '
        'label_replace(-vector(1) / 0, "v", "neg", "", "") or '
        'label_replace(vector(0) / 0, "v", "nan", "", "") or '
        'label_replace(vector(0.25), "v", "quarter", "", "")'
    )
    async with PrometheusBackend(BackendConfig(url=prom.url)) as backend:
        result = await backend.query_range(query, start, end, step)
        finite = await backend.query_range("vector(0.25)", start, end, step)  # the fast path
    got = {s.labels["v"]: [v for _, v in s.points] for s in result.series}
    assert got["pos"] == [float("inf")] * 3
    assert got["neg"] == [float("-inf")] * 3
    assert len(got["nan"]) == 3
    assert all(v != v for v in got["nan"])
    assert got["quarter"] == [0.25] * 3
    assert [v for _, v in finite.series[0].points] == [0.25] * 3
    assert fast == [False, True]
    assert [t for t, _ in finite.series[0].points] == [
        (start + k * step).timestamp() for k in range(3)
    ]
