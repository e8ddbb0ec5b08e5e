"""The emulator's REST routing: URLs parsed, requests turned into calls on the store.

:func:`parse_path` reads a resource URL; :func:`verb_of` names the request's verb as the
API server's audit log would; :func:`resource_request` serves get, list, create, update,
patch, delete and deletecollection (and the status and scale subresources) from the
:class:`~agentmedic_sandbox._emulator_store.Store`; :func:`serve_watch` streams a watch;
:func:`discovery` answers the discovery paths. Errors are raised as
:class:`ApiError`; the server turns them into a Kubernetes ``Status``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from agentmedic_sandbox._emulator_objects import check_selectors
from agentmedic_sandbox._emulator_requests import RequestLog
from agentmedic_sandbox._emulator_resources import Resource
from agentmedic_sandbox._emulator_store import ApiError, Store, Watcher

__all__ = [
    "Target",
    "discovery",
    "json_response",
    "parse_path",
    "resource_request",
    "serve_watch",
    "verb_of",
]


@dataclass(frozen=True)
class Target:
    """A resource URL, parsed."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool = False


def parse_path(path: str) -> Target | None:
    """The resource URL ``path`` names, or None for a discovery path."""
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
    return Target(group, version, plural, namespace, name, subresource, watch_path)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
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


def verb_of(request: web.Request, target: Target | None) -> str:
    """get, list, watch, create, update, patch, delete, deletecollection or discovery."""
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


def _not_found(res: Resource, sub: str) -> ApiError:
    return ApiError(404, f"the server could not find the requested resource ({res.plural}/{sub})")


def _resource(store: Store, target: Target, verb: str) -> Resource:
    """The resource the URL names, checked against its scope and subresources."""
    res = store.resource(target.group, target.version, target.plural)
    if res.namespaced and target.namespace is None and verb not in ("list",):
        raise ApiError(404, "the server could not find the requested resource")
    if not res.namespaced and target.namespace is not None:
        raise ApiError(404, "the server could not find the requested resource")
    sub = target.subresource
    if sub not in (None, "status", "scale"):
        raise _not_found(res, str(sub))
    if (sub == "status" and not res.status) or (sub == "scale" and not res.scale):
        raise _not_found(res, str(sub))
    return res


def _list_response(res: Resource, meta: dict[str, Any], items: list[Any]) -> web.Response:
    return json_response(
        {"kind": _list_kind(res), "apiVersion": res.api_version, "metadata": meta, "items": items}
    )


def _list(store: Store, res: Resource, target: Target, query: Any) -> web.Response:
    limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
    page = store.list_objects(
        res,
        target.namespace,
        labels=query.get("labelSelector"),
        fields=query.get("fieldSelector"),
        limit=limit,
        continue_token=query.get("continue"),
    )
    meta: dict[str, Any] = {"resourceVersion": str(page.resource_version)}
    if page.continue_token:
        meta["continue"] = page.continue_token
        meta["remainingItemCount"] = page.remaining
    return _list_response(res, meta, page.items)


def _delete_collection(
    store: Store, res: Resource, target: Target, query: Any, body: Any, *, dry_run: bool
) -> web.Response:
    items, rv = store.delete_collection(
        res,
        target.namespace,
        labels=query.get("labelSelector"),
        fields=query.get("fieldSelector"),
        options=body if isinstance(body, dict) else None,
        dry_run=dry_run,
    )
    return _list_response(res, {"resourceVersion": str(rv)}, items)


def _scale(
    store: Store,
    res: Resource,
    target: Target,
    verb: str,
    body: Any,
    content_type: str,
    *,
    dry_run: bool,
) -> web.Response:
    ns, name = target.namespace, target.name
    assert name is not None
    if verb == "get":
        return json_response(store.get_scale(res, ns, name))
    if verb in ("update", "patch"):
        patch_type = content_type if verb == "patch" else None
        return json_response(store.write_scale(res, ns, name, body, patch_type, dry_run=dry_run))
    raise ApiError(405, "the scale subresource supports get, update and patch")


def resource_request(
    store: Store, request: web.Request, target: Target, verb: str, body: Any
) -> web.Response:
    """Serve a request on a resource URL (every verb but watch)."""
    res = _resource(store, target, verb)
    query = request.query
    dry_run = query.get("dryRun") == "All"
    ns, name, sub = target.namespace, target.name, target.subresource
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
    if verb == "list":
        return _list(store, res, target, query)
    if verb == "create":
        if sub is not None:
            raise ApiError(405, "method not allowed on a subresource")
        return json_response(store.create(res, ns, body, dry_run=dry_run), 201)
    if verb == "deletecollection":
        return _delete_collection(store, res, target, query, body, dry_run=dry_run)
    assert name is not None
    if sub == "scale":
        return _scale(store, res, target, verb, body, content_type, dry_run=dry_run)
    if verb == "get":
        return json_response(store.get(res, ns, name))
    if verb == "update":
        return json_response(store.update(res, ns, name, body, subresource=sub, dry_run=dry_run))
    if verb == "patch":
        return json_response(
            store.patch(res, ns, name, body, content_type, subresource=sub, dry_run=dry_run)
        )
    if verb == "delete":
        if sub is not None:
            raise ApiError(405, "delete is not supported on a subresource")
        options = dict(body) if isinstance(body, dict) else {}
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        return json_response(store.delete(res, ns, name, options, dry_run=dry_run))
    raise ApiError(
        405,
        f"the server does not allow this method on the requested resource ({request.method})",
        reason="MethodNotAllowed",
    )


async def serve_watch(
    store: Store,
    log: RequestLog,
    request: web.Request,
    target: Target,
    *,
    bookmark_interval: float,
    tasks: set[asyncio.Task[Any]],
) -> web.StreamResponse:
    """Stream a watch until its timeout, the client leaving or the emulator stopping."""
    query = request.query
    try:
        res = store.resource(target.group, target.version, target.plural)
        fields = query.get("fieldSelector") or ""
        if target.name is not None:  # a watch on one object is a metadata.name selector
            fields = ",".join(filter(None, [fields, f"metadata.name={target.name}"]))
        labels, field_selector = check_selectors(res, query.get("labelSelector"), fields)
        timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
    except (ApiError, ValueError) as exc:
        error = exc if isinstance(exc, ApiError) else ApiError(400, str(exc))
        log.record(request, error.code, "watch", None)
        return json_response(error.status(), error.code)
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
        log.record(request, exc.code, "watch", None)
        return json_response(exc.status(), exc.code)
    log.record(request, 200, "watch", None)
    task = asyncio.current_task()
    assert task is not None
    tasks.add(task)
    try:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for initial in first:
            await response.write(initial)
        if registered:
            await _stream(store, response, watcher, timeout, bookmarks, bookmark_interval)
        await response.write_eof()
    except ConnectionResetError:
        pass
    finally:
        store.unwatch(watcher)
        tasks.discard(task)
    return response


async def _stream(
    store: Store,
    response: web.StreamResponse,
    watcher: Watcher,
    seconds: float | None,
    bookmarks: bool,
    bookmark_interval: float,
) -> None:
    """Write the watcher's lines until ``seconds`` pass or the emulator stops."""
    loop = watcher.loop
    deadline = loop.time() + seconds if seconds is not None else None
    next_bookmark = loop.time() + bookmark_interval
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        if bookmarks and now >= next_bookmark:
            store.bookmark(watcher)
            next_bookmark = now + bookmark_interval
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


def discovery(store: Store, path: str) -> web.Response:
    """The answer to a discovery path (``/api``, ``/apis/GROUP/VERSION``, ``/version``…)."""
    path = "/" + path.strip("/")
    with store.lock:
        resources = list(store.resources.values())
    groups: dict[str, list[str]] = {}
    for res in resources:
        if res.group:
            versions = groups.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
    if path == "/":
        paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
        for group, versions in groups.items():
            paths += [f"/apis/{group}"] + [f"/apis/{group}/{v}" for v in versions]
        return json_response({"paths": sorted(set(paths))})
    if path in ("/healthz", "/livez", "/readyz"):
        return web.Response(text="ok")
    if path == "/version":
        return json_response(_VERSION)
    if path == "/api":
        return json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                ],
            }
        )
    if path == "/apis":
        return json_response(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group_doc(g, v) for g, v in sorted(groups.items())],
            }
        )
    parts = path.strip("/").split("/")
    if parts == ["api", "v1"]:
        return _resource_list("", "v1", resources)
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return json_response(
            {
                "kind": "APIGroup",
                "apiVersion": "v1",
                **_group_doc(parts[1], groups[parts[1]]),
            }
        )
    if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []):
        return _resource_list(parts[1], parts[2], resources)
    raise ApiError(404, "the server could not find the requested resource")


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def _resource_list(group: str, version: str, resources: list[Resource]) -> web.Response:
    entries = [
        entry
        for res in resources
        if res.group == group and res.version == version
        for entry in res.discovery_entries()
    ]
    return json_response(
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }
    )
