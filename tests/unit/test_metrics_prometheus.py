"""PrometheusBackend's parsing, request shaping and configuration, on httpx.MockTransport.

What a real server adds (timeouts, refused connections, TLS) is tested in
tests/integration/test_metrics_faults.py.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError

from agentmedic.metrics import (
    BackendConfig,
    MetricsUnavailable,
    PrometheusBackend,
    QueryError,
    UnavailableReason,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
URL = "http://prom.example:9090/select/0/prometheus"


def ok(result_type: str, result: Any, **extra: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": result_type, "result": result}, **extra}


class Recorder:
    """A MockTransport handler answering from a list (the last answer repeats)."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else answer

    def params(self, i: int = 0) -> dict[str, str]:
        request = self.requests[i]
        raw = request.content.decode() if request.method == "POST" else request.url.query.decode()
        return {k: v[0] for k, v in parse_qs(raw).items()}


def backend(recorder: Recorder, **config: Any) -> PrometheusBackend:
    cfg = BackendConfig(url=URL, backoff_base=0.001, backoff_cap=0.002, **config)
    return PrometheusBackend(cfg, transport=httpx.MockTransport(recorder))


async def test_vector_values_keep_nan_and_infinities_and_warnings():
    body = ok(
        "vector",
        [
            {"metric": {"agent": "a"}, "value": [1714564800, "0.25"]},
            {"metric": {"agent": "b"}, "value": [1714564800, "NaN"]},
            {"metric": {"agent": "c"}, "value": [1714564800, "+Inf"]},
            {"metric": {"agent": "d"}, "value": [1714564800, "-Inf"]},
        ],
        warnings=["PromQL info: metric might not be a counter"],
    )
    rec = Recorder(httpx.Response(200, json=body))
    async with backend(rec) as b:
        result = await b.query("x", AT)
    values = {s.labels["agent"]: s.value for s in result.samples}
    assert values["a"] == 0.25
    assert math.isnan(values["b"])
    assert values["c"] == math.inf
    assert values["d"] == -math.inf
    assert result.warnings == ("PromQL info: metric might not be a counter",)
    assert result.result_type == "vector"


async def test_server_time_comes_from_stats_when_asked_for():
    body = ok("vector", [])
    body["data"]["stats"] = {"timings": {"execTotalTime": 0.0123}}
    rec = Recorder(httpx.Response(200, json=body))
    async with backend(rec, query_stats=True) as b:
        result = await b.query("x", AT)
    assert rec.params()["stats"] == "all"
    assert result.timing.server == 0.0123
    assert result.timing.request > 0


async def test_scalar_string_and_matrix_results_are_parsed():
    rec = Recorder(
        httpx.Response(200, json=ok("scalar", [1, "3.5"])),
        httpx.Response(200, json=ok("string", [1, "hello"])),
        httpx.Response(
            200,
            json=ok("matrix", [{"metric": {"agent": "a"}, "values": [[1, "1"], [2, "NaN"]]}]),
        ),
    )
    async with backend(rec) as b:
        scalar = await b.query("3.5", AT)
        string = await b.query('"hello"', AT)
        matrix = await b.query("x[1m]", AT)
    assert scalar.scalar == 3.5
    assert string.result_type == "string"
    assert string.scalar is None
    assert matrix.series[0].labels == {"agent": "a"}
    assert matrix.series[0].points[0] == (1.0, 1.0)
    assert math.isnan(matrix.series[0].points[1][1])


async def test_query_sends_time_timeout_and_path_prefix():
    rec = Recorder(httpx.Response(200, json=ok("vector", [])))
    async with backend(rec, timeout=7) as b:
        await b.query("up", AT)
    request = rec.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/select/0/prometheus/api/v1/query"
    assert rec.params() == {"query": "up", "time": str(int(AT.timestamp())), "timeout": "7"}


async def test_a_long_query_is_sent_by_post_as_a_form():
    rec = Recorder(httpx.Response(200, json=ok("vector", [])))
    long_query = 'sum(x{agent=~"' + "|".join(f"agent-{i}" for i in range(500)) + '"})'
    async with backend(rec) as b:
        await b.query(long_query, AT)
    request = rec.requests[0]
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert rec.params()["query"] == long_query


async def test_range_query_sends_start_end_step_and_parses_the_matrix():
    body = ok("matrix", [{"metric": {"agent": "a"}, "values": [[100, "1"], [160, "2"]]}])
    rec = Recorder(httpx.Response(200, json=body))
    async with backend(rec) as b:
        result = await b.query_range("x", AT, AT + timedelta(minutes=1), timedelta(seconds=30))
    assert rec.requests[0].url.path.endswith("/api/v1/query_range")
    params = rec.params()
    assert params["start"] == str(int(AT.timestamp()))
    assert params["end"] == str(int(AT.timestamp()) + 60)
    assert params["step"] == "30"
    assert result.series[0].points == ((100.0, 1.0), (160.0, 2.0))


