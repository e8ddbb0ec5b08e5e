"""A loopback HTTP proxy in front of a real Prometheus that answers with a chosen fault.

    async with FaultProxy(prometheus.url) as proxy:
        proxy.fault = "redirect"       # every answer from now on is a 302
        ...
        proxy.fault = None             # pass-through again

It runs in the caller's event loop (aiohttp). Faults that need an upstream answer (value
rewrites, malformed shapes, truncation) forward the request first and damage the answer;
the others answer on their own. :data:`FAULTS` lists them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


def _each_sample(change: Callable[[dict[str, Any]], None]) -> Rewrite:
    def rewrite(answer: dict[str, Any]) -> dict[str, Any]:
        result = answer.get("data", {}).get("result")
        if isinstance(result, list):
            for item in result:
                change(item)
        return answer

    return rewrite


def _value(new: Any) -> Rewrite:
    def change(item: dict[str, Any]) -> None:
        if "value" in item:
            item["value"][1] = new

    return _each_sample(change)


def _set(field: str, new: Any) -> Rewrite:
    def change(item: dict[str, Any]) -> None:
        item[field] = new

    return _each_sample(change)


def _top(path: tuple[str, ...], new: Any) -> Rewrite:
    def rewrite(answer: dict[str, Any]) -> dict[str, Any]:
        target = answer
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = new
        return answer

    return rewrite


REWRITES: dict[str, Rewrite] = {
    "value-nan": _value("NaN"),
    "value-plus-inf": _value("+Inf"),
    "value-minus-inf": _value("-Inf"),
    "value-word": _value("abc"),
    "value-true": _value(True),
    "value-list": _each_sample(lambda item: item.update(value=[item.get("value")])),
    "metric-string": _set("metric", "agent=x"),
    "metric-null": _set("metric", None),
    "metric-list": _set("metric", ["agent", "x"]),
    "warnings-number": _top(("warnings",), 5),
    "stats-timings-string": _top(("data", "stats"), {"timings": "fast"}),
    "result-object": _top(("data", "result"), {}),
    "status-error-200": lambda answer: {"status": "error", "errorType": "x", "error": "proxy"},
    "scalar-result": _top(("data",), {"resultType": "scalar", "result": [1, "1"]}),
}
"""Faults that damage a real answer."""

STATUS: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "redirect-302": (302, b"", {"Location": "https://sso.example/login?next=/api/v1/query"}),
    "redirect-307": (307, b"", {"Location": "https://other.example/api/v1/query"}),
    "unauthorized-401": (401, b"Unauthorized", {}),
    "forbidden-403": (403, b"Forbidden", {}),
    "not-found-404": (404, b"404 page not found", {}),
    "timeout-408": (408, b"Request Timeout", {}),
    "rate-limited-429": (429, b"slow down", {}),
    "bad-request-400": (400, b"Bad Request", {}),
    "server-error-500": (500, b"Internal Server Error", {}),
    "bad-gateway-502": (502, b"Bad Gateway", {}),
    "unavailable-503": (503, b"Service Unavailable", {}),
    "bad-data-400": (
        400,
        json.dumps(
            {"status": "error", "errorType": "bad_data", "error": "1:1: parse error"}
        ).encode(),
        {"Content-Type": "application/json"},
    ),
    "not-json": (200, b"<html><body>Sign in</body></html>", {"Content-Type": "text/html"}),
    "empty-body": (200, b"", {}),
}
"""Faults answered with a fixed status and body."""

STREAMED = ("truncated", "reset", "hang", "drip", "oversized")
"""Faults of the connection itself."""

FAULTS: tuple[str, ...] = (*STATUS, *REWRITES, *STREAMED)


class FaultProxy:
    """Forwards ``/api/v1/*`` to ``upstream`` unless :attr:`fault` says otherwise."""

    def __init__(self, upstream: str, *, drip_pause: float = 0.05) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault: str | None = None
        self.drip_pause = drip_pause
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()  # hanging handlers end now, not at aiohttp's shutdown timeout
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> tuple[int, bytes]:
        assert self._session is not None
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body or None,
            headers={"Content-Type": request.headers.get("Content-Type", "")} if body else None,
        ) as upstream:
            return upstream.status, await upstream.read()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        fault = self.fault
        if fault is None:
            status, body = await self._forward(request)
            return web.Response(status=status, body=body, content_type="application/json")
        if fault in STATUS:
            status, body, headers = STATUS[fault]
            return web.Response(status=status, body=body, headers=headers)
        if fault in REWRITES:
            status, body = await self._forward(request)
            damaged = REWRITES[fault](json.loads(body))
            return web.Response(
                status=status, body=json.dumps(damaged).encode(), content_type="application/json"
            )
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = getattr(self, "_" + fault)
        return await handler(request)

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        _, body = await self._forward(request)
        response = web.StreamResponse(status=200, headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()  # the peer sees the connection end mid-body
        return response

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()  # no answer at all: the connection is dropped
        return web.Response(status=500)

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """No answer until the client gives up (or the proxy closes)."""
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.05)
        return web.Response(status=500)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        """A correct answer, one byte at a time: each byte restarts a read timeout."""
        _, body = await self._forward(request)
        response = web.StreamResponse(status=200, headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        for i in range(len(body)):
            if self._closing.is_set():
                break
            await response.write(body[i : i + 1])
            await asyncio.sleep(self.drip_pause)
        return response

    async def _oversized(self, request: web.Request) -> web.StreamResponse:
        """A never-ending answer, as fast as the client reads it."""
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * 65536
        while not self._closing.is_set():
            await response.write(chunk)
        return response
