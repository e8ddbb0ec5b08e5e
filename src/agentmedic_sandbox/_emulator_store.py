"""The emulator's object store: the API server's write semantics over the object index.

:class:`Store` creates, updates, patches (by content type), scales and deletes objects as
the API server does: server-owned metadata, resourceVersion preconditions, the status and
scale subresources, finalizers and garbage collection by owner references. Reads, watches
and commits are :class:`~agentmedic_sandbox._emulator_index.StoreIndex`'s; what happens to
one object on a write is in :mod:`agentmedic_sandbox._emulator_objects`.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agentmedic_sandbox._emulator_errors import (
    ApiError,
    Obj,
    conflict,
    details,
    invalid,
    not_found,
)
from agentmedic_sandbox._emulator_events import Watcher
from agentmedic_sandbox._emulator_index import StoreIndex
from agentmedic_sandbox._emulator_metadata import GENERATE_ALPHABET, metadata_causes, name_causes
from agentmedic_sandbox._emulator_objects import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    apply_patch,
    check_decodable,
    check_no_new_finalizers,
    check_patched,
    default_fields,
    merged_for_write,
    need_scale,
    new_object,
    scale_of,
    spec_changed,
    validate,
)
from agentmedic_sandbox._emulator_patch import (
    clone,
)
from agentmedic_sandbox._emulator_resources import (
    Resource,
)
from agentmedic_sandbox._emulator_schema import Cause

__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_PATCH", "ApiError", "Store", "Watcher"]


class Store(StoreIndex):
    """Objects by (resource, namespace, name), with the API server's write semantics."""

    DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

    def __init__(
        self,
        *,
        event_window: int = 20_000,
        auto_namespaces: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(event_window=event_window, auto_namespaces=auto_namespaces, clock=clock)
        self._random = random.Random()
        namespaces = self.resources[("", "v1", "namespaces")]
        for name in self.DEFAULT_NAMESPACES:
            self.create(
                namespaces,
                None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

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
        obj, ns = new_object(res, namespace, body)
        meta = obj["metadata"]
        with self.lock:
            if not meta.get("name"):
                meta["name"] = self._generate_name(res, ns, meta.get("generateName"))
            name = meta["name"]
            causes = name_causes(res, name) + metadata_causes(meta)
            if causes:
                raise invalid(res, name, causes)
            if (ns, name) in self.objects[res.key]:
                raise ApiError(
                    409,
                    f'{res.group_resource} "{name}" already exists',
                    reason="AlreadyExists",
                    details=details(res, name),
                )
            if res.namespaced:
                self._ensure_namespace(ns, dry_run=dry_run)
            if res.status and not keep_status:
                obj.pop("status", None)
            check_decodable(res, obj)
            obj = default_fields(res, obj)
            obj = validate(res, obj)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self._timestamp()
            if res.generation:
                meta["generation"] = 1
            if dry_run:
                return obj
            return self._commit(res, "ADDED", obj, None)

    def _generate_name(self, res: Resource, ns: str, prefix: str | None) -> str:
        """A free name from ``generateName`` (422 without one), as Kubernetes' generator."""
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
            name = prefix[:58] + "".join(self._random.choice(GENERATE_ALPHABET) for _ in range(5))
            if (ns, name) not in self.objects[res.key]:
                break
        return name

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
            check_decodable(res, body)
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
            candidate = apply_patch(res, old, patch, content_type)
            candidate = check_patched(res, candidate, content_type)
            return self._write(res, old, candidate, subresource, dry_run=dry_run)

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
        new = merged_for_write(res, old, candidate, subresource)
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        causes = metadata_causes(new["metadata"])
        if causes:
            raise invalid(res, name, causes)
        check_no_new_finalizers(res, name, old, new)
        new = validate(res, new, old)
        if res.generation and spec_changed(res, old, new):
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

    # --- scale -----------------------------------------------------------------------------

    def get_scale(self, res: Resource, namespace: str | None, name: str) -> Obj:
        """GET .../scale."""
        need_scale(res)
        return scale_of(res, self.get(res, namespace, name))

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
        need_scale(res)
        with self.lock:
            old = self.get(res, namespace, name)
            scale = scale_of(res, old)
            if content_type is None:
                if not isinstance(body, dict):
                    raise ApiError(400, "the body of the request must be a JSON object")
                check_decodable(res, body, scale=True)
                new_scale = body
            else:
                new_scale = apply_patch(res, scale, body, content_type)
                new_scale = check_patched(res, new_scale, content_type, scale=True)
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
            return scale_of(res, self._write(res, old, candidate, None, dry_run=dry_run))

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
                    details=details(res, name),
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
                    details=details(res, name),
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
