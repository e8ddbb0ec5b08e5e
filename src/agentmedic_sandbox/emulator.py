"""An in-process Kubernetes API server for tests and the demo sandbox.

``ApiEmulator`` serves the Kubernetes REST API on loopback from its own event loop in a
daemon thread, so the synchronous ``kubernetes`` client, async tests and kopf (in another
loop) can all use it without blocking each other::

    with ApiEmulator() as api:
        client = kubernetes.client.ApiClient(api.client_configuration())
        apps = kubernetes.client.AppsV1Api(client)
        ...
        assert not [r for r in api.requests if r.is_write]

It started from kmock's ``KubernetesEmulator`` and keeps its idea (objects in memory,
discovery, watch streams) but serves with its own aiohttp handlers over an indexed store,
with the API server's semantics where agentmedic relies on them: resourceVersion, uid,
generation, optimistic concurrency (409), PATCH by content type, status and scale
subresources, selectors, resumable watches, CRD schema validation, garbage collection by
owner references, a bounded request history and fault injection. ``tests/README.md`` lists
what still differs from a real API server.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from agentmedic_sandbox._emulator_http import (
    discovery,
    json_response,
    parse_path,
    resource_request,
    serve_watch,
    verb_of,
)
from agentmedic_sandbox._emulator_patch import clone
from agentmedic_sandbox._emulator_requests import Fault, RecordedRequest, RequestLog
from agentmedic_sandbox._emulator_resources import Resource
from agentmedic_sandbox._emulator_store import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ApiError,
    Store,
)
from agentmedic_sandbox._lifecycle import Lifecycle

if TYPE_CHECKING:
    import kopf
    import kubernetes.client

__all__ = ["ApiEmulator", "ApiError", "RecordedRequest"]

_log = logging.getLogger(__name__)
_PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_PATCH, "json": JSON_PATCH}


def _bind_loopback(preferred: int) -> socket.socket:
    """A listening socket on 127.0.0.1, on port ``preferred`` when it is free."""
    # A restarted emulator keeps its URL when it can, so clients configured before a
    # stop() reconnect after start().
    for port in (preferred, 0) if preferred else (0,):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise RuntimeError("no free loopback port")


class ApiEmulator(Lifecycle):
    """A Kubernetes API server on 127.0.0.1, in memory, in its own thread."""

    def __init__(
        self,
        *,
        history_limit: int = 500,
        event_window: int = 20_000,
        bookmark_interval: float = 60.0,
        auto_namespaces: bool = True,
        install_crd: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Create a stopped emulator; ``start()`` (or ``with``) serves it.

        history_limit: how many requests ``requests`` keeps (oldest dropped first).
        event_window: how many changes a watch can resume across (older: 410 Gone).
        bookmark_interval: seconds between BOOKMARK events on watches that allow them.
        auto_namespaces: create a missing namespace on first use instead of answering 404.
        install_crd: serve the AgentPolicy CRD from the start.
        clock: the source of creation and deletion timestamps (UTC now by default).
        """
        self._store = Store(event_window=event_window, auto_namespaces=auto_namespaces, clock=clock)
        self._log = RequestLog(history_limit)
        self._bookmark_interval = bookmark_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._port_hint = 0
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self._ready = threading.Event()
        if install_crd:
            self.apply_crd()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (only while started)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Bind a free loopback port and serve from a daemon thread; return once serving."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        ready = self._ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
            finally:
                ready.set()
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="agentmedic-api-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the API emulator did not start within 30 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the API emulator failed to start") from failure[0]

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=1.0,
            handle_signals=False,
            # A client that hangs up cancels its handler, so a dropped watch unregisters.
            handler_cancellation=True,
        )
        await self._runner.setup()
        sock = _bind_loopback(self._port_hint)
        self._port_hint = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        self._port = int(sock.getsockname()[1])
        self._stopping = asyncio.Event()
        self._ready.set()
        await self._stopping.wait()
        # End the watch streams cleanly before the runner cancels what is left.
        self._store.close_watches()
        if self._watch_tasks:
            await asyncio.wait(self._watch_tasks, timeout=2)

    def stop(self) -> None:
        """End watch streams, close the port and join the thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._runner = None
        self._port = None

    # --- client configuration --------------------------------------------------------------

    def client_configuration(self) -> kubernetes.client.Configuration:
        """A ``kubernetes`` client configuration pointing at this emulator, without auth."""
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.url
        return config

    def kubeconfig_dict(self, *, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig (as a dict) whose current context is this emulator."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "agentmedic-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "agentmedic-emulator", "user": {"token": "emulator"}}],
            "contexts": [
                {
                    "name": "agentmedic-emulator",
                    "context": {
                        "cluster": "agentmedic-emulator",
                        "user": "agentmedic-emulator",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "agentmedic-emulator",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write ``kubeconfig_dict()`` as YAML to ``path`` and return it."""
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig_dict(), sort_keys=False))
        return target

    def login_kopf(self) -> kopf.ConnectionInfo:
        """Credentials for a kopf ``@kopf.on.login()`` handler."""
        import kopf

        return kopf.ConnectionInfo(server=self.url, default_namespace="default")

    # --- direct access (thread-safe, no HTTP, not recorded) --------------------------------

    def apply_crd(self) -> None:
        """Install (or update) every CRD generated from the API models (AgentPolicy and
        the kinds registered beside it)."""
        from agentmedic.api.crd import crd_manifests

        for crd in crd_manifests():
            self.apply(crd)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``, or replace the existing one of that name (like ``kubectl apply``
        without the three-way merge)."""
        res = self._resource_of(obj)
        meta = obj.get("metadata") or {}
        with self._store.lock:
            existing = self._store.find(res, meta.get("namespace"), meta.get("name", ""))
            if existing is None:
                return self.create(obj)
            body = clone(obj)
            body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"][
                "resourceVersion"
            ]
            result = self._store.update(res, meta.get("namespace"), meta["name"], body)
            if "status" in obj and res.status:
                result = self._store.update(
                    res,
                    meta.get("namespace"),
                    meta["name"],
                    {**body, "metadata": result["metadata"]},
                    subresource="status",
                )
            return clone(result)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (its apiVersion and kind pick the resource) and return it as
        stored. Unlike a POST, a ``status`` given here is kept, to seed test fixtures."""
        res = self._resource_of(obj)
        created = self._store.create(
            res, (obj.get("metadata") or {}).get("namespace"), obj, keep_status=True
        )
        return clone(created)

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None."""
        res = self._store.resource_for(api_version, kind)
        found = self._store.find(res, namespace, name)
        return clone(found) if found is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a kind (in a namespace, or everywhere), sorted by namespace and name."""
        res = self._store.resource_for(api_version, kind)
        page = self._store.list_objects(res, namespace, labels=label_selector)
        return clone(page.items)

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object (``patch_type``: merge, strategic or json), e.g. to play a
        controller: ``patch(..., {"status": {...}}, subresource="status")``."""
        res = self._store.resource_for(api_version, kind)
        if subresource == "scale":
            return clone(
                self._store.write_scale(res, namespace, name, patch, _PATCH_TYPES[patch_type])
            )
        return clone(
            self._store.patch(
                res, namespace, name, patch, _PATCH_TYPES[patch_type], subresource=subresource
            )
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
    ) -> dict[str, Any] | None:
        """Delete an object as a DELETE would (finalizers honoured); None if absent."""
        res = self._store.resource_for(api_version, kind)
        with self._store.lock:
            if self._store.find(res, namespace, name) is None:
                return None
            return clone(
                self._store.delete(res, namespace, name, {"propagationPolicy": propagation_policy})
            )

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion (of the last write anywhere)."""
        with self._store.lock:
            return str(self._store.rv)

    @property
    def open_watches(self) -> int:
        """How many watch streams are being served (a leak check for tests)."""
        with self._store.lock:
            return len(self._store.watchers)

    def _resource_of(self, obj: dict[str, Any]) -> Resource:
        return self._store.resource_for(str(obj.get("apiVersion")), str(obj.get("kind")))

    # --- request history and faults --------------------------------------------------------

    @property
    def requests(self) -> builtins.list[RecordedRequest]:
        """The most recent requests (at most ``history_limit``), oldest first."""
        return self._log.requests()

    def write_requests(self) -> builtins.list[RecordedRequest]:
        """The recorded POST/PUT/PATCH/DELETE requests."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._log.clear_requests()

    @property
    def faults_taken(self) -> int:
        """How many requests an injected fault has caught so far (tests wait on it to act
        while a request is in flight)."""
        return self._log.faults_taken

    def inject(
        self,
        *,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        delay: float = 0.0,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Make the next ``times`` requests with ``method`` (or ``"*"``) whose path matches
        ``path_regex`` (``re.search``) fail or slow down.

        After ``delay`` seconds, the request is answered with ``status`` and ``body`` (a
        Kubernetes ``Status`` for error codes when no body is given) without touching the
        store; a status below 400 without a body only delays the real handling.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._log.inject(Fault(method.upper(), re.compile(path_regex), status, times, delay, body))

    def clear_faults(self) -> None:
        """Drop injected faults that have not fired yet."""
        self._log.clear_faults()

    # --- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
                if request.method in ("POST", "PUT", "PATCH"):
                    self._log.record(request, 400, "invalid", None)
                    return json_response(
                        ApiError(400, "the request body is not valid JSON").status(), 400
                    )
        target = parse_path(request.path)
        verb = verb_of(request, target)
        fault = self._log.take_fault(request.method, request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.body is not None or fault.status >= 400:
                self._log.record(request, fault.status, verb, body, injected=True)
                payload = (
                    fault.body
                    if fault.body is not None
                    else ApiError(fault.status, f"injected fault: {fault.status}").status()
                )
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                return json_response(payload, fault.status, headers)
        try:
            if target is None:
                response = discovery(self._store, request.path)
            elif verb == "watch":
                return await serve_watch(
                    self._store,
                    self._log,
                    request,
                    target,
                    bookmark_interval=self._bookmark_interval,
                    tasks=self._watch_tasks,
                )
            else:
                response = resource_request(self._store, request, target, verb, body)
        except ApiError as exc:
            response = json_response(exc.status(), exc.code)
        except Exception as exc:
            # A bug in the emulator must reach the client as a Status it can parse (and the
            # test log), not as a dropped connection.
            _log.exception("API emulator failed on %s %s", request.method, request.path)
            response = json_response(ApiError(500, f"emulator error: {exc!r}").status(), 500)
        self._log.record(request, response.status, verb, body)
        return response
