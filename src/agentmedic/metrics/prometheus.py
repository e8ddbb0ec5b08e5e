"""The Prometheus HTTP API on ``httpx.AsyncClient``.

It serves Prometheus, Thanos, Mimir, Cortex and VictoriaMetrics alike.

One :class:`PrometheusBackend` per backend, configured by a
:class:`~agentmedic.metrics.config.BackendConfig`. Requests are retried with exponential
back-off and full jitter on connection errors, timeouts, 408, 5xx and 429 (honouring
``Retry-After``); each attempt (its body included) ends within ``timeout`` and the whole call
within ``deadline``, however slowly a server sends. Bodies are streamed and never read past
``max_response_bytes``. A 200 answer is decoded against the API's declared shape
(:mod:`agentmedic.metrics.answers`); anything else (3xx, 4xx, a malformed body) is an error
with its own reason (:mod:`agentmedic.metrics.failures`) and is not retried. Messages name
the backend's host, never its URL or a header; credentials are scrubbed from them as well.

The agent matcher of a long query (10,000 agents make a query of some 350 KiB, sent by
POST) is URL-encoded once and kept while the same matcher comes back, cycle after cycle
(:meth:`PrometheusBackend._quote`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import re
import ssl
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Self
from urllib.parse import quote_plus, urlencode

import httpx

from agentmedic.metrics import answers
from agentmedic.metrics.answers import MalformedAnswerError
from agentmedic.metrics.backend import AgentSamples, QueryResult, RangeResult, Timing, to_unix
from agentmedic.metrics.config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    BackendConfig,
    backend_config_from_files,
)
from agentmedic.metrics.errors import MetricsUnavailable, QueryError, UnavailableReason
from agentmedic.metrics.failures import (
    MAX_ERROR_BODY,
    CutShortError,
    TooLargeError,
    cause,
    error_detail,
    fmt_ts,
    is_tls_error,
    retry_after,
    with_attempts,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BackendConfig",
    "PrometheusBackend",
    "backend_config_from_files",
]

log = logging.getLogger(__name__)

_REDACTED = "<redacted>"
_FRAGMENTS = 64
"""Encoded agent matchers kept (a few per distinct agent set of recent cycles)..."""
_FRAGMENT_BYTES = 8 * 1024 * 1024
"""... and at most this many bytes of them (10,000 agents' matcher is some 400 KB encoded)."""
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_LONG_STRING = re.compile(r'("[^"\\]{1024,}")')
"""A quoted string of 1 KiB or more, with no escapes in it: an agent matcher."""


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
        self._fragments: OrderedDict[str, bytes] = OrderedDict()
        """Long quoted strings of queries, URL-encoded (see :meth:`_quote`)."""
        self._fragment_bytes = 0
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
        elif config.ca_data is not None:
            try:
                verify = ssl.create_default_context(cadata=config.ca_data)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"the CA bundle cannot be used: {exc}") from None
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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    # -- the API

    async def query(self, promql: str, at: datetime) -> QueryResult:
        """``/api/v1/query`` at ``at``; see :class:`~agentmedic.metrics.backend.MetricsBackend`."""
        body, request_s, where = await self._call("/api/v1/query", promql, {"time": _at(at)})
        return self._general(body, request_s, where)

    async def query_agents(
        self, promql: str, at: datetime, agent_label: str, namespace_label: str | None
    ) -> AgentSamples | QueryResult:
        """``/api/v1/query`` read straight into per-agent values; see
        :class:`~agentmedic.metrics.backend.AgentQueryBackend`."""
        body, request_s, where = await self._call("/api/v1/query", promql, {"time": _at(at)})
        t0 = time.perf_counter()
        fast = answers.decode_agent_vector(body, agent_label, namespace_label)
        if fast is None:
            return self._general(body, request_s, where)
        timing = Timing(request=request_s, server=fast.server, parse=time.perf_counter() - t0)
        return AgentSamples(fast.values, fast.warnings, timing)

    def _general(self, body: bytes, request_s: float, where: str) -> QueryResult:
        t0 = time.perf_counter()
        try:
            result = answers.decode_query(body)
        except MalformedAnswerError as exc:
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
            "start": fmt_ts(to_unix(start)),
            "end": fmt_ts(to_unix(end)),
            "step": fmt_ts(step.total_seconds()),
        }
        body, request_s, where = await self._call("/api/v1/query_range", promql, params)
        t0 = time.perf_counter()
        try:
            result = answers.decode_range(body)
        except MalformedAnswerError as exc:
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

    def _malformed(self, where: str, exc: MalformedAnswerError) -> MetricsUnavailable:
        return self._unavailable(UnavailableReason.INVALID_RESPONSE, f"{where}: {exc}")

    def _encode(self, promql: str) -> bytes:
        """``query=...`` URL-encoded; the agent matchers from :meth:`_quote`'s memo, since
        encoding the 350 KiB matcher of 10,000 agents costs more than decoding an answer.
        Whole texts are not kept: one whose window moves every cycle (a calendar budget's
        spend so far) would leave a new one behind each cycle."""
        return b"query=" + self._quote(promql)

    def _quote(self, promql: str) -> bytes:
        """URL-encoded, its long quoted strings (the agent matcher of 10,000 names) from
        ``_fragments``: a query whose window changes every cycle (a calendar budget's
        spend so far) encodes its short rest alone. Quoting is per character, so the
        pieces joined are the whole quoted."""
        out: list[bytes] = []
        for i, part in enumerate(_LONG_STRING.split(promql)):
            if i % 2 == 0:
                out.append(quote_plus(part).encode("ascii"))
                continue
            done = self._fragments.get(part)
            if done is None:
                done = quote_plus(part).encode("ascii")
                self._fragments[part] = done
                self._fragment_bytes += len(done)
                while len(self._fragments) > 1 and (
                    len(self._fragments) > _FRAGMENTS or self._fragment_bytes > _FRAGMENT_BYTES
                ):
                    _, dropped = self._fragments.popitem(last=False)
                    self._fragment_bytes -= len(dropped)
            else:
                self._fragments.move_to_end(part)
            out.append(done)
        return b"".join(out)

    async def _call(
        self, path: str, promql: str, params: dict[str, str]
    ) -> tuple[bytes, float, str]:
        """Send one API call with retries: the body of its 200 answer, the round-trip time
        and how messages name the call. The whole call, retries and back-off included,
        ends within ``deadline``; each attempt, body included, within ``timeout``."""
        cfg = self.config
        params = dict(params)
        params["timeout"] = fmt_ts(cfg.timeout)
        if cfg.query_stats:
            params["stats"] = "all"
        form = self._encode(promql) + b"&" + urlencode(params).encode("ascii")
        post = len(form) > cfg.post_threshold
        method = "POST" if post else "GET"
        request = _Request(method, cfg.url + path, promql, form, f"{method} {path} on {self._host}")
        started = time.monotonic()
        try:
            async with asyncio.timeout(cfg.deadline):
                body = await self._attempts(request, started)
        except TimeoutError:
            raise self._unavailable(
                UnavailableReason.TIMEOUT,
                f"{request.where}: no complete answer within the call's deadline {cfg.deadline:g}s",
            ) from None
        return body, time.monotonic() - started, request.where

    async def _attempts(self, request: _Request, started: float) -> bytes:
        """Attempts until a 200, a failure that is not retried, or the deadline."""
        cfg, where = self.config, request.where
        deadline = started + cfg.deadline
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            budget = max(0.001, min(cfg.timeout, deadline - time.monotonic()))
            error: MetricsUnavailable
            try:
                # httpx's read timeout restarts with every byte: a server dripping one byte
                # at a time would never time out. The attempt as a whole has a deadline.
                async with asyncio.timeout(budget):
                    status, response_headers, body = await self._attempt(request)
            except (TimeoutError, httpx.TimeoutException):
                error = self._unavailable(
                    UnavailableReason.TIMEOUT, f"{where}: no complete answer within {budget:.3g}s"
                )
            except TooLargeError as exc:
                raise self._unavailable(
                    UnavailableReason.TOO_LARGE,
                    f"{where}: the answer is larger than max_response_bytes "
                    f"({cfg.max_response_bytes} bytes; {exc}); narrow the query or raise the "
                    "limit",
                ) from None
            except CutShortError as exc:
                error = self._unavailable(
                    UnavailableReason.INVALID_RESPONSE,
                    f"{where}: the answer was cut short after {exc.received} bytes",
                )
            except httpx.TransportError as exc:
                if is_tls_error(exc):
                    raise self._unavailable(
                        UnavailableReason.TLS_ERROR,
                        f"{where}: TLS failed ({cause(exc)}); check ca_file",
                    ) from None
                error = self._unavailable(UnavailableReason.UNREACHABLE, f"{where}: {cause(exc)}")
            else:
                if status == 200:
                    return body
                error, wait = self._failure(request, status, response_headers, body, deadline)
            elapsed = time.monotonic() - started
            if attempt > cfg.retries:
                raise with_attempts(error, attempt, elapsed)
            delay = (
                wait
                if wait is not None
                else random.uniform(0, min(cfg.backoff_cap, cfg.backoff_base * 2 ** (attempt - 1)))
            )
            if time.monotonic() + delay >= deadline:
                raise with_attempts(error, attempt, elapsed, deadline=cfg.deadline)
            log.info("retrying in %.2fs after attempt %d: %s", delay, attempt, error)
            await asyncio.sleep(delay)

    def _failure(
        self,
        request: _Request,
        status: int,
        headers: httpx.Headers,
        body: bytes,
        deadline: float,
    ) -> tuple[MetricsUnavailable, float | None]:
        """A non-200 answer: the error to retry on and the wait ``Retry-After`` asks for, or
        (raised) the error that is not retried."""
        where = request.where
        if 300 <= status < 400:
            raise self._unavailable(
                UnavailableReason.REDIRECTED,
                f"{where}: HTTP {status} redirect, not followed; set url to the address that "
                "answers",
            )
        detail = error_detail(body)
        if status == 429:
            wait = retry_after(headers)
            error = self._unavailable(
                UnavailableReason.RATE_LIMITED,
                f"{where}: HTTP 429 Too Many Requests"
                + (f", Retry-After {wait:g}s" if wait is not None else ""),
            )
            left = deadline - time.monotonic()
            if wait is not None and (wait > self.config.max_retry_after or wait > left):
                raise error
            return error, wait
        if status in (401, 403):
            raise self._unavailable(
                UnavailableReason.UNAUTHORIZED,
                f"{where}: HTTP {status}: {detail.text}; check the bearer token, basic auth "
                "and tenant",
            )
        if status == 404:
            raise self._unavailable(
                UnavailableReason.NOT_FOUND, f"{where}: HTTP 404; check the url and its path prefix"
            )
        if status == 408:
            return self._unavailable(
                UnavailableReason.TIMEOUT, f"{where}: HTTP 408: {detail.text}"
            ), None
        if status >= 500:
            return self._unavailable(
                UnavailableReason.SERVER_ERROR, f"{where}: HTTP {status}: {detail.text}"
            ), None
        if status in (400, 422) and detail.prometheus:
            # Prometheus' own refusal: bad_data (400) or execution (422).
            raise QueryError(
                self._scrub(detail.text), error_type=detail.error_type, query=request.promql
            )
        if 400 <= status < 500:
            raise self._unavailable(
                UnavailableReason.CLIENT_ERROR, f"{where}: HTTP {status}: {detail.text}"
            )
        raise self._unavailable(
            UnavailableReason.INVALID_RESPONSE,
            f"{where}: HTTP {status} is not an answer of the Prometheus API",
        )

    async def _attempt(self, request: _Request) -> tuple[int, httpx.Headers, bytes]:
        """One request; its body read as a stream and never past the size cap."""
        headers = self._headers()
        if request.method == "POST":
            headers.update(_FORM)
            stream = self._client.stream("POST", request.url, content=request.form, headers=headers)
        else:
            url = f"{request.url}?{request.form.decode('ascii')}"
            stream = self._client.stream("GET", url, headers=headers)
        async with stream as response:
            status = response.status_code
            limit = self.config.max_response_bytes if status == 200 else MAX_ERROR_BODY
            declared = response.headers.get("Content-Length", "")
            if status == 200 and declared.isdigit() and int(declared) > limit:
                raise TooLargeError(f"Content-Length {declared}")
            chunks: list[bytes] = []
            size = 0
            try:
                # Decoded bytes are counted, so a compressed answer cannot expand past it.
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        if status == 200:
                            raise TooLargeError(f"more than {limit} bytes received")
                        break  # an error's body is only read for its message
                    chunks.append(chunk)
            except httpx.TimeoutException:
                raise
            except httpx.TransportError:
                raise CutShortError(size) from None
            return status, response.headers, b"".join(chunks)


class _Request:
    """One API call as sent on every attempt."""

    __slots__ = ("form", "method", "promql", "url", "where")

    def __init__(self, method: str, url: str, promql: str, form: bytes, where: str) -> None:
        self.method = method
        self.url = url
        self.promql = promql
        self.form = form
        """The parameters, URL-encoded: the POST body, or the GET query string."""
        self.where = where
        """How messages name the call: method, API path and host, never the URL."""


def _at(at: datetime) -> str:
    return fmt_ts(to_unix(at))
