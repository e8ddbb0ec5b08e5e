"""Resource paths on the API server, each segment quoted.

Only this layer builds request paths: callers name a kind, a namespace and a name.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = [
    "APPS_V1",
    "BATCH_V1",
    "COORDINATION_V1",
    "CORE_V1",
    "HPA_V2",
    "KEDA_API",
    "KEDA_SCALED_OBJECTS",
    "WORKLOAD_KINDS",
    "custom_api",
    "resource_path",
    "workload_path",
]

CORE_V1 = "api/v1"
APPS_V1 = "apis/apps/v1"
BATCH_V1 = "apis/batch/v1"
HPA_V2 = "apis/autoscaling/v2"
COORDINATION_V1 = "apis/coordination.k8s.io/v1"
KEDA_API = "apis/keda.sh/v1alpha1"
KEDA_SCALED_OBJECTS = "scaledobjects"

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
"""The kinds an agent runs as."""

_WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


def custom_api(group: str, version: str) -> str:
    """``apis/GROUP/VERSION``."""
    return f"apis/{quote(group, safe='')}/{quote(version, safe='')}"


def resource_path(
    api: str,
    namespace: str | None,
    plural: str,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/API/namespaces/NS/PLURAL[/NAME[/SUBRESOURCE]]`` with each segment quoted; with
    ``namespace`` None, ``/API/PLURAL``: the collection across all namespaces."""
    scope = "" if namespace is None else f"/namespaces/{quote(namespace, safe='')}"
    tail = f"/{quote(name, safe='')}" if name else ""
    if subresource:
        if not name:
            raise ValueError("a subresource needs an object name")
        tail += f"/{quote(subresource, safe='')}"
    return f"/{api}{scope}/{plural}{tail}"


def workload_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """The path of a Deployment or StatefulSet (or of their collection in ``namespace``,
    or in all namespaces when it is None)."""
    plural = _WORKLOAD_PLURALS.get(kind)
    if plural is None:
        raise ValueError(f"kind must be Deployment or StatefulSet, not {kind!r}")
    return resource_path(APPS_V1, namespace, plural, name)
