"""Every kind of answer a metrics backend can give, on httpx.MockTransport: each ends in a
result or in a MetricsError with its own reason, never in another exception.

The evidence rule (docs/architecture.md): only a well-formed successful answer is read;
3xx, 4xx, 5xx, a malformed, truncated or oversized body and a deadline passed are errors
that name the host (never the URL, whose path may carry a tenant) and no secret.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import (
    BackendConfig,
    MetricsError,
    MetricsUnavailable,
    PrometheusBackend,
    QueryError,
    UnavailableReason,
    fetch_samples,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TENANT_PATH = "/select/tenant-4711/prometheus"
URL = f"http://prom.example:9090{TENANT_PATH}"
TOKEN = "tok-Secret-9f8e7d"
HEADER_SECRET = "hdr-Secret-77aa"
GOOD = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {"agent": "a"}, "value": [1, "2"]}]},
}

Handler = Callable[[httpx.Request], Any]


class Counting:
    """A MockTransport handler that answers with ``answer`` and counts requests."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        result = self.answer(request)
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, httpx.Response)
        return result


def backend(handler: Counting, **config: Any) -> PrometheusBackend:
    cfg = BackendConfig(
        url=URL,
        bearer_token=TOKEN,
        headers={"X-Api-Key": HEADER_SECRET},
        backoff_base=0.001,
        backoff_cap=0.002,
        **config,
    )
    return PrometheusBackend(cfg, transport=httpx.MockTransport(handler))


def body(raw: bytes | str | Any, status: int = 200, **headers: str) -> Handler:
    if isinstance(raw, str):
        raw = raw.encode()
    elif not isinstance(raw, bytes):
        raw = json.dumps(raw).encode()
    data = raw
    return lambda _request: httpx.Response(status, content=data, headers=headers)


async def fail(handler: Counting, **config: Any) -> MetricsError:
    async with backend(handler, **config) as b:
        with pytest.raises(MetricsError) as info:
            await b.query("sum by (agent) (rate(x[5m]))", AT)
    error = info.value
    text = str(error) + repr(error)
    for secret in (TOKEN, HEADER_SECRET, TENANT_PATH, "tenant-4711"):
        assert secret.lower() not in text.lower()
    return error


def vector(*items: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(items)}}


MALFORMED: dict[str, Any] = {
    "metric is a string": vector({"metric": "agent=a", "value": [1, "2"]}),
    "metric is null": vector({"metric": None, "value": [1, "2"]}),
    "metric is a list": vector({"metric": ["agent", "a"], "value": [1, "2"]}),
    "a label value is a number": vector({"metric": {"agent": 5}, "value": [1, "2"]}),
    "warnings is a number": {**vector(), "warnings": 5},
    "warnings holds objects": {**vector(), "warnings": [{"w": 1}]},
    "stats.timings is a string": {
        "status": "success",
        "data": {"resultType": "vector", "result": [], "stats": {"timings": "fast"}},
    },
    "the value is JSON true": vector({"metric": {"agent": "a"}, "value": [1, True]}),
    "the value is a word": vector({"metric": {"agent": "a"}, "value": [1, "abc"]}),
    "the value is a list": vector({"metric": {"agent": "a"}, "value": [1, ["2"]]}),
    "a list where the pair belongs": vector({"metric": {"agent": "a"}, "value": [[1, "2"]]}),
    "the pair has one element": vector({"metric": {"agent": "a"}, "value": [1]}),
    "the pair has three elements": vector({"metric": {"agent": "a"}, "value": [1, "2", 3]}),
    "the timestamp is a word": vector({"metric": {"agent": "a"}, "value": ["noon", "2"]}),
    "a sample without value or histogram": vector({"metric": {"agent": "a"}}),
    "result is an object": {"status": "success", "data": {"resultType": "vector", "result": {}}},
    "result is null": {"status": "success", "data": {"resultType": "vector", "result": None}},
    "result holds numbers": {"status": "success", "data": {"resultType": "vector", "result": [1]}},
    "data is a string": {"status": "success", "data": "vector"},
    "data is missing": {"status": "success"},
    "resultType is unknown": {"status": "success", "data": {"resultType": "table", "result": []}},
    "status is missing": {"data": vector()["data"]},
    "status is a number": {"status": 1, "data": vector()["data"]},
    "the answer is a list": [GOOD],
    "the answer is a string": "success",
    "the answer is null": None,
    "a scalar without its pair": {
        "status": "success",
        "data": {"resultType": "scalar", "result": 3},
    },
    "status error with HTTP 200": {"status": "error", "errorType": "bad_data", "error": "nope"},
}


