"""A loopback proxy in front of a real Prometheus that acts as one tenant of Mimir would:
it answers only requests carrying its ``X-Scope-OrgID`` and bearer token (401 otherwise)
and records every query it forwards.

    async with TenantProxy(prometheus.url, tenant="team-a", token="t0k") as proxy:
        ...  # point a MetricsBackend at proxy.url
        proxy.queries   # the PromQL texts forwarded, in order
        proxy.refused   # (tenant, authorization) of the requests it refused
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web


class TenantProxy:
    def __init__(self, upstream: str, *, tenant: str, token: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.tenant = tenant
        self.token = token
        self.queries: list[str] = []
        self.refused: list[tuple[str | None, str | None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        tenant = request.headers.get("X-Scope-OrgID")
        auth = request.headers.get("Authorization")
        if tenant != self.tenant or auth != f"Bearer {self.token}":
            self.refused.append((tenant, auth))
            return web.Response(status=401, text="no org id or wrong credentials")
        body = await request.read()
        form = await request.post() if request.method == "POST" else request.query
        query = form.get("query")
        if isinstance(query, str):
            self.queries.append(query)
        assert self._session is not None
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.path}",
            params=request.query,
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        ) as answer:
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )
