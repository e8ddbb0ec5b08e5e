"""The emulator's object store: indexed objects, write semantics, the watch event log.

Everything here is synchronous and guarded by one re-entrant lock, so the HTTP handlers
(in the emulator's own event loop) and direct calls from tests (in any thread) see one
consistent state. Stored objects are never mutated in place: every write stores a new dict,
so objects can be handed to watchers and the event log without copying.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import random
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentmedic_sandbox._emulator_builtin import (
    builtin_causes,
    int32_overflow,
    normalize,
    wrap_int32,
)
from agentmedic_sandbox._emulator_patch import (
    PatchError,
    clone,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from agentmedic_sandbox._emulator_resources import (
    BUILTIN_RESOURCES,
    Resource,
    resources_from_crd,
)
from agentmedic_sandbox._emulator_schema import Cause, validate_and_prune
from agentmedic_sandbox._emulator_selectors import FieldSelector, LabelSelector, SelectorError

__all__ = ["ApiError", "Store", "Watcher"]

Obj = dict[str, Any]
ResKey = tuple[str, str, str]
ObjKey = tuple[ResKey, str, str]  # (resource, namespace or "", name)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the API server reports as a ``Status`` object with an HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        """The ``Status`` object the API server sends for this error."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: Resource, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "group": res.group, "kind": res.plural, **extra}


def not_found(res: Resource, name: str) -> ApiError:
    """404 for a named object, worded as the API server does."""
    return ApiError(404, f'{res.group_resource} "{name}" not found', details=_details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    """409 for a write with a stale resourceVersion."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {res.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        reason="Conflict",
        details=_details(res, name),
    )


def invalid(res: Resource, name: str, causes: list[Cause]) -> ApiError:
    """422 naming every invalid field."""
    text = (
        causes[0].message if len(causes) == 1 else "[" + ", ".join(c.message for c in causes) + "]"
    )
    kind_group = f"{res.kind}.{res.group}" if res.group else res.kind
    return ApiError(
        422,
        f'{kind_group} "{name}" is invalid: {text}',
        reason="Invalid",
        details={
            "name": name,
            **({"group": res.group} if res.group else {}),  # omitempty, as on the wire
            "kind": res.kind,
            "causes": [c.as_dict() for c in causes],
        },
    )


def now_rfc3339(moment: datetime) -> str:
    """Kubernetes' timestamp format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- metadata validation --------------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAMES = {"namespaces", "services"}  # names that must be DNS labels, not subdomains
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SimpleNameGenerator
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def _name_causes(res: Resource, name: str) -> list[Cause]:
    if res.plural in _LABEL_NAMES:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            return [
                Cause(
                    "metadata.name",
                    "FieldValueInvalid",
                    f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 label '
                    "must consist of lower case alphanumeric characters or '-', and must "
                    "start and end with an alphanumeric character (e.g. 'my-name',  or "
                    "'123-abc', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                )
            ]
        return []
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            Cause(
                "metadata.name",
                "FieldValueInvalid",
                f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                "must consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'example.com', regex "
                "used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        ]
    return []


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _metadata_causes(meta: Obj) -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [
            Cause(
                "metadata.labels",
                "FieldValueInvalid",
                "metadata.labels: Invalid value: must be a map of strings",
            )
        ]
    for key, value in labels.items():
        if not _qualified_name_ok(key):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f'metadata.labels: Invalid value: "{key}": name part must consist '
                    "of alphanumeric characters, '-', '_' or '.', and must start and "
                    "end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"metadata.labels: Invalid value: {json.dumps(value)}: a valid "
                    "label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        return [
            *causes,
            Cause(
                "metadata.annotations",
                "FieldValueInvalid",
                "metadata.annotations: Invalid value: must be a map of strings",
            ),
        ]
    size = 0
    for key, value in annotations.items():
        if not _qualified_name_ok(key):
            causes.append(
                Cause(
                    "metadata.annotations",
                    "FieldValueInvalid",
                    f'metadata.annotations: Invalid value: "{key}": name part must '
                    "consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str):
            causes.append(
                Cause(
                    f"metadata.annotations[{key}]",
                    "FieldValueInvalid",
                    f"metadata.annotations[{key}]: Invalid value: must be a string",
                )
            )
            continue
        size += len(key) + len(value.encode())
    if size > _MAX_ANNOTATIONS_BYTES:
        causes.append(
            Cause(
                "metadata.annotations",
                "FieldValueTooLong",
                "metadata.annotations: Too long: must have at most 262144 bytes",
            )
        )
    return causes


# --- watching -------------------------------------------------------------------------------


@dataclass
class Event:
    """One committed change, kept in the bounded event log for watches that resume."""

    rv: int
    resource: ResKey
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(self, type_: str) -> bytes:
        """The watch-stream line for this event, serialised once per type."""
        if type_ not in self._lines:
            self._lines[type_] = json.dumps({"type": type_, "object": self.obj}).encode() + b"\n"
        return self._lines[type_]


@dataclass(eq=False)
class Watcher:
    """One open watch: what it selects and the queue its stream reads."""

    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[bytes | None]
    loop: asyncio.AbstractEventLoop

    def selects(self, obj: Obj | None) -> bool:
        """Whether ``obj`` is in this watch's view."""
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, event: Event) -> bytes | None:
        """The line this watcher sees for ``event``: objects entering or leaving a selector
        appear as ADDED or DELETED, as from a real API server."""
        if event.resource != self.resource.key:
            return None
        now = event.type != "DELETED" and self.selects(event.obj)
        before = event.old is not None and event.type != "ADDED" and self.selects(event.old)
        if event.type == "DELETED":
            return event.line("DELETED") if self.selects(event.obj) else None
        if now and before:
            return event.line("MODIFIED")
        if now:
            return event.line("ADDED")
        if before:
            return event.line("DELETED")
        return None

    def push(self, line: bytes | None) -> None:
        """Queue a line from any thread, in commit order."""
        # The loop may close under us while the emulator stops; the stream is gone then.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line)


def bookmark_line(res: Resource, rv: int, *, initial_end: bool = False) -> bytes:
    """A BOOKMARK event line at resourceVersion ``rv``."""
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"


def error_line(error: ApiError) -> bytes:
    """An ERROR event line carrying a Status."""
    return json.dumps({"type": "ERROR", "object": error.status()}).encode() + b"\n"


# --- the store ------------------------------------------------------------------------------


@dataclass
class ListResult:
    """One page of a list."""

    items: list[Obj]
    resource_version: int
    continue_token: str
    remaining: int | None


class Store:
    """Objects by (resource, namespace, name), with the API server's write semantics."""

    DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

    def __init__(
        self,
        *,
        event_window: int = 20_000,
        auto_namespaces: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.rv = 0
        self.auto_namespaces = auto_namespaces
        self.clock = clock or (lambda: datetime.now(UTC))
        self.resources: dict[ResKey, Resource] = {}
        self.by_kind: dict[tuple[str, str], Resource] = {}
        self.objects: dict[ResKey, dict[tuple[str, str], Obj]] = {}
        self.uids: dict[str, ObjKey] = {}
        self.dependents: dict[str, set[ObjKey]] = {}
        self.events: deque[Event] = deque(maxlen=event_window)
        self.evicted_rv = 0  # the newest resourceVersion no longer in the event log
        self.watchers: set[Watcher] = set()
        self._random = random.Random()
        for res in BUILTIN_RESOURCES:
            self.register(res)
        namespaces = self.resources[("", "v1", "namespaces")]
        for name in self.DEFAULT_NAMESPACES:
            self.create(
                namespaces,
                None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

    # --- resources -------------------------------------------------------------------------

    def register(self, res: Resource) -> None:
        """Serve ``res`` (replacing an earlier definition of it)."""
        with self.lock:
            self.resources[res.key] = res
            self.by_kind[(res.api_version, res.kind)] = res
            self.objects.setdefault(res.key, {})

    def unregister(self, res: Resource) -> None:
        """Stop serving ``res`` and forget its objects."""
        with self.lock:
            for obj in list(self.objects.get(res.key, {}).values()):
                self._remove(res, obj)
            self.resources.pop(res.key, None)
            self.objects.pop(res.key, None)
            if self.by_kind.get((res.api_version, res.kind)) == res:
                del self.by_kind[(res.api_version, res.kind)]

    def resource(self, group: str, version: str, plural: str) -> Resource:
        """The served resource, or 404."""
        res = self.resources.get((group, version, plural))
        if res is None:
            where = f"{group}/{version}" if group else version
            raise ApiError(
                404, f"the server could not find the requested resource ({plural} in {where})"
            )
        return res

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``kind`` in ``api_version``, or 404."""
        res = self.by_kind.get((api_version, kind))
        if res is None:
            raise ApiError(404, f'no matches for kind "{kind}" in version "{api_version}"')
        return res

    # --- reads -----------------------------------------------------------------------------

    def _ns(self, res: Resource, namespace: str | None) -> str:
        return (namespace or "") if res.namespaced else ""

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        """The stored object (do not mutate it), or 404."""
        with self.lock:
            obj = self.objects[res.key].get((self._ns(res, namespace), name))
        if obj is None:
            raise not_found(res, name)
        return obj

    def find(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """The stored object, or None."""
        with self.lock:
            return self.objects[res.key].get((self._ns(res, namespace), name))

    @staticmethod
    def check_selectors(
        res: Resource, labels: str | None, fields: str | None
    ) -> tuple[LabelSelector, FieldSelector]:
        """Parse selectors, refusing what the API server refuses (400)."""
        try:
            label_selector = LabelSelector(labels or "")
            field_selector = FieldSelector(fields or "")
        except SelectorError as exc:
            raise ApiError(400, f"unable to parse requirement: {exc}") from exc
        allowed = {"metadata.name", "metadata.namespace", *res.field_selectors}
        for path in field_selector.fields:
            if path not in allowed:
                raise ApiError(400, f"field label not supported: {path}")
        return label_selector, field_selector

    def list_objects(
        self,
        res: Resource,
        namespace: str | None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Objects of ``res`` (in ``namespace``, or all), sorted by namespace and name."""
        label_selector, field_selector = self.check_selectors(res, labels, fields)
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (decoded["ns"], decoded["name"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise ApiError(400, "continue key is not valid") from exc
        ns = self._ns(res, namespace) if namespace else None
        with self.lock:
            rv = self.rv
            store = self.objects[res.key]
            keys = sorted(k for k in store if ns is None or k[0] == ns)
            if start is not None:
                keys = [k for k in keys if k > start]
            selected = [
                store[k]
                for k in keys
                if (
                    not label_selector or label_selector.matches(store[k]["metadata"].get("labels"))
                )
                and (not field_selector or field_selector.matches(store[k]))
            ]
        token = ""
        remaining: int | None = None
        if limit and len(selected) > limit:
            remaining = len(selected) - limit
            selected = selected[:limit]
            last = selected[-1]["metadata"]
            token = base64.urlsafe_b64encode(
                json.dumps(
                    {"ns": last.get("namespace", ""), "name": last["name"], "rv": rv}
                ).encode()
            ).decode()
        return ListResult(selected, rv, token, remaining)

    # --- watches ---------------------------------------------------------------------------

    def watch(
        self,
        watcher: Watcher,
        since: str | None,
        *,
        send_initial: bool,
    ) -> tuple[list[bytes], bool]:
        """Register ``watcher``; return the lines it must send first, and whether it is
        registered (False after an error line: the stream ends there).

        Without a resourceVersion (or with "0"), every selected object is sent as ADDED, as
        the API server does; with one, the logged events after it; if the log no longer
        reaches back that far, a single ERROR 410 Gone line (the watcher is not registered).
        """
        with self.lock:
            if not since or since == "0":
                objs = [o for o in self._sorted(watcher.resource) if watcher.selects(o)]
                lines = [json.dumps({"type": "ADDED", "object": o}).encode() + b"\n" for o in objs]
                if send_initial:
                    lines.append(bookmark_line(watcher.resource, self.rv, initial_end=True))
            else:
                try:
                    rv = int(since)
                except ValueError as exc:
                    raise ApiError(400, f'invalid resource version "{since}"') from exc
                if rv < self.evicted_rv:
                    # Not registered: the stream ends after this line, as the server's does.
                    return (
                        [
                            error_line(
                                ApiError(
                                    410,
                                    f"too old resource version: {rv} ({self.evicted_rv + 1})",
                                    reason="Expired",
                                )
                            )
                        ],
                        False,
                    )
                lines = []
                for event in itertools.dropwhile(lambda e: e.rv <= rv, self.events):
                    line = watcher.translate(event)
                    if line is not None:
                        lines.append(line)
            self.watchers.add(watcher)
            return lines, True

    def unwatch(self, watcher: Watcher) -> None:
        """Stop feeding ``watcher``."""
        with self.lock:
            self.watchers.discard(watcher)

    def bookmark(self, watcher: Watcher) -> None:
        """Queue a BOOKMARK at the current resourceVersion behind every event before it."""
        with self.lock:
            watcher.push(bookmark_line(watcher.resource, self.rv))

    def close_watches(self) -> None:
        """End every open watch stream."""
        with self.lock:
            for watcher in list(self.watchers):
                watcher.push(None)
            self.watchers.clear()

    def _sorted(self, res: Resource) -> Iterable[Obj]:
        store = self.objects[res.key]
        return (store[k] for k in sorted(store))

    # --- commits ---------------------------------------------------------------------------

    def _commit(self, res: Resource, type_: str, obj: Obj, old: Obj | None) -> Obj:
        """Store a write under a new resourceVersion, index it, log it, tell watchers."""
        self.rv += 1
        meta = dict(obj["metadata"])
        meta["resourceVersion"] = str(self.rv)
        obj = {**obj, "metadata": meta}
        key = (meta.get("namespace", ""), meta["name"])
        objkey: ObjKey = (res.key, key[0], key[1])
        if type_ == "DELETED":
            self.objects[res.key].pop(key, None)
            self.uids.pop(meta.get("uid", ""), None)
        else:
            self.objects[res.key][key] = obj
            self.uids[meta["uid"]] = objkey
        old_owners = {
            r.get("uid") for r in ((old or {}).get("metadata", {}).get("ownerReferences") or [])
        }
        new_owners = (
            set()
            if type_ == "DELETED"
            else {r.get("uid") for r in meta.get("ownerReferences") or []}
        )
        for uid in old_owners - new_owners:
            self.dependents.get(str(uid), set()).discard(objkey)
        for uid in new_owners - old_owners:
            self.dependents.setdefault(str(uid), set()).add(objkey)
        event = Event(self.rv, res.key, type_, obj, old)
        if len(self.events) == self.events.maxlen:
            self.evicted_rv = self.events[0].rv
        self.events.append(event)
        for watcher in self.watchers:
            line = watcher.translate(event)
            if line is not None:
                watcher.push(line)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self._crd_changed(obj, type_, old)
        return obj

    def _crd_changed(self, crd: Obj, type_: str, old: Obj | None) -> None:
        if old is not None:
            for gone in resources_from_crd(old):
                if type_ == "DELETED" or gone.key not in {r.key for r in resources_from_crd(crd)}:
                    self.unregister(gone)
        if type_ != "DELETED":
            for served in resources_from_crd(crd):
                self.register(served)

    def _timestamp(self) -> str:
        return now_rfc3339(self.clock())

    # --- create ----------------------------------------------------------------------------

    def create(
        self,
        res: Resource,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        keep_status: bool = False,
    ) -> Obj:
        """POST: store a new object; assigns uid, timestamps, generation and a name from
        ``generateName``. ``keep_status`` lets tests seed status through the direct API."""
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        obj = clone(body)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if obj["apiVersion"] != res.api_version or obj["kind"] != res.kind:
            raise ApiError(
                400,
                f"the API version in the data ({obj['apiVersion']}) and kind "
                f"({obj['kind']}) do not match the resource {res.group_resource}"
                f" in {res.api_version}",
            )
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        meta = dict(meta)
        obj["metadata"] = meta
        if res.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            ns = namespace or body_ns or ""
            if not ns:
                raise ApiError(400, "the namespace of the object must be set")
            meta["namespace"] = ns
        else:
            ns = ""
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        for server_field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(server_field, None)
        with self.lock:
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise invalid(
                        res,
                        "",
                        [
                            Cause(
                                "metadata.name",
                                "FieldValueRequired",
                                "metadata.name: Required value: name or generateName is required",
                            )
                        ],
                    )
                for _ in range(100):
                    name = prefix[:58] + "".join(
                        self._random.choice(_GENERATE_ALPHABET) for _ in range(5)
                    )
                    if (ns, name) not in self.objects[res.key]:
                        break
                meta["name"] = name
            name = meta["name"]
            causes = _name_causes(res, name) + _metadata_causes(meta)
            if causes:
                raise invalid(res, name, causes)
            if (ns, name) in self.objects[res.key]:
                raise ApiError(
                    409,
                    f'{res.group_resource} "{name}" already exists',
                    reason="AlreadyExists",
                    details=_details(res, name),
                )
            if res.namespaced:
                self._ensure_namespace(ns, dry_run=dry_run)
            if res.status and not keep_status:
                obj.pop("status", None)
            self._check_decodable(res, obj)
            obj = self._default(res, obj)
            obj = self._validate(res, obj)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self._timestamp()
            if res.generation:
                meta["generation"] = 1
            if dry_run:
                return obj
            return self._commit(res, "ADDED", obj, None)

    def _ensure_namespace(self, ns: str, *, dry_run: bool) -> None:
        namespaces = self.resources[("", "v1", "namespaces")]
        existing = self.objects[namespaces.key].get(("", ns))
        if existing is None:
            if not self.auto_namespaces:
                raise not_found(namespaces, ns)
            if not dry_run:
                self.create(namespaces, None, {"metadata": {"name": ns}})
        elif existing["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f"unable to create new content in namespace {ns} because it is being terminated",
                reason="Forbidden",
            )

    @staticmethod
    def _default(res: Resource, obj: Obj) -> Obj:
        # The API server defaults many fields; replicas is the one agentmedic's logic reads.
        if res.scale and res.group == "apps" and isinstance(obj.get("spec"), dict):
            obj["spec"].setdefault("replicas", 1)
        if res.plural == "namespaces" and not res.group:
            obj["status"] = {
                "phase": "Terminating" if obj["metadata"].get("deletionTimestamp") else "Active"
            }
        if res.plural == "customresourcedefinitions":
            names = (obj.get("spec") or {}).get("names") or {}
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v["name"]
                    for v in (obj.get("spec") or {}).get("versions") or []
                    if v.get("storage")
                ],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                ],
            }
        return obj

    def _validate(self, res: Resource, obj: Obj, old: Obj | None = None) -> Obj:
        name = obj["metadata"].get("name", "")
        if res.schema is not None:
            pruned, causes = validate_and_prune(obj, res.schema, old)
            if causes:
                raise invalid(res, name, causes)
            return pruned
        causes = builtin_causes(res, obj, old)
        if res.scale:
            replicas = (obj.get("spec") or {}).get("replicas")
            if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
                causes.insert(
                    0,
                    Cause(
                        "spec.replicas",
                        "FieldValueInvalid",
                        f"spec.replicas: Invalid value: {json.dumps(replicas)}: "
                        "must be greater than or equal to 0",
                    ),
                )
        if causes:
            raise invalid(res, name, causes)
        return normalize(res, obj)

    @staticmethod
    def _check_decodable(res: Resource, obj: Obj, *, scale: bool = False) -> None:
        """A POST or PUT body the Go types cannot hold: 400, as from the decoder."""
        error = int32_overflow(res, obj, scale=scale)
        if error is not None:
            kind, version = ("Scale", "v1") if scale else (res.kind, res.version)
            raise ApiError(
                400, f'{kind} in version "{version}" cannot be handled as a {kind}: {error}'
            )

    @staticmethod
    def _check_patched(res: Resource, obj: Obj, content_type: str, *, scale: bool = False) -> Obj:
        """A patched object the Go types cannot hold: a JSON or merge patch result is decoded
        (422 naming ``patch``); a strategic one is converted from maps, which wraps ints."""
        if content_type == STRATEGIC_PATCH:
            return wrap_int32(res, obj)
        error = int32_overflow(res, obj, scale=scale)
        if error is not None:
            text = json.dumps(obj, separators=(",", ":"))
            raise ApiError(
                422,
                f' "" is invalid: patch: Invalid value: {json.dumps(text)}: {error}',
                reason="Invalid",
                details={
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {json.dumps(text)}: {error}",
                            "field": "patch",
                        }
                    ]
                },
            )
        return obj

    # --- update and patch ------------------------------------------------------------------

    def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """PUT: replace the object (or its status), checking resourceVersion."""
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(
                400,
                f"the name of the object ({meta['name']}) does not match the "
                f"name on the URL ({name})",
            )
        if res.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        with self.lock:
            old = self.get(res, namespace, name)
            if not meta.get("resourceVersion") and res.custom:
                raise invalid(
                    res,
                    name,
                    [
                        Cause(
                            "metadata.resourceVersion",
                            "FieldValueInvalid",
                            "metadata.resourceVersion: Invalid value: 0x0: "
                            "must be specified for an update",
                        )
                    ],
                )
            self._check_decodable(res, body)
            return self._write(res, old, clone(body), subresource, dry_run=dry_run)

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """PATCH by content type (merge, strategic merge, JSON patch)."""
        with self.lock:
            old = self.get(res, namespace, name)
            candidate = self.apply_patch(res, old, patch, content_type)
            candidate = self._check_patched(res, candidate, content_type)
            return self._write(res, old, candidate, subresource, dry_run=dry_run)

    @staticmethod
    def apply_patch(res: Resource, target: Obj, patch: Any, content_type: str) -> Obj:
        """``target`` with ``patch`` applied per ``content_type`` (errors as ApiError)."""
        try:
            if content_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise ApiError(400, "a merge patch must be a JSON object")
                result = json_merge_patch(target, patch)
            elif content_type == STRATEGIC_PATCH:
                if res.custom:
                    raise ApiError(
                        415,
                        "the body of the request was in an unknown format - accepted "
                        "media types include: application/json-patch+json, "
                        "application/merge-patch+json, application/apply-patch+yaml",
                    )
                result = strategic_merge_patch(target, patch)
            elif content_type == JSON_PATCH:
                result = json_patch(target, patch)
            elif content_type == APPLY_PATCH:
                raise ApiError(
                    415,
                    "server-side apply (application/apply-patch+yaml) is not "
                    "supported by the agentmedic API emulator",
                )
            else:
                raise ApiError(
                    415,
                    f"the body of the request was in an unknown format ({content_type}) "
                    "- accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, "
                    "application/strategic-merge-patch+json",
                )
        except PatchError as exc:
            if exc.status == 422:
                raise ApiError(422, exc.message, reason="Invalid") from exc
            raise ApiError(exc.status, exc.message) from exc
        if not isinstance(result, dict):
            raise ApiError(422, "the patched object is not a JSON object")
        return result

    def _write(
        self, res: Resource, old: Obj, candidate: Obj, subresource: str | None, *, dry_run: bool
    ) -> Obj:
        """The shared tail of PUT and PATCH: preconditions, subresource separation,
        server-owned metadata, validation, generation, no-op detection, commit."""
        name = old["metadata"]["name"]
        if subresource == "status" and not res.status:
            raise ApiError(
                404, f"the server could not find the requested resource ({res.plural}/status)"
            )
        wanted_rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        if subresource == "status":
            new = {**old}
            new.pop("status", None)
            if "status" in candidate:
                new["status"] = candidate["status"]
            new["metadata"] = dict(old["metadata"])
        elif subresource is None:
            new = dict(candidate)
            if res.status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            meta = dict(new.get("metadata") or {})
            for server_field in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if server_field in old["metadata"]:
                    meta[server_field] = old["metadata"][server_field]
                else:
                    meta.pop(server_field, None)
            new["metadata"] = meta
        else:
            raise ApiError(
                404,
                f"the server could not find the requested resource ({res.plural}/{subresource})",
            )
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        causes = _metadata_causes(new["metadata"])
        if causes:
            raise invalid(res, name, causes)
        if old["metadata"].get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(
                old["metadata"].get("finalizers") or []
            )
            if added:
                raise invalid(
                    res,
                    name,
                    [
                        Cause(
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                            "object is being deleted, found new finalizers "
                            + json.dumps(sorted(added)),
                        )
                    ],
                )
        new = self._validate(res, new, old)
        if res.generation and self._spec_changed(res, old, new):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 0)) + 1
        if new == old:
            return old  # a no-op write keeps its resourceVersion and sends no event
        if dry_run:
            return new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            removed = self._commit(res, "DELETED", new, old)
            self._after_removal(res, removed, orphan=False)
            return removed
        return self._commit(res, "MODIFIED", new, old)

    @staticmethod
    def _spec_changed(res: Resource, old: Obj, new: Obj) -> bool:
        ignored = {"metadata", "status"} if res.status else {"metadata"}
        return {k: v for k, v in old.items() if k not in ignored} != {
            k: v for k, v in new.items() if k not in ignored
        }

    # --- scale -----------------------------------------------------------------------------

    @staticmethod
    def scale_of(res: Resource, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale view of a Deployment or StatefulSet."""
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        selector = LabelSelector.from_label_selector(spec.get("selector")).text
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector},
        }

    def get_scale(self, res: Resource, namespace: str | None, name: str) -> Obj:
        """GET .../scale."""
        self._need_scale(res)
        return self.scale_of(res, self.get(res, namespace, name))

    def write_scale(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str | None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """PUT (``content_type`` None) or PATCH .../scale: set spec.replicas."""
        self._need_scale(res)
        with self.lock:
            old = self.get(res, namespace, name)
            scale = self.scale_of(res, old)
            if content_type is None:
                if not isinstance(body, dict):
                    raise ApiError(400, "the body of the request must be a JSON object")
                self._check_decodable(res, body, scale=True)
                new_scale = body
            else:
                new_scale = self.apply_patch(res, scale, body, content_type)
                new_scale = self._check_patched(res, new_scale, content_type, scale=True)
            wanted_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(
                    422,
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                    f"Invalid value: {json.dumps(replicas)}: must be greater "
                    "than or equal to 0",
                    reason="Invalid",
                )
            candidate = clone(old)
            candidate.setdefault("spec", {})["replicas"] = replicas
            return self.scale_of(res, self._write(res, old, candidate, None, dry_run=dry_run))

    @staticmethod
    def _need_scale(res: Resource) -> None:
        if not res.scale:
            raise ApiError(
                404, f"the server could not find the requested resource ({res.plural}/scale)"
            )

    # --- delete ----------------------------------------------------------------------------

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """DELETE: remove the object, or mark it for deletion while it has finalizers."""
        options = options or {}
        with self.lock:
            old = self.get(res, namespace, name)
            preconditions = options.get("preconditions") or {}
            meta = old["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise ApiError(
                    409,
                    f"Precondition failed: UID in precondition: "
                    f"{preconditions['uid']}, UID in object meta: {meta.get('uid')}",
                    reason="Conflict",
                    details=_details(res, name),
                )
            if (
                preconditions.get("resourceVersion")
                and preconditions["resourceVersion"] != meta["resourceVersion"]
            ):
                raise ApiError(
                    409,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{preconditions['resourceVersion']}, ResourceVersion in "
                    f"object meta: {meta['resourceVersion']}",
                    reason="Conflict",
                    details=_details(res, name),
                )
            if dry_run:
                return old
            orphan = (
                options.get("propagationPolicy") == "Orphan"
                or options.get("orphanDependents") is True
            )
            return self._delete(res, old, orphan=orphan)

    def _delete(self, res: Resource, old: Obj, *, orphan: bool) -> Obj:
        meta = old["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            new = clone(old)
            new["metadata"]["deletionTimestamp"] = self._timestamp()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.generation:
                new["metadata"]["generation"] = int(meta.get("generation", 0)) + 1
            if res.plural == "namespaces" and not res.group:
                new["status"] = {"phase": "Terminating"}
            return self._commit(res, "MODIFIED", new, old)
        removed = self._commit(res, "DELETED", clone(old), old)
        self._after_removal(res, removed, orphan=orphan)
        return removed

    def _remove(self, res: Resource, obj: Obj) -> None:
        """Drop an object regardless of finalizers (its resource is going away)."""
        self._commit(res, "DELETED", obj, obj)

    def _after_removal(self, res: Resource, removed: Obj, *, orphan: bool) -> None:
        uid = removed["metadata"].get("uid", "")
        # Garbage collection: dependents go when none of their owners is left, as with
        # background propagation; orphaning strips the owner reference instead.
        for objkey in sorted(self.dependents.pop(uid, set())):
            dep_res = self.resources.get(objkey[0])
            dependent = self.objects.get(objkey[0], {}).get((objkey[1], objkey[2]))
            if dep_res is None or dependent is None:
                continue
            if orphan:
                new = clone(dependent)
                new["metadata"]["ownerReferences"] = [
                    r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self._commit(dep_res, "MODIFIED", new, dependent)
            elif not any(
                r.get("uid") in self.uids
                for r in dependent["metadata"].get("ownerReferences") or []
            ):
                self._delete(dep_res, dependent, orphan=False)
        if res.plural == "namespaces" and not res.group:
            ns = removed["metadata"]["name"]
            for other in list(self.resources.values()):
                if not other.namespaced:
                    continue
                for key in [k for k in self.objects.get(other.key, {}) if k[0] == ns]:
                    obj = self.objects[other.key].get(key)
                    if obj is not None:
                        self._remove(other, obj)

    def delete_collection(
        self,
        res: Resource,
        namespace: str | None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        options: Obj | None = None,
        dry_run: bool = False,
    ) -> tuple[list[Obj], int]:
        """DELETE on a collection: delete every selected object; return them and the rv."""
        with self.lock:
            page = self.list_objects(res, namespace, labels=labels, fields=fields)
            if dry_run:
                return page.items, self.rv
            orphan = (options or {}).get("propagationPolicy") == "Orphan"
            deleted = []
            for obj in page.items:
                current = self.find(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                if current is not None:
                    deleted.append(self._delete(res, current, orphan=orphan))
            return deleted, self.rv
