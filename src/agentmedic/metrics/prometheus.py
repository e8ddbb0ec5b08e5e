"""The Prometheus HTTP API on ``httpx.AsyncClient``.

It serves Prometheus, Thanos, Mimir, Cortex and VictoriaMetrics alike.

One :class:`PrometheusBackend` per backend, configured by a :class:`BackendConfig`. Requests
are retried with exponential back-off and full jitter on connection errors, timeouts, 408,
5xx and 429 (honouring ``Retry-After``); each attempt (its body included) ends within
``timeout`` and the whole call within ``deadline``, however slowly a server sends. Bodies
are streamed and never read past ``max_response_bytes``. A 200 answer is decoded against
the API's declared shape; anything else (3xx, 4xx, a malformed body) is an error with its
own reason and is not retried. Messages name the backend's host, never its URL or a header;
credentials are scrubbed from them as well.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import random
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx
import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agentmedic.metrics.backend import (
    QueryResult,
    RangeResult,
    RangeSeries,
    Sample,
    Timing,
    to_unix,
)
from agentmedic.metrics.errors import MetricsUnavailable, QueryError, UnavailableReason

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "BackendConfig", "PrometheusBackend"]

log = logging.getLogger(__name__)

_REDACTED = "<redacted>"
_MAX_BODY_IN_MESSAGE = 300
_MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error answer read for its message."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class BackendConfig(BaseModel):
    """How to reach a Prometheus-compatible query API.

    Secrets are :class:`~pydantic.SecretStr` and never appear in ``repr``, messages or logs;
    a validation error does not echo the input either.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, use_attribute_docstrings=True
    )

    url: str
    """Base URL up to, not including, ``/api/v1``; a path prefix is kept, e.g.
    ``http://vmselect:8481/select/0/prometheus`` or ``https://mimir/prometheus``."""
    bearer_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer ...``."""
    bearer_token_file: Path | None = None
    """A file holding the bearer token, re-read when it changes (projected service-account
    tokens rotate)."""
    basic_auth_username: str | None = None
    """Basic auth user; needs ``basic_auth_password``."""
    basic_auth_password: SecretStr | None = None
    """Basic auth password."""
    ca_file: Path | None = None
    """PEM bundle of the CAs that sign the backend's certificate."""
    insecure_skip_verify: bool = False
    """Skip TLS certificate verification. For experiments only."""
    tenant: str | None = None
    """Tenant or org id, sent in ``tenant_header`` (Mimir, Cortex, Loki-style multi-tenancy)."""
    tenant_header: str = "X-Scope-OrgID"
    """The header that carries ``tenant``."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers; values are treated as secrets."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds one HTTP attempt may take (also sent to the backend as its query timeout)."""
    deadline: float = Field(default=30.0, gt=0)
    """Seconds one call may take in all, retries and back-off included."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries after the first attempt for connection errors, timeouts, 429 and 5xx."""
    backoff_base: float = Field(default=0.25, ge=0)
    """First back-off ceiling in seconds; doubles per retry (full jitter below it)."""
    backoff_cap: float = Field(default=5.0, ge=0)
    """Largest back-off in seconds."""
    max_retry_after: float = Field(default=30.0, ge=0)
    """A 429 whose ``Retry-After`` exceeds this (or the time left) fails at once."""
    post_threshold: int = Field(default=2048, ge=0)
    """Encoded parameters longer than this many bytes are sent by POST (URLs have limits)."""
    query_stats: bool = False
    """Ask for the backend's own timings (Prometheus ``stats=all``) to report server time."""
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)
    """The largest answer read, in bytes (decompressed); a larger one fails as TooLarge
    without being read further. The default, 64 MiB, is about 300,000 vector samples and
    stays well under the chart's memory limit."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise ValueError(f"url is not a valid URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("url must start with http:// or https:// and name a host")
        if url.userinfo:
            raise ValueError(
                "url must not contain credentials; set basic_auth_username and "
                "basic_auth_password (or bearer_token) instead"
            )
        if url.query or url.fragment:
            raise ValueError("url must not have a query string or fragment")
        if url.path.rstrip("/").endswith("/api/v1"):
            raise ValueError("url must stop before /api/v1 (it is appended per request)")
        return str(url).rstrip("/")

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set either bearer_token or bearer_token_file, not both")
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic auth needs both basic_auth_username and basic_auth_password")
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if bearer and self.basic_auth_username is not None:
            raise ValueError("set either a bearer token or basic auth, not both")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("set either ca_file or insecure_skip_verify, not both")
        return self


class PrometheusBackend:
    """A :class:`~agentmedic.metrics.backend.MetricsBackend` over the Prometheus HTTP API.

    Every answer is checked against the API's declared shape before anything reads it, and
    every failure (HTTP, transport, size, shape, deadline) becomes a
    :class:`~agentmedic.metrics.errors.MetricsError` with its own reason: never another
    exception. ``transport`` replaces the network (``httpx.MockTransport`` in unit tests).
    """

    def __init__(
        self, config: BackendConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._token_cache: tuple[float, str] | None = None
        url = httpx.URL(config.url)
        # Messages name the host only: the path may carry a tenant (VictoriaMetrics'
        # /select/<tenant>/prometheus) and nothing in a message should identify one.
        self._host = url.host + (f":{url.port}" if url.port is not None else "")
        self._prefix = url.path.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if config.insecure_skip_verify or config.url.startswith("http://"):
            # Plain http has no TLS to verify, and loading the CA bundle costs ~50 ms per
            # client. Redirects (which could lead to https) are not followed.
            verify = False
        elif config.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(config.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ca_file {config.ca_file} cannot be used as a CA bundle: {exc}"
                ) from None
        self._client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(config.timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PrometheusBackend(host={self._host!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    # -- the API

    async def query(self, promql: str, at: datetime) -> QueryResult:
        """``/api/v1/query`` at ``at``; see :class:`~agentmedic.metrics.backend.MetricsBackend`."""
        params = {"query": promql, "time": _fmt_ts(to_unix(at))}
        body, request_s, where = await self._call("/api/v1/query", params)
        t0 = time.perf_counter()
        try:
            result = _decode_query(body)
        except _MalformedError as exc:
            raise self._malformed(where, exc) from None
        parse_s = time.perf_counter() - t0
        return QueryResult(
            result_type=result.kind,
            samples=result.samples,
            series=result.series,
            scalar=result.scalar,
            warnings=result.warnings,
            timing=Timing(request=request_s, server=result.server, parse=parse_s),
        )

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        """``/api/v1/query_range``; see :class:`~agentmedic.metrics.backend.MetricsBackend`."""
        if step.total_seconds() <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if end < start:
            raise ValueError(f"end ({end.isoformat()}) is before start ({start.isoformat()})")
        params = {
            "query": promql,
            "start": _fmt_ts(to_unix(start)),
            "end": _fmt_ts(to_unix(end)),
            "step": _fmt_ts(step.total_seconds()),
        }
        body, request_s, where = await self._call("/api/v1/query_range", params)
        t0 = time.perf_counter()
        try:
            result = _decode_range_answer(body)
        except _MalformedError as exc:
            raise self._malformed(where, exc) from None
        if result.kind != "matrix":
            raise QueryError(
                f"a range query returned a {result.kind}, expected a matrix", query=promql
            )
        parse_s = time.perf_counter() - t0
        return RangeResult(
            series=result.series,
            warnings=result.warnings,
            timing=Timing(request=request_s, server=result.server, parse=parse_s),
        )

    # -- transport, retries, errors

    def _headers(self) -> dict[str, str]:
        cfg = self.config
        headers = {"Accept": "application/json"}
        headers.update({k: v.get_secret_value() for k, v in cfg.headers.items()})
        if cfg.tenant is not None:
            headers[cfg.tenant_header] = cfg.tenant
        token = self._bearer_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif cfg.basic_auth_username is not None and cfg.basic_auth_password is not None:
            headers["Authorization"] = "Basic " + self._basic_pair()
        return headers

    def _basic_pair(self) -> str:
        cfg = self.config
        assert cfg.basic_auth_password is not None
        pair = f"{cfg.basic_auth_username}:{cfg.basic_auth_password.get_secret_value()}"
        return base64.b64encode(pair.encode()).decode()

    def _bearer_token(self) -> str | None:
        cfg = self.config
        if cfg.bearer_token is not None:
            return cfg.bearer_token.get_secret_value()
        if cfg.bearer_token_file is None:
            return None
        path = cfg.bearer_token_file
        try:
            mtime = os.stat(path).st_mtime
            if self._token_cache is None or self._token_cache[0] != mtime:
                self._token_cache = (mtime, path.read_text().strip())
        except OSError as exc:
            raise MetricsUnavailable(
                UnavailableReason.CREDENTIALS_UNREADABLE,
                f"bearer_token_file {path} cannot be read: {exc.strerror or exc}",
            ) from None
        return self._token_cache[1]

    def _secrets(self) -> list[str]:
        cfg = self.config
        out = [v.get_secret_value() for v in cfg.headers.values()]
        if cfg.bearer_token is not None:
            out.append(cfg.bearer_token.get_secret_value())
        if self._token_cache is not None:
            out.append(self._token_cache[1])
        if cfg.basic_auth_password is not None:
            out.append(cfg.basic_auth_password.get_secret_value())
            out.append(self._basic_pair())
        if self._prefix:
            out.append(self._prefix)  # a server echoing the URL would show the tenant
        # Longest first, so that a secret containing another is replaced whole.
        return sorted({s for s in out if s}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        """The second line of defence: messages are built without secrets, and anything a
        server echoes back is redacted here, whatever its case (some proxies upper-case
        what they echo)."""
        secrets = self._secrets()
        if not secrets:
            return text
        pattern = re.compile("|".join(re.escape(s) for s in secrets), re.IGNORECASE)
        return pattern.sub(_REDACTED, text)

    def _unavailable(self, reason: UnavailableReason, message: str) -> MetricsUnavailable:
        return MetricsUnavailable(reason, self._scrub(message))

    def _malformed(self, where: str, exc: _MalformedError) -> MetricsUnavailable:
        return self._unavailable(UnavailableReason.INVALID_RESPONSE, f"{where}: {exc}")

    async def _call(self, path: str, params: dict[str, str]) -> tuple[bytes, float, str]:
        """Send one API call with retries: the body of its 200 answer, the round-trip time
        and how messages name the call. The whole call, retries and back-off included,
        ends within ``deadline``; each attempt, body included, within ``timeout``."""
        cfg = self.config
        params = dict(params)
        params["timeout"] = _fmt_ts(cfg.timeout)
        if cfg.query_stats:
            params["stats"] = "all"
        # The unencoded size is a lower bound of the encoded one; encoding a 10,000-agent
        # query only to measure it would cost more than the query's own parse.
        post = sum(len(k) + len(v.encode()) + 2 for k, v in params.items()) > cfg.post_threshold
        method = "POST" if post else "GET"
        where = f"{method} {path} on {self._host}"
        started = time.monotonic()
        try:
            async with asyncio.timeout(cfg.deadline):
                body = await self._attempts(method, cfg.url + path, params, post, where, started)
        except TimeoutError:
            raise self._unavailable(
                UnavailableReason.TIMEOUT,
                f"{where}: no complete answer within the call's deadline {cfg.deadline:g}s",
            ) from None
        return body, time.monotonic() - started, where

    async def _attempts(
        self,
        method: str,
        url: str,
        params: dict[str, str],
        post: bool,
        where: str,
        started: float,
    ) -> bytes:
        cfg = self.config
        deadline = started + cfg.deadline
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            budget = max(0.001, min(cfg.timeout, deadline - time.monotonic()))
            headers = self._headers()
            error: MetricsUnavailable
            try:
                # httpx's read timeout restarts with every byte: a server dripping one byte
                # at a time would never time out. The attempt as a whole has a deadline.
                async with asyncio.timeout(budget):
                    status, response_headers, body = await self._attempt(
                        method, url, params, post, headers
                    )
            except (TimeoutError, httpx.TimeoutException):
                error = self._unavailable(
                    UnavailableReason.TIMEOUT, f"{where}: no complete answer within {budget:.3g}s"
                )
            except _TooLargeError as exc:
                raise self._unavailable(
                    UnavailableReason.TOO_LARGE,
                    f"{where}: the answer is larger than max_response_bytes "
                    f"({cfg.max_response_bytes} bytes; {exc}); narrow the query or raise the "
                    "limit",
                ) from None
            except _CutShortError as exc:
                error = self._unavailable(
                    UnavailableReason.INVALID_RESPONSE,
                    f"{where}: the answer was cut short after {exc.received} bytes",
                )
            except httpx.TransportError as exc:
                if _is_tls_error(exc):
                    raise self._unavailable(
                        UnavailableReason.TLS_ERROR,
                        f"{where}: TLS failed ({_cause(exc)}); check ca_file",
                    ) from None
                error = self._unavailable(UnavailableReason.UNREACHABLE, f"{where}: {_cause(exc)}")
            else:
                if status == 200:
                    return body
                if 300 <= status < 400:
                    raise self._unavailable(
                        UnavailableReason.REDIRECTED,
                        f"{where}: HTTP {status} redirect, not followed; set url to the "
                        "address that answers",
                    )
                detail = _error_detail(body)
                if status == 429:
                    retry_after = _retry_after(response_headers)
                    error = self._unavailable(
                        UnavailableReason.RATE_LIMITED,
                        f"{where}: HTTP 429 Too Many Requests"
                        + (f", Retry-After {retry_after:g}s" if retry_after is not None else ""),
                    )
                    left = deadline - time.monotonic()
                    if retry_after is not None and (
                        retry_after > cfg.max_retry_after or retry_after > left
                    ):
                        raise error
                elif status in (401, 403):
                    raise self._unavailable(
                        UnavailableReason.UNAUTHORIZED,
                        f"{where}: HTTP {status}: {detail.text}; check the bearer token, basic "
                        "auth and tenant",
                    )
                elif status == 404:
                    raise self._unavailable(
                        UnavailableReason.NOT_FOUND,
                        f"{where}: HTTP 404; check the url and its path prefix",
                    )
                elif status == 408:
                    error = self._unavailable(
                        UnavailableReason.TIMEOUT, f"{where}: HTTP 408: {detail.text}"
                    )
                elif status >= 500:
                    error = self._unavailable(
                        UnavailableReason.SERVER_ERROR, f"{where}: HTTP {status}: {detail.text}"
                    )
                elif status in (400, 422) and detail.prometheus:
                    # Prometheus' own refusal: bad_data (400) or execution (422).
                    raise QueryError(
                        self._scrub(detail.text),
                        error_type=detail.error_type,
                        query=params["query"],
                    )
                elif 400 <= status < 500:
                    raise self._unavailable(
                        UnavailableReason.CLIENT_ERROR, f"{where}: HTTP {status}: {detail.text}"
                    )
                else:
                    raise self._unavailable(
                        UnavailableReason.INVALID_RESPONSE,
                        f"{where}: HTTP {status} is not an answer of the Prometheus API",
                    )
            elapsed = time.monotonic() - started
            if attempt > cfg.retries:
                raise _with_attempts(error, attempt, elapsed)
            delay = (
                retry_after
                if retry_after is not None
                else random.uniform(0, min(cfg.backoff_cap, cfg.backoff_base * 2 ** (attempt - 1)))
            )
            if time.monotonic() + delay >= deadline:
                raise _with_attempts(error, attempt, elapsed, deadline=cfg.deadline)
            log.info("retrying in %.2fs after attempt %d: %s", delay, attempt, error)
            await asyncio.sleep(delay)

    async def _attempt(
        self, method: str, url: str, params: dict[str, str], post: bool, headers: dict[str, str]
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request; its body read as a stream and never past the size cap."""
        async with self._client.stream(
            method,
            url,
            params=None if post else params,
            data=params if post else None,
            headers=headers,
        ) as response:
            status = response.status_code
            limit = self.config.max_response_bytes if status == 200 else _MAX_ERROR_BODY
            declared = response.headers.get("Content-Length", "")
            if status == 200 and declared.isdigit() and int(declared) > limit:
                raise _TooLargeError(f"Content-Length {declared}")
            chunks: list[bytes] = []
            size = 0
            try:
                # Decoded bytes are counted, so a compressed answer cannot expand past it.
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        if status == 200:
                            raise _TooLargeError(f"more than {limit} bytes received")
                        break  # an error's body is only read for its message
                    chunks.append(chunk)
            except httpx.TimeoutException:
                raise
            except httpx.TransportError:
                raise _CutShortError(size) from None
            return status, response.headers, b"".join(chunks)


