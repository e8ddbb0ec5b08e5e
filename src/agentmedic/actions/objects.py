"""Small readers of workload dicts and the JSON-patch pieces every action writes.

The actions work on objects exactly as they are on the wire (dicts); these helpers read
the few fields they need and build the annotation operations of a guarded patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentmedic.actions.record import ActionRecord, PolicyRef, WorkloadRef, json_pointer
from agentmedic.actions.result import ActionKind, ActionResult, ExecutionOutcome

__all__ = [
    "Patch",
    "annotation_ops",
    "annotations_of",
    "policy_from",
    "refusal",
    "replicas_of",
    "resource_version_of",
    "template_annotation_ops",
    "uid_of",
    "undo_hint",
    "why",
]

Patch = list[dict[str, Any]]
"""A JSON patch: a list of RFC 6902 operations."""


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def resource_version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def replicas_of(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    # The API server defaults spec.replicas to 1; an object without it means exactly that.
    return int(value) if isinstance(value, int) else 1


def annotation_ops(
    obj: Mapping[str, Any], set_: Mapping[str, str], remove: tuple[str, ...] = ()
) -> Patch:
    """JSON-patch operations setting and removing annotations, touching no other key.

    Without any annotations yet, the whole map has to be added; that would overwrite
    annotations added concurrently, so the patch then also tests the resourceVersion.
    """
    existing = (obj.get("metadata") or {}).get("annotations")
    if existing is None:
        if not set_:
            return []
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version_of(obj)},
            {"op": "add", "path": "/metadata/annotations", "value": dict(set_)},
        ]
    ops: Patch = [
        {"op": "add", "path": json_pointer("metadata", "annotations", k), "value": v}
        for k, v in set_.items()
    ]
    ops += [
        {"op": "remove", "path": json_pointer("metadata", "annotations", k)}
        for k in remove
        if k in existing and k not in set_
    ]
    return ops


def template_annotation_ops(obj: Mapping[str, Any], key: str, value: str) -> Patch:
    """Operations setting one annotation of the pod template (pods restart on a change)."""
    template = (obj.get("spec") or {}).get("template") or {}
    meta = template.get("metadata")
    if meta is None:
        return [
            {"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {key: value}}}
        ]
    if meta.get("annotations") is None:
        return [{"op": "add", "path": "/spec/template/metadata/annotations", "value": {key: value}}]
    return [
        {
            "op": "add",
            "path": json_pointer("spec", "template", "metadata", "annotations", key),
            "value": value,
        }
    ]


def why(record: ActionRecord) -> str:
    """The rule, the policy and the reason of an action, for messages."""
    text = f"rule {record.rule} of policy {record.policy}: {record.reason}"
    # The engine's reason often quotes the evidence already: say it once.
    if not record.evidence or record.evidence in record.reason:
        return text
    return f"{text} ({record.evidence})"


def undo_hint(ref: WorkloadRef) -> str:
    """The command that undoes a change to ``ref``."""
    return f"undo: agentmedic restore {ref.kind.lower()}/{ref.name} -n {ref.namespace}"


def refusal(kind: ActionKind, ref: WorkloadRef, message: str) -> ActionResult:
    """A refusal decided while reading, before any Event is written."""
    return ActionResult(kind, ref, ExecutionOutcome.REFUSED, message)


def policy_from(key: str, uid: str) -> PolicyRef | None:
    """The policy of a record's ``namespace/name`` and UID, or None when unreadable."""
    namespace, _, name = key.partition("/")
    if not namespace or not name:
        return None
    return PolicyRef(namespace=namespace, name=name, uid=uid)
