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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

import yaml
from aiohttp import web

from agentmedic_sandbox._emulator_patch import clone
from agentmedic_sandbox._emulator_resources import Resource
from agentmedic_sandbox._emulator_store import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ApiError,
    Store,
    Watcher,
)

if TYPE_CHECKING:
    import kopf
    import kubernetes.client

__all__ = ["ApiEmulator", "ApiError", "RecordedRequest"]

_log = logging.getLogger(__name__)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_PATCH, "json": JSON_PATCH}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered (or a fault it injected)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    status: int
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection, discovery
    body: Any = None  # the parsed JSON body, if any
    injected: bool = False  # answered by a fault from ``inject``

    @property
    def is_write(self) -> bool:
        """POST, PUT, PATCH or DELETE."""
        return self.method in _WRITE_METHODS


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    delay: float
    body: dict[str, Any] | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0 and self.method in ("*", method) and bool(self.pattern.search(path))
        )


@dataclass(frozen=True)
class _Target:
    """A resource URL, parsed."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool = False


def _parse_path(path: str) -> _Target | None:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"  # the deprecated /watch/ prefix
    if watch_path:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3 or not all(rest):
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return _Target(group, version, plural, namespace, name, subresource, watch_path)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0+agentmedic-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _list_kind(res: Resource) -> str:
    return f"{res.kind}List"


class ApiEmulator:
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
        self._history: deque[RecordedRequest] = deque(maxlen=history_limit)
        self._history_lock = threading.Lock()
        self._faults: list[_Fault] = []
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
        sock = self._bind()
        await web.SockSite(self._runner, sock).start()
        self._port = int(sock.getsockname()[1])
        self._stopping = asyncio.Event()
        self._ready.set()
        await self._stopping.wait()
        # End the watch streams cleanly before the runner cancels what is left.
        self._store.close_watches()
        if self._watch_tasks:
            await asyncio.wait(self._watch_tasks, timeout=2)

    def _bind(self) -> socket.socket:
        # A restarted emulator keeps its URL when it can, so clients configured before a
        # stop() reconnect after start().
        for port in (self._port_hint, 0) if self._port_hint else (0,):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen(128)
            self._port_hint = int(sock.getsockname()[1])
            return sock
        raise RuntimeError("no free loopback port")

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

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
        """Install (or update) the AgentPolicy CRD generated from the API models."""
        from agentmedic.api.crd import crd_manifest

        self.apply(crd_manifest())

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
        with self._history_lock:
            return list(self._history)

    def write_requests(self) -> builtins.list[RecordedRequest]:
        """The recorded POST/PUT/PATCH/DELETE requests."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._history_lock:
            self._history.clear()

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
        with self._history_lock:
            self._faults.append(
                _Fault(method.upper(), re.compile(path_regex), status, times, delay, body)
            )

    def clear_faults(self) -> None:
        """Drop injected faults that have not fired yet."""
        with self._history_lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._history_lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if not fault.remaining:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(
        self, request: web.Request, status: int, verb: str, body: Any, injected: bool = False
    ) -> None:
        content_type = request.headers.get("Content-Type")
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            content_type=content_type,
            status=status,
            verb=verb,
            body=body,
            injected=injected,
        )
        with self._history_lock:
            self._history.append(recorded)

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
                    self._record(request, 400, "invalid", None)
                    return _json(ApiError(400, "the request body is not valid JSON").status(), 400)
        target = _parse_path(request.path)
        verb = self._verb(request, target)
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.body is not None or fault.status >= 400:
                self._record(request, fault.status, verb, body, injected=True)
                payload = (
                    fault.body
                    if fault.body is not None
                    else ApiError(fault.status, f"injected fault: {fault.status}").status()
                )
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                return _json(payload, fault.status, headers)
        try:
            if target is None:
                response = self._discovery(request.path)
            elif verb == "watch":
                return await self._watch(request, target)
            else:
                response = self._resource_request(request, target, verb, body)
        except ApiError as exc:
            response = _json(exc.status(), exc.code)
        except Exception as exc:
            # A bug in the emulator must reach the client as a Status it can parse (and the
            # test log), not as a dropped connection.
            _log.exception("API emulator failed on %s %s", request.method, request.path)
            response = _json(ApiError(500, f"emulator error: {exc!r}").status(), 500)
        self._record(request, response.status, verb, body)
        return response

    @staticmethod
    def _verb(request: web.Request, target: _Target | None) -> str:
        if target is None:
            return "discovery"
        method = request.method
        if method == "GET" and (request.query.get("watch") in ("true", "1") or target.watch_path):
            return "watch"
        if target.name is None:
            return {"GET": "list", "POST": "create", "DELETE": "deletecollection"}.get(
                method, "unknown"
            )
        return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "unknown"
        )

    def _resource_request(
        self, request: web.Request, target: _Target, verb: str, body: Any
    ) -> web.Response:
        store = self._store
        res = store.resource(target.group, target.version, target.plural)
        if res.namespaced and target.namespace is None and verb not in ("list",):
            raise ApiError(404, "the server could not find the requested resource")
        if not res.namespaced and target.namespace is not None:
            raise ApiError(404, "the server could not find the requested resource")
        query = request.query
        dry_run = query.get("dryRun") == "All"
        ns, name, sub = target.namespace, target.name, target.subresource
        if sub not in (None, "status", "scale"):
            raise ApiError(
                404, f"the server could not find the requested resource ({res.plural}/{sub})"
            )
        if (sub == "status" and not res.status) or (sub == "scale" and not res.scale):
            raise ApiError(
                404, f"the server could not find the requested resource ({res.plural}/{sub})"
            )
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if verb == "list":
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
            page = store.list_objects(
                res,
                ns,
                labels=query.get("labelSelector"),
                fields=query.get("fieldSelector"),
                limit=limit,
                continue_token=query.get("continue"),
            )
            meta: dict[str, Any] = {"resourceVersion": str(page.resource_version)}
            if page.continue_token:
                meta["continue"] = page.continue_token
                meta["remainingItemCount"] = page.remaining
            return _json(
                {
                    "kind": _list_kind(res),
                    "apiVersion": res.api_version,
                    "metadata": meta,
                    "items": page.items,
                }
            )
        if verb == "create":
            if sub is not None:
                raise ApiError(405, "method not allowed on a subresource")
            return _json(store.create(res, ns, body, dry_run=dry_run), 201)
        if verb == "deletecollection":
            items, rv = store.delete_collection(
                res,
                ns,
                labels=query.get("labelSelector"),
                fields=query.get("fieldSelector"),
                options=body if isinstance(body, dict) else None,
                dry_run=dry_run,
            )
            return _json(
                {
                    "kind": _list_kind(res),
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                }
            )
        assert name is not None
        if sub == "scale":
            if verb == "get":
                return _json(store.get_scale(res, ns, name))
            if verb in ("update", "patch"):
                return _json(
                    store.write_scale(
                        res,
                        ns,
                        name,
                        body,
                        content_type if verb == "patch" else None,
                        dry_run=dry_run,
                    )
                )
            raise ApiError(405, "the scale subresource supports get, update and patch")
        if verb == "get":
            return _json(store.get(res, ns, name))
        if verb == "update":
            return _json(store.update(res, ns, name, body, subresource=sub, dry_run=dry_run))
        if verb == "patch":
            return _json(
                store.patch(res, ns, name, body, content_type, subresource=sub, dry_run=dry_run)
            )
        if verb == "delete":
            if sub is not None:
                raise ApiError(405, "delete is not supported on a subresource")
            options = dict(body) if isinstance(body, dict) else {}
            if "propagationPolicy" in query:
                options["propagationPolicy"] = query["propagationPolicy"]
            return _json(store.delete(res, ns, name, options, dry_run=dry_run))
        raise ApiError(
            405,
            f"the server does not allow this method on the requested resource ({request.method})",
            reason="MethodNotAllowed",
        )

    async def _watch(self, request: web.Request, target: _Target) -> web.StreamResponse:
        store = self._store
        query = request.query
        try:
            res = store.resource(target.group, target.version, target.plural)
            fields = query.get("fieldSelector") or ""
            if target.name is not None:  # a watch on one object is a metadata.name selector
                fields = ",".join(filter(None, [fields, f"metadata.name={target.name}"]))
            labels, field_selector = store.check_selectors(res, query.get("labelSelector"), fields)
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        except (ApiError, ValueError) as exc:
            error = exc if isinstance(exc, ApiError) else ApiError(400, str(exc))
            self._record(request, error.code, "watch", None)
            return _json(error.status(), error.code)
        loop = asyncio.get_running_loop()
        watcher = Watcher(
            res,
            target.namespace if res.namespaced else None,
            labels,
            field_selector,
            asyncio.Queue(),
            loop,
        )
        bookmarks = query.get("allowWatchBookmarks") == "true"
        send_initial = query.get("sendInitialEvents") == "true" and bookmarks
        try:
            first, registered = store.watch(
                watcher, query.get("resourceVersion"), send_initial=send_initial
            )
        except ApiError as exc:
            self._record(request, exc.code, "watch", None)
            return _json(exc.status(), exc.code)
        self._record(request, 200, "watch", None)
        task = asyncio.current_task()
        assert task is not None
        self._watch_tasks.add(task)
        try:
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for initial in first:
                await response.write(initial)
            if registered:
                await self._stream(response, watcher, timeout, bookmarks)
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            store.unwatch(watcher)
            self._watch_tasks.discard(task)
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        seconds: float | None,
        bookmarks: bool,
    ) -> None:
        """Write the watcher's lines until ``seconds`` pass or the emulator stops."""
        loop = watcher.loop
        deadline = loop.time() + seconds if seconds is not None else None
        next_bookmark = loop.time() + self._bookmark_interval
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                self._store.bookmark(watcher)
                next_bookmark = now + self._bookmark_interval
            wait = next_bookmark - now if bookmarks else None
            if deadline is not None:
                wait = min(wait, deadline - now) if wait is not None else deadline - now
            try:
                line = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
            except TimeoutError:
                continue
            if line is None:
                return
            await response.write(line)

    def _discovery(self, path: str) -> web.Response:
        store = self._store
        path = "/" + path.strip("/")
        with store.lock:
            resources = list(store.resources.values())
        groups: dict[str, builtins.list[str]] = {}
        for res in resources:
            if res.group:
                versions = groups.setdefault(res.group, [])
                if res.version not in versions:
                    versions.append(res.version)
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
            for group, versions in groups.items():
                paths += [f"/apis/{group}"] + [f"/apis/{group}/{v}" for v in versions]
            return _json({"paths": sorted(set(paths))})
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(_VERSION)
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                    ],
                }
            )
        if path == "/apis":
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._group_doc(g, v) for g, v in sorted(groups.items())],
                }
            )
        parts = path.strip("/").split("/")
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1", resources)
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
            return _json(
                {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    **self._group_doc(parts[1], groups[parts[1]]),
                }
            )
        if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []):
            return self._resource_list(parts[1], parts[2], resources)
        raise ApiError(404, "the server could not find the requested resource")

    @staticmethod
    def _group_doc(group: str, versions: builtins.list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    @staticmethod
    def _resource_list(
        group: str, version: str, resources: builtins.list[Resource]
    ) -> web.Response:
        entries = [
            entry
            for res in resources
            if res.group == group and res.version == version
            for entry in res.discovery_entries()
        ]
        return _json(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": entries,
            }
        )