@pytest.mark.parametrize("shape", list(MALFORMED))
async def test_a_malformed_answer_is_an_invalid_response_never_a_crash(shape: str) -> None:
    handler = Counting(body(MALFORMED[shape]))
    error = await fail(handler)
    assert isinstance(error, MetricsUnavailable), repr(error)
    assert error.reason == UnavailableReason.INVALID_RESPONSE
    assert "prom.example:9090" in str(error)
    assert handler.requests == 1, "a malformed answer is not asked again"


@pytest.mark.parametrize(
    "raw",
    [b"", b"<html>login</html>", json.dumps(GOOD).encode()[:-7], b"\xff\xfe\x00"],
    ids=["empty", "html", "truncated json", "not utf-8"],
)
async def test_a_body_that_is_not_json_is_an_invalid_response(raw: bytes) -> None:
    error = await fail(Counting(body(raw)))
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.INVALID_RESPONSE


@pytest.mark.parametrize(
    "shape", ["metric is null", "the value is JSON true", "warnings is a number"]
)
async def test_a_malformed_range_answer_is_an_invalid_response(shape: str) -> None:
    answer = json.loads(json.dumps(MALFORMED[shape]).replace('"value"', '"values"'))
    if shape == "the value is JSON true":
        answer["data"]["result"][0]["values"] = [[1, True]]
    for item in answer.get("data", {}).get("result", []):
        item["values"] = [item["values"]] if shape != "the value is JSON true" else item["values"]
    answer["data"]["resultType"] = "matrix"
    async with backend(Counting(body(answer))) as b:
        with pytest.raises(MetricsUnavailable) as info:
            await b.query_range("x", AT, AT + timedelta(minutes=1), timedelta(seconds=30))
    assert info.value.reason == UnavailableReason.INVALID_RESPONSE


@pytest.mark.parametrize(
    ("status", "reason", "attempts"),
    [
        (301, UnavailableReason.REDIRECTED, 1),
        (302, UnavailableReason.REDIRECTED, 1),
        (307, UnavailableReason.REDIRECTED, 1),
        (401, UnavailableReason.UNAUTHORIZED, 1),
        (403, UnavailableReason.UNAUTHORIZED, 1),
        (404, UnavailableReason.NOT_FOUND, 1),
        (405, UnavailableReason.CLIENT_ERROR, 1),
        (418, UnavailableReason.CLIENT_ERROR, 1),
        (408, UnavailableReason.TIMEOUT, 3),
        (429, UnavailableReason.RATE_LIMITED, 3),
        (500, UnavailableReason.SERVER_ERROR, 3),
        (502, UnavailableReason.SERVER_ERROR, 3),
        (503, UnavailableReason.SERVER_ERROR, 3),
        (204, UnavailableReason.INVALID_RESPONSE, 1),
    ],
)
async def test_each_http_status_has_its_reason_and_only_passing_ones_are_retried(
    status: int, reason: UnavailableReason, attempts: int
) -> None:
    handler = Counting(
        body(b"<html>moved</html>", status, Location=f"https://login.example{TENANT_PATH}")
    )
    error = await fail(handler, retries=2)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == reason
    assert f"HTTP {status}" in str(error)
    assert handler.requests == attempts