class _TooLargeError(Exception):
    pass


class _CutShortError(Exception):
    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


class _MalformedError(Exception):
    """A 200 answer that is not a well-formed successful answer of the API."""


def _with_attempts(
    error: MetricsUnavailable, attempts: int, elapsed: float, deadline: float | None = None
) -> MetricsUnavailable:
    budget = f", deadline {deadline:g}s" if deadline is not None else ""
    return MetricsUnavailable(
        error.reason,
        f"{error.message} (gave up after {attempts} attempts in {elapsed:.2f}s{budget})",
    )


def _fmt_ts(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


def _snippet(body: bytes) -> str:
    text = body[: _MAX_BODY_IN_MESSAGE * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    if len(text) > _MAX_BODY_IN_MESSAGE:
        text = text[:_MAX_BODY_IN_MESSAGE] + "..."
    return repr(text) if text else "an empty body"


class _ErrorWire(msgspec.Struct):
    status: str
    errorType: str | None = None  # noqa: N815 (the API's own field name)
    error: str | None = None


_ERROR_DECODER = msgspec.json.Decoder(_ErrorWire)


@dataclass(frozen=True, slots=True)
class _ErrorDetail:
    text: str
    error_type: str | None
    prometheus: bool
    """The body is the API's own error object (``status: error``)."""


def _error_detail(body: bytes) -> _ErrorDetail:
    try:
        wire = _ERROR_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _ErrorDetail(_snippet(body), None, False)
    if wire.status != "error" or not wire.error:
        return _ErrorDetail(_snippet(body), None, False)
    text = wire.error if len(wire.error) <= 1000 else wire.error[:1000] + "..."
    return _ErrorDetail(text, wire.errorType, True)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- the declared shape of answers
#
# Every 200 answer is decoded against these structs in one pass, in C: a value of the
# wrong type anywhere (a JSON true for a number, a string for the labels, a list where a
# [time, value] pair belongs) fails the decode and the answer is InvalidResponse, never a
# crash further on. Sample values are JSON strings ("0.25", "NaN", "+Inf"); the fast
# decoders read them as floats in C (strict=False), which refuses Go's "+Inf" (and a JSON
# true or false): such an answer takes the exact decoders, which keep the string and
# parse it with float().


_NO_RAW = msgspec.Raw()


def _given(raw: msgspec.Raw) -> bool:
    return bool(raw) and bytes(raw) != b"null"


class _Timings(msgspec.Struct):
    execTotalTime: float | None = None  # noqa: N815


class _Stats(msgspec.Struct):
    timings: _Timings | None = None


class _VectorItemFast(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, float] | None = None
    histogram: msgspec.Raw = _NO_RAW


class _VectorItem(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str] | None = None
    histogram: msgspec.Raw = _NO_RAW


class _SeriesFast(msgspec.Struct):
    metric: dict[str, str]
    values: tuple[tuple[float, float], ...] = ()
    histograms: msgspec.Raw = _NO_RAW


class _Series(msgspec.Struct):
    metric: dict[str, str]
    values: tuple[tuple[float, str], ...] = ()
    histograms: msgspec.Raw = _NO_RAW


class _VectorDataFast(msgspec.Struct):
    resultType: str  # noqa: N815
    result: list[_VectorItemFast]
    stats: _Stats | None = None


class _MatrixDataFast(msgspec.Struct):
    resultType: str  # noqa: N815
    result: list[_SeriesFast]
    stats: _Stats | None = None


class _VectorAnswerFast(msgspec.Struct):
    status: str
    data: _VectorDataFast
    warnings: list[str] | None = None


class _MatrixAnswerFast(msgspec.Struct):
    status: str
    data: _MatrixDataFast
    warnings: list[str] | None = None


class _Data(msgspec.Struct):
    resultType: Literal["vector", "matrix", "scalar", "string"]  # noqa: N815
    result: msgspec.Raw
    stats: _Stats | None = None


class _Answer(msgspec.Struct):
    status: Literal["success", "error"]
    data: _Data | None = None
    warnings: list[str] | None = None
    errorType: str | None = None  # noqa: N815
    error: str | None = None


_VECTOR_FAST = msgspec.json.Decoder(_VectorAnswerFast, strict=False)
_MATRIX_FAST = msgspec.json.Decoder(_MatrixAnswerFast, strict=False)
_ANSWER = msgspec.json.Decoder(_Answer)
_VECTOR = msgspec.json.Decoder(list[_VectorItem])
_MATRIX = msgspec.json.Decoder(list[_Series])
_PAIR = msgspec.json.Decoder(tuple[float, str])

_ResultType = Literal["vector", "matrix", "scalar", "string"]


@dataclass(frozen=True, slots=True)
class _Decoded:
    kind: _ResultType
    samples: tuple[Sample, ...] = ()
    series: tuple[RangeSeries, ...] = ()
    scalar: float | None = None
    warnings: tuple[str, ...] = ()
    server: float | None = None


def _server(stats: _Stats | None) -> float | None:
    if stats is None or stats.timings is None:
        return None
    return stats.timings.execTotalTime


def _decode_query(body: bytes) -> _Decoded:
    """An instant query's answer. The common answer, a vector of plain numbers, is read
    by one decoder straight into samples; anything else by the exact path below."""
    try:
        fast = _VECTOR_FAST.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_exact(body)
    if fast.status != "success" or fast.data.resultType != "vector":
        return _decode_exact(body)
    samples = []
    for item in fast.data.result:
        if item.value is not None:
            samples.append(Sample(item.metric, item.value[1]))
        elif not _given(item.histogram):
            raise _MalformedError("a vector sample has neither a value nor a histogram")
        # A native histogram ("histogram" instead of "value") has no float value.
    return _Decoded(
        "vector",
        samples=tuple(samples),
        warnings=tuple(fast.warnings or ()),
        server=_server(fast.data.stats),
    )


def _decode_range_answer(body: bytes) -> _Decoded:
    """A range query's answer: a week of a hundred agents at a one-minute step is a million
    points per series key, which the fast decoder reads at about 0.4 us a point."""
    try:
        fast = _MATRIX_FAST.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_exact(body)
    if fast.status != "success" or fast.data.resultType != "matrix":
        return _decode_exact(body)
    return _Decoded(
        "matrix",
        series=tuple(RangeSeries(s.metric, s.values) for s in fast.data.result),
        warnings=tuple(fast.warnings or ()),
        server=_server(fast.data.stats),
    )


def _decode_exact(body: bytes) -> _Decoded:
    """Any answer, decoded against the API's declared shape; ``_MalformedError`` says where it
    is not. A ``status: error`` with HTTP 200 is not how Prometheus reports a bad query
    (that is a 400 or 422), so it is not taken for one."""
    try:
        answer = _ANSWER.decode(body)
    except msgspec.ValidationError as exc:  # before DecodeError, its base class
        raise _MalformedError(f"the answer is not a Prometheus API response ({exc})") from None
    except msgspec.DecodeError:
        raise _MalformedError(f"the answer is not JSON ({_snippet(body)})") from None
    if answer.status != "success":
        detail = f": {answer.error[:300]}" if answer.error else ""
        raise _MalformedError(f"HTTP 200 with status error{detail}")
    if answer.data is None:
        raise _MalformedError("a successful answer without data")
    kind = answer.data.resultType
    raw = answer.data.result
    warnings = tuple(answer.warnings or ())
    server = _server(answer.data.stats)
    try:
        if kind == "vector":
            samples = []
            for item in _VECTOR.decode(raw):
                if item.value is not None:
                    samples.append(Sample(item.metric, _number(item.value[1])))
                elif not _given(item.histogram):
                    raise _MalformedError("a vector sample has neither a value nor a histogram")
            return _Decoded(kind, samples=tuple(samples), warnings=warnings, server=server)
        if kind == "matrix":
            series = tuple(
                RangeSeries(s.metric, tuple((t, _number(v)) for t, v in s.values))
                for s in _MATRIX.decode(raw)
            )
            return _Decoded(kind, series=series, warnings=warnings, server=server)
        _, text = _PAIR.decode(raw)
        if kind == "scalar":
            return _Decoded(kind, scalar=_number(text), warnings=warnings, server=server)
        try:
            value: float | None = float(text)
        except ValueError:
            value = None  # a string result need not be a number
        return _Decoded(kind, scalar=value, warnings=warnings, server=server)
    except msgspec.ValidationError as exc:
        raise _MalformedError(f"the {kind} result is malformed ({exc})") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _MalformedError(f"the sample value {text[:40]!r} is not a number") from None


def backend_config_from_files(
    url: str,
    *,
    bearer_token_file: Path | None = None,
    basic_auth_username: str | None = None,
    basic_auth_password_file: Path | None = None,
    ca_file: Path | None = None,
    insecure_skip_verify: bool = False,
    tenant: str | None = None,
    tenant_header: str = "X-Scope-OrgID",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    deadline: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> BackendConfig:
    """A :class:`BackendConfig` whose secrets live in files (mounted Secrets), as the operator's
    settings and the ``fleet``/``backtest`` flags give them. The password file is read here;
    the bearer-token file is re-read by the backend when it changes."""
    password = None
    if basic_auth_password_file is not None:
        password = SecretStr(basic_auth_password_file.read_text(encoding="utf-8").strip())
    return BackendConfig(
        url=url,
        bearer_token_file=bearer_token_file,
        basic_auth_username=basic_auth_username,
        basic_auth_password=password,
        ca_file=ca_file,
        insecure_skip_verify=insecure_skip_verify,
        tenant=tenant,
        tenant_header=tenant_header,
        headers={k: SecretStr(v) for k, v in (headers or {}).items()},
        timeout=timeout,
        deadline=deadline if deadline is not None else 3 * timeout,
        max_response_bytes=max_response_bytes,
    )
