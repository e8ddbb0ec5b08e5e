"""What the API server does to one object on a write, without the store around it.

Defaulting, validation (a CRD's schema or the built-in rules), the Go decoder's limits,
PATCH by content type, the scale subresource's view, and whether a write changed the spec.
Functions of the object and its resource; the store calls them under its lock.
"""

from __future__ import annotations

import json
from typing import Any

from agentmedic_sandbox._emulator_builtin import (
    builtin_causes,
    int32_overflow,
    normalize,
    wrap_int32,
)
from agentmedic_sandbox._emulator_errors import ApiError, Obj, invalid
from agentmedic_sandbox._emulator_patch import (
    PatchError,
    clone,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from agentmedic_sandbox._emulator_resources import (
    Resource,
)
from agentmedic_sandbox._emulator_schema import Cause, validate_and_prune
from agentmedic_sandbox._emulator_selectors import FieldSelector, LabelSelector, SelectorError

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "apply_patch",
    "check_decodable",
    "check_no_new_finalizers",
    "check_patched",
    "check_selectors",
    "default_fields",
    "merged_for_write",
    "need_scale",
    "new_object",
    "scale_of",
    "spec_changed",
    "validate",
]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def default_fields(res: Resource, obj: Obj) -> Obj:
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
                v["name"] for v in (obj.get("spec") or {}).get("versions") or [] if v.get("storage")
            ],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ],
        }
    return obj


def validate(res: Resource, obj: Obj, old: Obj | None = None) -> Obj:
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


def check_decodable(res: Resource, obj: Obj, *, scale: bool = False) -> None:
    """A POST or PUT body the Go types cannot hold: 400, as from the decoder."""
    error = int32_overflow(res, obj, scale=scale)
    if error is not None:
        kind, version = ("Scale", "v1") if scale else (res.kind, res.version)
        raise ApiError(400, f'{kind} in version "{version}" cannot be handled as a {kind}: {error}')


def check_patched(res: Resource, obj: Obj, content_type: str, *, scale: bool = False) -> Obj:
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


def spec_changed(res: Resource, old: Obj, new: Obj) -> bool:
    ignored = {"metadata", "status"} if res.status else {"metadata"}
    return {k: v for k, v in old.items() if k not in ignored} != {
        k: v for k, v in new.items() if k not in ignored
    }


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


def need_scale(res: Resource) -> None:
    if not res.scale:
        raise ApiError(
            404, f"the server could not find the requested resource ({res.plural}/scale)"
        )


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


def new_object(res: Resource, namespace: str | None, body: Any) -> tuple[Obj, str]:
    """A POST body as the object to create (server-owned metadata dropped) and its
    namespace ("" for a cluster-scoped resource)."""
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
    return obj, ns


def merged_for_write(res: Resource, old: Obj, candidate: Obj, subresource: str | None) -> Obj:
    """What a PUT or PATCH of ``candidate`` stores: the status subresource writes only
    status, the main resource everything but status; server-owned metadata stays."""
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
    return new


def check_no_new_finalizers(res: Resource, name: str, old: Obj, new: Obj) -> None:
    """422 for finalizers added to an object being deleted."""
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