async def test_a_302_is_never_taken_for_the_policys_query_error() -> None:
    """Issue #14: a redirect to a login page was reported as the policy's own QueryError."""
    handler = Counting(body(b"", 302, Location="https://sso.example/login"))
    error = await fail(handler)
    assert not isinstance(error, QueryError)
    assert error.reason == "Redirected"


async def test_prometheus_refusing_the_query_is_a_query_error() -> None:
    refusal = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error"}
    handler = Counting(body(refusal, 400))
    error = await fail(handler)
    assert isinstance(error, QueryError)
    assert error.reason == "QueryError"
    assert error.error_type == "bad_data"
    assert handler.requests == 1


async def test_a_400_that_is_not_prometheus_speaking_is_a_client_error() -> None:
    error = await fail(Counting(body(b"Bad Request", 400)))
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.CLIENT_ERROR


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("Connection refused"), UnavailableReason.UNREACHABLE),
        (httpx.ReadError("Connection reset by peer"), UnavailableReason.UNREACHABLE),
        (httpx.RemoteProtocolError("Server disconnected"), UnavailableReason.UNREACHABLE),
        (httpx.ReadTimeout("timed out"), UnavailableReason.TIMEOUT),
        (httpx.ConnectTimeout("timed out"), UnavailableReason.TIMEOUT),
    ],
)
async def test_transport_failures_are_retried_then_named(
    exc: Exception, reason: UnavailableReason
) -> None:
    handler = Counting(lambda _request: exc)
    error = await fail(handler, retries=1)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == reason
    assert handler.requests == 2


class Drip:
    """An answer whose body arrives one small piece at a time."""

    def __init__(self, pieces: list[bytes], pause: float, then: BaseException | None = None):
        self.pieces = pieces
        self.pause = pause
        self.then = then
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import asyncio

        for piece in self.pieces:
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += 1
            yield piece
        if self.then is not None:
            raise self.then


async def test_a_server_dripping_bytes_cannot_stretch_the_attempt_past_its_timeout() -> None:
    """Issue #14: one byte every 0.25 s held a call with a 3 s deadline for 10.8 s, since
    httpx's read timeout restarts with every byte. The attempt as a whole has a deadline."""
    raw = json.dumps(GOOD).encode()
    drips: list[Drip] = []

    def answer(_request: httpx.Request) -> httpx.Response:
        drip = Drip([raw[i : i + 1] for i in range(len(raw))], pause=0.02)
        drips.append(drip)
        return httpx.Response(200, content=drip)

    error = await fail(Counting(answer), timeout=0.2, deadline=0.5, retries=5)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TIMEOUT
    assert all(d.sent < len(raw) for d in drips), "no answer was read to its end"
    # Attempts of 0.2 s within a 0.5 s deadline: at most three, whatever `retries` allows.
    assert 1 <= len(drips) <= 3


async def test_the_deadline_bounds_the_whole_call_across_retries() -> None:
    handler = Counting(lambda _request: httpx.Response(200, content=Drip([b"{"] * 100, 0.02)))
    error = await fail(handler, timeout=0.1, deadline=0.35, retries=10)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TIMEOUT
    # Four attempts of 0.1 s at most fit in 0.35 s, though ten retries are allowed.
    assert handler.requests <= 4


async def test_a_body_cut_off_by_the_connection_is_an_invalid_response() -> None:
    raw = json.dumps(GOOD).encode()

    def answer(_request: httpx.Request) -> httpx.Response:
        drip = Drip([raw[:20]], pause=0, then=httpx.ReadError("connection reset"))
        return httpx.Response(200, content=drip)

    handler = Counting(answer)
    error = await fail(handler, retries=1)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.INVALID_RESPONSE
    assert "cut short after 20 bytes" in str(error)
    assert handler.requests == 2