RANGE_BODIES = {
    "plain": ok(
        "matrix",
        [
            {"metric": {"agent": "a", "le": "+Inf"}, "values": [[100, "1"], [160.5, "2.5e-3"]]},
            {"metric": {"agent": "b"}, "values": [[100, "NaN"], [160.5, "Inf"], [220, "-Inf"]]},
            {"metric": {"agent": "c"}, "values": []},
            {"metric": {"agent": "d"}},
        ],
    ),
    # msgspec refuses Go's "+Inf": the whole answer takes the general path.
    "plus_inf": ok("matrix", [{"metric": {"agent": "a"}, "values": [[100, "+Inf"], [160, "3"]]}]),
    "stats_and_warnings": ok(
        "matrix",
        [{"metric": {}, "values": [[1, "0.1"]]}],
        warnings=["PromQL info: metric might not be a counter"],
    )
    | {
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[1, "0.1"]]}],
            "stats": {"timings": {"execTotalTime": 0.5}},
        }
    },
}


@pytest.mark.parametrize("name", sorted(RANGE_BODIES))
async def test_range_answers_decode_alike_on_the_fast_and_the_general_path(name: str):
    """query_range decodes a matrix with msgspec; the instant API takes the general path
    (json, then float per value). Both must read the same answer the same way."""
    body = RANGE_BODIES[name]
    rec = Recorder(httpx.Response(200, json=body))
    async with backend(rec, query_stats=True) as b:
        fast = await b.query_range("x", AT, AT + timedelta(minutes=1), timedelta(seconds=30))
        general = await b.query("x[1m]", AT)
    assert general.result_type == "matrix"
    assert len(fast.series) == len(general.series) == len(body["data"]["result"])
    for f, g in zip(fast.series, general.series, strict=True):
        assert dict(f.labels) == dict(g.labels)
        assert [t for t, _ in f.points] == [t for t, _ in g.points]
        assert [repr(v) for _, v in f.points] == [repr(v) for _, v in g.points]  # NaN too
        assert all(type(t) is float and type(v) is float for t, v in f.points)
    assert fast.warnings == general.warnings
    assert fast.timing.server == general.timing.server
    if name == "plus_inf":
        assert fast.series[0].points[0][1] == math.inf


async def test_a_range_query_answered_with_a_vector_is_a_query_error():
    rec = Recorder(httpx.Response(200, json=ok("vector", [])))
    async with backend(rec) as b:
        with pytest.raises(QueryError, match="returned a vector, expected a matrix"):
            await b.query_range("x", AT, AT + timedelta(minutes=1), timedelta(seconds=30))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # Prometheus reports a bad query with 400 or 422, never with a 200: a 200 carrying
        # status error comes from something else in the way and is not the query's fault.
        ({"status": "error", "errorType": "execution", "error": "boom"}, "status error: boom"),
        (ok("matrix", [{"metric": {"agent": "a"}, "values": [[1, "x"]]}]), "'x' is not a number"),
    ],
)
async def test_a_range_answer_the_fast_path_cannot_read_is_explained(body, error):
    rec = Recorder(httpx.Response(200, json=body))
    async with backend(rec) as b:
        with pytest.raises(MetricsUnavailable, match=error) as info:
            await b.query_range("x", AT, AT + timedelta(minutes=1), timedelta(seconds=30))
    assert info.value.reason == UnavailableReason.INVALID_RESPONSE


async def test_range_query_refuses_a_reversed_interval():
    async with backend(Recorder()) as b:
        with pytest.raises(ValueError, match="before start"):
            await b.query_range("x", AT, AT - timedelta(minutes=1), timedelta(seconds=30))


async def test_a_naive_datetime_is_refused_with_the_fix():
    async with backend(Recorder()) as b:
        with pytest.raises(ValueError, match="no time zone"):
            await b.query("x", datetime(2024, 5, 1, 12, 0))


async def test_execution_error_422_is_a_query_error_and_not_retried():
    body = {"status": "error", "errorType": "execution", "error": "many-to-many matching"}
    rec = Recorder(httpx.Response(422, json=body))
    async with backend(rec) as b:
        with pytest.raises(QueryError, match="many-to-many") as info:
            await b.query("a / b", AT)
    assert info.value.error_type == "execution"
    assert info.value.query == "a / b"
    assert len(rec.requests) == 1


async def test_404_points_at_the_url_prefix():
    rec = Recorder(httpx.Response(404, text="404 page not found"))
    async with backend(rec) as b:
        with pytest.raises(MetricsUnavailable, match="path prefix") as info:
            await b.query("x", AT)
    assert info.value.reason == UnavailableReason.NOT_FOUND
    assert len(rec.requests) == 1


