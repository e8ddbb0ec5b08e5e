"""The by-agent fast path of PrometheusBackend gives exactly what the general path gives.

``fetch_samples`` reads instant answers through ``PrometheusBackend.query_agents`` straight
into per-namespace maps of agent names. Each answer below is fetched twice, once through the
backend itself and once through a wrapper that offers only ``query`` (the general path), and
the tables, the NaN agents, the warnings and every error (class, reason, message) must be the
same: the fast path never changes a fault, a message or the evidence rule.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    BackendConfig,
    FetchStats,
    MetricsBackend,
    PrometheusBackend,
    QueryResult,
    RangeResult,
    SampleTable,
    UnavailableReason,
    fetch_samples,
)
from agentmedic.metrics.answers import decode_agent_vector

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = SeriesKey("error_rate", None, timedelta(minutes=5))
RAW = SeriesKey(None, "sum by (agent) (x{ {{agents}} })", timedelta(minutes=5))
AGENTS = {AgentId("prod", "a"), AgentId("prod", "b"), AgentId("dev", "b"), AgentId("prod", "c")}


def sample(value: Any, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1714564800, value]}


def vector(*items: Any, **extra: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(items)}, **extra}


ANSWERS: dict[str, Any] = {
    "plain numbers": vector(
        sample("0.25", agent="a", namespace="prod"),
        sample("1e-3", agent="b", namespace="prod"),
        sample("0", agent="b", namespace="dev"),
    ),
    "NaN is held, not absent": vector(
        sample("NaN", agent="a", namespace="prod"), sample("2", agent="c", namespace="prod")
    ),
    "+Inf fails the key": vector(sample("+Inf", agent="a", namespace="prod")),
    "-Inf fails the key": vector(sample("-Inf", agent="c", namespace="prod")),
    "a sample of another namespace is not taken": vector(
        sample("5", agent="a", namespace="staging")
    ),
    "no namespace label, unique name": vector(sample("3", agent="a")),
    "no namespace label, a name in two namespaces is ambiguous": vector(sample("3", agent="b")),
    "the namespace's own sample wins over a bare one": vector(
        sample("3", agent="a"), sample("4", agent="a", namespace="prod")
    ),
    "a series without the agent label": vector(sample("1", namespace="prod")),
    "two series for one agent": vector(
        sample("1", agent="a", namespace="prod"), sample("2", agent="a", namespace="prod")
    ),
    "another label besides agent and namespace": vector(
        sample("1", agent="a", namespace="prod", model="m")
    ),
    "a native histogram is skipped": vector(
        {"metric": {"agent": "a", "namespace": "prod"}, "histogram": [1, {"count": "3"}]},
        sample("1", agent="c", namespace="prod"),
    ),
    "a sample with neither value nor histogram": vector({"metric": {"agent": "a"}}),
    "a null label value": vector(sample("1", agent="a", namespace=None)),  # type: ignore[arg-type]
    "the value is JSON true": vector(sample(True, agent="a", namespace="prod")),
    "the value is a word": vector(sample("abc", agent="a", namespace="prod")),
    "the pair has three elements": vector(
        {"metric": {"agent": "a", "namespace": "prod"}, "value": [1, "2", 3]}
    ),
    "a scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}},
    "a matrix": {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {"agent": "a"}, "values": []}]},
    },
    "status error with HTTP 200": {"status": "error", "errorType": "x", "error": "nope"},
    "warnings are kept": vector(sample("1", agent="a", namespace="prod"), warnings=["careful"]),
    "not JSON": "<html>",
    "an empty vector": vector(),
}


class GeneralOnly:
    """The same backend seen through the MetricsBackend protocol alone."""

    def __init__(self, backend: PrometheusBackend) -> None:
        self.backend = backend

    async def query(self, promql: str, at: datetime) -> QueryResult:
        return await self.backend.query(promql, at)

    async def query_range(self, *args: Any) -> RangeResult:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        await self.backend.aclose()


def backend_answering(answer: Any) -> PrometheusBackend:
    raw = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=raw))
    return PrometheusBackend(BackendConfig(url="http://prom.example:9090"), transport=transport)


def comparable(table: SampleTable, stats: FetchStats) -> dict[str, Any]:
    return {
        "table": {str(a): {str(k): v for k, v in row.items()} for a, row in table.items()},
        "undefined": {str(k): sorted(map(str, v)) for k, v in stats.undefined.items()},
        "warnings": stats.warnings,
        "errors": {
            str(k): (type(e).__name__, getattr(e, "reason", None), str(e))
            for k, e in stats.errors.items()
        },
    }


async def both_ways(answer: Any, key: SeriesKey) -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for general in (False, True):
        backend = backend_answering(answer)
        used: MetricsBackend = GeneralOnly(backend) if general else backend
        try:
            table, stats = await fetch_samples(used, {key: AGENTS}, AT)
            out.append(comparable(table, stats))
        except Exception as exc:  # the whole fetch failing must fail alike too
            out.append({"raised": (type(exc).__name__, str(exc))})
        finally:
            await backend.aclose()
    return out[0], out[1]


@pytest.mark.parametrize("name", list(ANSWERS))
@pytest.mark.parametrize("key", [KEY, RAW], ids=["catalog", "raw"])
async def test_the_fast_path_reads_every_answer_as_the_general_path_does(
    name: str, key: SeriesKey
) -> None:
    fast, general = await both_ways(ANSWERS[name], key)
    assert fast == general


async def test_an_infinity_still_fails_its_key_as_a_non_finite_value_naming_the_agent() -> None:
    fast, _ = await both_ways(ANSWERS["-Inf fails the key"], KEY)
    _kind, reason, message = fast["errors"][str(KEY)]
    assert reason == UnavailableReason.NON_FINITE_VALUE
    assert "'c'" in message


async def test_nan_agents_are_listed_as_undefined_and_have_no_value() -> None:
    fast, _ = await both_ways(ANSWERS["NaN is held, not absent"], KEY)
    assert fast["undefined"] == {str(KEY): ["prod/a"]}
    assert fast["table"]["prod/a"][str(KEY)] is None
    assert fast["table"]["prod/c"][str(KEY)] == 2.0


def test_the_fast_decoder_takes_plain_answers_and_leaves_the_rest_to_the_general_path() -> None:
    def decode(answer: Any) -> Any:
        return decode_agent_vector(json.dumps(answer).encode(), "agent", "namespace")

    plain = decode(ANSWERS["plain numbers"])
    assert plain is not None
    assert plain.values == {"prod": {"a": 0.25, "b": 0.001}, "dev": {"b": 0.0}}
    bare = decode(ANSWERS["no namespace label, unique name"])
    assert bare is not None
    assert bare.values == {None: {"a": 3.0}}
    empty = decode(ANSWERS["an empty vector"])
    assert empty is not None
    assert empty.values == {}
    for name in (
        "+Inf fails the key",
        "-Inf fails the key",
        "a series without the agent label",
        "two series for one agent",
        "another label besides agent and namespace",
        "a native histogram is skipped",
        "a null label value",
        "the value is JSON true",
        "the pair has three elements",
        "a scalar",
        "status error with HTTP 200",
    ):
        assert decode(ANSWERS[name]) is None, name


def test_a_label_named_like_a_python_keyword_is_read() -> None:
    body = json.dumps(vector(sample("1", **{"class": "a", "def": "prod"}))).encode()
    decoded = decode_agent_vector(body, "class", "def")
    assert decoded is not None
    assert decoded.values == {"prod": {"a": 1.0}}


async def test_the_same_query_text_is_encoded_once_and_sent_the_same_every_cycle() -> None:
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, json=vector())

    many = {AgentId("prod", f"agent-{i}") for i in range(500)}
    config = BackendConfig(url="http://prom.example:9090")
    async with PrometheusBackend(config, transport=httpx.MockTransport(answer)) as backend:
        for _ in range(3):
            await fetch_samples(backend, {KEY: many}, AT)
        assert len(backend._fragments) == 1  # the agent matcher, encoded once
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]
    assert b"agent-499" in bodies[0]


async def test_encoded_matchers_are_kept_within_their_byte_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentmedic.metrics import prometheus

    monkeypatch.setattr(prometheus, "_FRAGMENT_BYTES", 3000)
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=vector()))
    config = BackendConfig(url="http://prom.example:9090")
    async with PrometheusBackend(config, transport=transport) as backend:
        for i in range(5):
            await backend.query(f'x{{agent=~"{"a" * 1100}{i}"}}', AT)
        kept = list(backend._fragments)
        assert kept == [f'"{"a" * 1100}3"', f'"{"a" * 1100}4"']
        assert backend._fragment_bytes == sum(len(v) for v in backend._fragments.values())


async def test_a_window_that_moves_every_cycle_leaves_nothing_behind() -> None:
    """A calendar budget's spend so far: a new window, so a new query text, every cycle.
    What is kept for the next cycle (the agents' matcher, rendered and encoded) stays one
    per agent set; the texts themselves are not kept."""
    from agentmedic.metrics import batch

    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json=vector())

    many = frozenset(AgentId("prod", f"agent-{i}") for i in range(500))
    config = BackendConfig(url="http://prom.example:9090")
    async with PrometheusBackend(config, transport=httpx.MockTransport(answer)) as backend:
        for minutes in range(1, 41):
            key = SeriesKey("cost_usd", None, timedelta(minutes=minutes))
            await fetch_samples(backend, {key: many}, AT)
        assert len(backend._fragments) == 1
    scope = batch._SCOPES.get(many)
    assert len(scope.matchers) == 1
    assert len(sent) == 40
    assert len(set(sent)) == 40  # each cycle's window was sent
    assert all(b"agent-499" in body for body in sent)
