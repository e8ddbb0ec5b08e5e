"""PATCH content types, named explicitly, and resourceVersion preconditions.

The generated ``kubernetes`` client defaults to JSON-patch and silently turns a dict body
into a strategic-merge patch, which custom resources (KEDA's ScaledObject, AgentPolicy)
reject with 415; every PATCH of this layer therefore names its :class:`PatchType`.

A precondition makes a write optimistic: the API server refuses it when the object moved
on since it was read (409 for a merge patch carrying ``metadata.resourceVersion``, 422 for
a JSON patch whose ``test`` operation fails).
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "PatchType",
    "with_resource_version",
]


class PatchType(StrEnum):
    """The content types of a PATCH the API server understands."""

    MERGE = "application/merge-patch+json"
    """RFC 7386 JSON merge patch: works on every kind; lists are replaced whole."""
    STRATEGIC_MERGE = "application/strategic-merge-patch+json"
    """Merges lists by their keys (containers by name); built-in kinds only."""
    JSON_PATCH = "application/json-patch+json"
    """RFC 6902 operations, with ``test`` for field-level preconditions."""
    APPLY = "application/apply-patch+yaml"
    """Server-side apply; needs a field manager."""


JSON_PATCH = PatchType.JSON_PATCH.value
MERGE_PATCH = PatchType.MERGE.value
STRATEGIC_MERGE_PATCH = PatchType.STRATEGIC_MERGE.value
APPLY_PATCH = PatchType.APPLY.value


def with_resource_version(body: Any, content_type: str, resource_version: str | None) -> Any:
    """``body`` with a precondition on ``resource_version`` (a copy; None: unchanged).

    A merge, strategic-merge or apply patch carries it as ``metadata.resourceVersion``; a
    JSON patch starts with a ``test`` of ``/metadata/resourceVersion``.
    """
    if resource_version is None:
        return body
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise TypeError("a JSON patch is a list of operations")
        test = {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
        return [test, *body]
    if not isinstance(body, dict):
        raise TypeError("a merge or apply patch is an object")
    out = copy.deepcopy(body)
    metadata = out.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise TypeError("the patch's metadata is not an object")
    metadata["resourceVersion"] = resource_version
    return out
