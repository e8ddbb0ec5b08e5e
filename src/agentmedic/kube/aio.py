"""The async client: ``httpx`` with the credentials of a ``kubernetes`` configuration.

For the label-selected lists and long-lived watches of the workload cache. Requests share
one connection pool; every watch has a connection (and a pool) of its own. A watch holds
its connection for minutes and a policy-rich operator holds hundreds of them: in one
shared pool, httpx scans every connection of the pool each time a request is sent or a
response closes, so when the server ends a few hundred watches at once (their
``timeoutSeconds``) their reopening costs a quadratic number of scans (seconds of CPU at
200 watches, during which most watches are not open), and a bounded pool would starve the
watches beyond its size.

Errors are :mod:`agentmedic.kube.errors`, retries follow
:class:`~agentmedic.kube.retry.RetryPolicy`, as in the sync client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from agentmedic.kube.errors import Unavailable, error_for_status, unreachable
from agentmedic.kube.retry import RetryPolicy

__all__ = ["AsyncKube", "authorization"]

log = logging.getLogger(__name__)


def authorization(configuration: Any) -> str | None:
    """The ``Authorization`` header value of a kubernetes client configuration, if any.

    The kubeconfig and in-cluster loaders of kubernetes client 30+ store the token under
    ``BearerToken`` (already prefixed ``Bearer``); ``authorization`` is the older key and
    what a configuration built by hand may use. Reading only the latter sent every kopf and
    watch request of a token-authenticated operator as system:anonymous."""
    if not configuration.api_key:
        return None
    value = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(value) if value else None


def ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the kubeconfig says. One context, not httpx's ``verify=<path>`` plus
    ``cert=``: httpx returns early for a CA path and never loads the client certificate,
    so a kubeconfig with a private CA and a client certificate (kind, kubeadm, the local
    control plane) was answered as system:anonymous (403 on every watch)."""
    if getattr(configuration, "verify_ssl", True) is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif getattr(configuration, "ssl_ca_cert", None):
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        context = httpx.create_ssl_context()  # certifi, as httpx does by default
    if getattr(configuration, "cert_file", None):
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _what(verb: str, path: str) -> str:
    return f"{verb} {path}"


class AsyncKube:
    """Lists and watches over ``httpx.AsyncClient``, with the kubernetes client's auth.

    ``transport`` replaces the network (``httpx.MockTransport`` in unit tests); ``sleep``
    and ``rng`` let tests observe the backoff without waiting for it.
    """

    def __init__(
        self,
        configuration: Any,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._conf = configuration
        self._transport = transport
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._verify = ssl_context(configuration)
        # No read timeout: a LIST of many workloads may stream for a while, and a watch
        # is quiet between events for up to its timeoutSeconds.
        self._timeouts = httpx.Timeout(timeout, read=None)
        self.client = httpx.AsyncClient(
            base_url=configuration.host,
            verify=self._verify,
            timeout=self._timeouts,
            transport=transport,
        )
        self._watch_clients: set[httpx.AsyncClient] = set()

    observe: Callable[[str, str], None] | None = None
    """Called with (verb, path) for every request (the operator counts them)."""

    def _headers(self) -> dict[str, str]:
        hook = getattr(self._conf, "refresh_api_key_hook", None)
        if hook is not None:
            hook(self._conf)  # in-cluster tokens rotate; the hook re-reads the mounted file
        token = authorization(self._conf)
        return {"Authorization": token} if token else {}

    async def get_json(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` (a LIST when ``params`` has a labelSelector) and return its JSON,
        retrying transient failures."""
        verb = "list" if params.get("labelSelector") is not None else "get"
        retry_no = 0
        while True:
            try:
                return await self._get_once(verb, path, params)
            except Unavailable as error:
                if self.retry.gives_up_after(retry_no):
                    raise
                pause = self.retry.delay(retry_no, self._rng, error.retry_after)
                log.info("%s failed (%s), retrying in %.2fs", verb, error.status, pause)
            await self._sleep(pause)
            retry_no += 1

    async def _get_once(self, verb: str, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        if self.observe is not None:
            self.observe(verb, path)
        what = _what(verb, path)
        try:
            response = await self.client.get(path, params=dict(params), headers=self._headers())
        except httpx.TransportError as exc:
            raise unreachable(what, exc) from None
        if not response.is_success:
            raise _error(what, response, response.content)
        try:
            data = response.json()
        except ValueError:
            raise Unavailable(f"{what}: the API server's answer is not JSON") from None
        if not isinstance(data, dict):
            raise Unavailable(f"{what}: the API server's answer is not an object")
        return data

    def _watch_client(self) -> httpx.AsyncClient:
        """A client whose pool holds one connection: a watch's (the TLS context is shared,
        so making one costs no certificate loading)."""
        client = httpx.AsyncClient(
            base_url=self._conf.host,
            verify=self._verify,
            timeout=self._timeouts,
            transport=self._transport,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
        )
        self._watch_clients.add(client)
        return client

    @property
    def open_watches(self) -> int:
        """Watch streams open (each on a connection of its own)."""
        return len(self._watch_clients)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, str]) -> AsyncIterator[httpx.Response]:
        """A streamed GET on a connection of its own (no retries: the watcher lists
        again); the connection closes with the stream."""
        if self.observe is not None:
            self.observe("watch", path)
        what = _what("watch", path)
        client = self._watch_client()
        try:
            async with client.stream(
                "GET", path, params=dict(params), headers=self._headers()
            ) as response:
                if not response.is_success:
                    raise _error(what, response, await response.aread())
                yield response
        except httpx.TransportError as exc:
            raise unreachable(what, exc) from None
        finally:
            self._watch_clients.discard(client)
            if self._transport is None:  # a transport passed in is the caller's to close
                await client.aclose()

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch, parsed, until the server ends it. An ``ERROR`` event
        raises its error (:class:`~agentmedic.kube.errors.Gone` for an expired version)."""
        what = _what("watch", path)
        async with self.stream(path, params) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise Unavailable(f"{what}: a watch event is not JSON") from None
                if not isinstance(event, dict):
                    raise Unavailable(f"{what}: a watch event is not an object")
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = status.get("code") if isinstance(status, dict) else None
                    raise error_for_status(what, int(code or 500), status)
                yield event

    async def aclose(self) -> None:
        await self.client.aclose()
        for client in list(self._watch_clients):
            await client.aclose()
        self._watch_clients.clear()


def _error(what: str, response: httpx.Response, body: bytes) -> Exception:
    reason = response.reason_phrase
    return error_for_status(
        what, response.status_code, body, headers=response.headers, http_reason=reason
    )