async def test_json_that_is_not_an_api_response_is_invalid():
    rec = Recorder(httpx.Response(200, json=[1, 2]))
    async with backend(rec) as b:
        with pytest.raises(MetricsUnavailable, match="not a Prometheus API response"):
            await b.query("x", AT)


async def test_retries_stop_at_the_configured_count():
    rec = Recorder(httpx.Response(502, text="bad gateway"))
    async with backend(rec, retries=4) as b:
        with pytest.raises(MetricsUnavailable, match="gave up after 5 attempts") as info:
            await b.query("x", AT)
    assert info.value.reason == UnavailableReason.SERVER_ERROR
    assert len(rec.requests) == 5


async def test_retry_after_as_an_http_date_is_honoured():
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    rec = Recorder(httpx.Response(429, headers={"Retry-After": when}))
    async with backend(rec) as b:
        with pytest.raises(MetricsUnavailable, match="Retry-After") as info:
            await b.query("x", AT)
    # An hour is beyond max_retry_after: fail at once rather than hold the cycle.
    assert info.value.reason == UnavailableReason.RATE_LIMITED
    assert len(rec.requests) == 1


async def test_bearer_token_file_is_reread_when_it_changes(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    rec = Recorder(httpx.Response(200, json=ok("vector", [])))
    async with backend(rec, bearer_token_file=token_file) as b:
        await b.query("x", AT)
        token_file.write_text("second-token\n")
        stat = token_file.stat()
        os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        await b.query("x", AT)
    assert rec.requests[0].headers["Authorization"] == "Bearer first-token"
    assert rec.requests[1].headers["Authorization"] == "Bearer second-token"


async def test_an_unreadable_token_file_names_the_file_and_sends_nothing(tmp_path: Path):
    rec = Recorder(httpx.Response(200, json=ok("vector", [])))
    async with backend(rec, bearer_token_file=tmp_path / "missing") as b:
        with pytest.raises(MetricsUnavailable, match=r"bearer_token_file .*missing") as info:
            await b.query("x", AT)
    assert info.value.reason == UnavailableReason.CREDENTIALS_UNREADABLE
    assert rec.requests == []


def test_config_normalises_the_url_and_keeps_the_prefix():
    assert BackendConfig(url="https://mimir.example/prometheus/").url == (
        "https://mimir.example/prometheus"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "prom:9090"}, "must start with http"),
        ({"url": "http://prom:9090/api/v1"}, "stop before /api/v1"),
        ({"url": "http://prom:9090/?x=1"}, "query string"),
        ({"url": URL, "bearer_token": "t", "bearer_token_file": "/f"}, "not both"),
        ({"url": URL, "basic_auth_username": "u"}, "needs both"),
        ({"url": URL, "bearer_token": "t", "basic_auth_username": "u",
          "basic_auth_password": "p"}, "bearer token or basic auth"),
        ({"url": URL, "insecure_skip_verify": True, "ca_file": "/ca.pem"}, "ca_file or"),
        ({"url": URL, "retries": -1}, "retries"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field_and_the_fix(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        BackendConfig(**kwargs)


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(ValidationError) as info:
        BackendConfig(url="https://admin:hunter2-SECRET@prom.example")
    assert "basic_auth_username" in str(info.value)
    assert "hunter2-SECRET" not in str(info.value)


def test_config_repr_and_dump_hide_secrets():
    cfg = BackendConfig(
        url=URL, bearer_token="tok-SECRET", headers={"X-Key": "hdr-SECRET"}, tenant="t1"
    )
    for text in (repr(cfg), str(cfg), json.dumps(cfg.model_dump(mode="json"))):
        assert "tok-SECRET" not in text
        assert "hdr-SECRET" not in text
    assert "tok-SECRET" not in repr(PrometheusBackend(cfg))


def test_an_unusable_ca_file_is_refused_naming_the_field(tmp_path: Path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"ca_file .*ca\.pem"):
        PrometheusBackend(BackendConfig(url="https://prom.example", ca_file=bad))


def test_a_query_whose_window_changes_reuses_its_encoded_agent_matcher() -> None:
    """The POST body is the URL-encoded query, built from cached pieces: the same bytes as
    encoding it whole, and a 10,000-name matcher is encoded once across windows."""
    from urllib.parse import quote_plus

    backend = PrometheusBackend(BackendConfig(url="http://127.0.0.1:9"))
    names = "|".join(f"agent-{i}" for i in range(10_000))
    for window in ("48m", "49m", "50m"):
        promql = f'sum by (agent) (increase(cost{{agent=~"{names}", team="a b"}}[{window}])) ü'
        assert backend._encode(promql) == b"query=" + quote_plus(promql).encode("ascii")
    assert list(backend._fragments) == [f'"{names}"']
    escaped = 'q{a="' + 'x\\"' * 600 + '"}'
    assert backend._encode(escaped) == b"query=" + quote_plus(escaped).encode("ascii")