async def test_an_answer_declared_larger_than_the_cap_is_refused_unread() -> None:
    drips: list[Drip] = []

    def answer(_request: httpx.Request) -> httpx.Response:
        drip = Drip([b"x" * 1024] * 8, pause=0)
        drips.append(drip)
        return httpx.Response(200, content=drip, headers={"Content-Length": str(300 << 20)})

    handler = Counting(answer)
    error = await fail(handler, max_response_bytes=4096)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TOO_LARGE
    assert drips[0].sent == 0
    assert handler.requests == 1


async def test_a_streamed_answer_is_not_read_past_the_cap() -> None:
    """Issue #14: a 300 MB answer took 1 GB. Reading stops at max_response_bytes."""
    drips: list[Drip] = []

    def answer(_request: httpx.Request) -> httpx.Response:
        drip = Drip([b"[" * 1024] * 64, pause=0)
        drips.append(drip)
        return httpx.Response(200, content=drip)

    error = await fail(Counting(answer), max_response_bytes=4096)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TOO_LARGE
    assert drips[0].sent <= 5


async def test_non_finite_values_are_kept_as_sent_and_numbers_in_any_form_are_read() -> None:
    answer = vector(
        {"metric": {"agent": "nan"}, "value": [1, "NaN"]},
        {"metric": {"agent": "pinf"}, "value": [1, "+Inf"]},
        {"metric": {"agent": "ninf"}, "value": [1, "-Inf"]},
        {"metric": {"agent": "exp"}, "value": [1, "2.5e-3"]},
        {"metric": {"agent": "h"}, "histogram": [1, {"count": "3"}]},
    )
    async with backend(Counting(body(answer))) as b:
        result = await b.query("x", AT)
    values = {s.labels["agent"]: s.value for s in result.samples}
    assert math.isnan(values.pop("nan"))
    assert values == {"pinf": math.inf, "ninf": -math.inf, "exp": 0.0025}


async def test_errors_name_the_host_but_not_the_tenant_path_and_redact_echoes_in_any_case() -> None:
    echo = f"denied: bearer {TOKEN.upper()} key {HEADER_SECRET.lower()} at {URL}"
    error = await fail(Counting(body(echo, 401)))
    assert "prom.example:9090" in str(error)
    assert "<redacted>" in str(error)


async def test_the_backend_repr_names_the_host_only() -> None:
    async with backend(Counting(body(GOOD))) as b:
        assert "tenant-4711" not in repr(b)
        assert "prom.example" in repr(b)


# -- what the batch layer makes of values


KEY = SeriesKey("error_rate", None, timedelta(minutes=5))


class Fixed:
    """A MetricsBackend answering every query with the same samples."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    async def query(self, promql: str, at: datetime) -> Any:
        from agentmedic.metrics import QueryResult, Sample

        samples = tuple(Sample({"agent": a, "namespace": "ns"}, v) for a, v in self.values.items())
        return QueryResult("vector", samples=samples)

    async def query_range(self, *args: Any) -> Any:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


AGENTS = {AgentId("ns", n) for n in ("fine", "idle", "gone")}


async def test_nan_is_no_number_and_not_absence_and_a_missing_agent_is_absence() -> None:
    table, stats = await fetch_samples(Fixed({"fine": 0.1, "idle": math.nan}), {KEY: AGENTS}, AT)
    assert table[AgentId("ns", "fine")][KEY] == 0.1
    assert table[AgentId("ns", "idle")][KEY] is None
    assert table[AgentId("ns", "gone")][KEY] is None
    assert stats.undefined == {KEY: {AgentId("ns", "idle")}}
    assert stats.errors == {}


@pytest.mark.parametrize("value", [math.inf, -math.inf])
async def test_an_infinite_value_fails_its_key_instead_of_reading_as_a_breach(value: float) -> None:
    """Issue #14: +Inf compared greater than every threshold and scaled agents to zero."""
    table, stats = await fetch_samples(Fixed({"fine": 0.1, "idle": value}), {KEY: AGENTS}, AT)
    error = stats.errors[KEY]
    assert error.reason == UnavailableReason.NON_FINITE_VALUE
    assert "'idle'" in str(error)
    assert all(row[KEY] is None for row in table.values())
