"""The resources the emulator serves, and the discovery documents that describe them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_RESOURCES", "Resource", "resources_from_crd"]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

# Field selectors the API server accepts per resource, beyond metadata.name/metadata.namespace.
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_NEW_EVENT_FIELDS = (
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
)


@dataclass(frozen=True)
class Resource:
    """One served resource (a group/version/plural) and how the server treats it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # a status subresource: main writes ignore status
    scale: bool = False  # a scale subresource on spec.replicas
    generation: bool = True  # metadata.generation maintained
    custom: bool = False  # a custom resource: no strategic merge, PUT needs resourceVersion
    field_selectors: tuple[str, ...] = ()
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        """(group, version, plural): the identity used in URLs and stores."""
        return (self.group, self.version, self.plural)

    @property
    def group_resource(self) -> str:
        """``plural.group`` as in API messages (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery_entries(self) -> list[dict[str, Any]]:
        """The APIResourceList entries for this resource and its subresources."""
        entries: list[dict[str, Any]] = [
            {
                "name": self.plural,
                "singularName": self.singular or self.kind.lower(),
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": VERBS,
                **({"shortNames": list(self.short_names)} if self.short_names else {}),
                **({"categories": list(self.categories)} if self.categories else {}),
            }
        ]
        if self.status:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.scale:
            entries.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


def _r(api_version: str, plural: str, kind: str, *short_names: str, **kwargs: Any) -> Resource:
    """A built-in resource; ``api_version`` as in a manifest (``v1``, ``apps/v1``)."""
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, plural, kind, short_names=short_names, **kwargs)


_ALL = ("all",)
_NO_GENERATION: dict[str, Any] = {"generation": False}
"""Objects without a spec to generate from: metadata.generation is not maintained."""
_WORKLOAD: dict[str, Any] = {"status": True, "scale": True, "categories": _ALL}
"""The scalable workloads: status and scale subresources, in ``kubectl get all``."""

_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)

BUILTIN_RESOURCES: tuple[Resource, ...] = (
    _r(
        "v1",
        "namespaces",
        "Namespace",
        "ns",
        namespaced=False,
        status=True,
        field_selectors=("status.phase",),
        **_NO_GENERATION,
    ),
    _r(
        "v1",
        "pods",
        "Pod",
        "po",
        status=True,
        categories=_ALL,
        field_selectors=_POD_FIELDS,
        **_NO_GENERATION,
    ),
    _r("v1", "configmaps", "ConfigMap", "cm", **_NO_GENERATION),
    _r("v1", "secrets", "Secret", field_selectors=("type",), **_NO_GENERATION),
    _r("v1", "events", "Event", "ev", field_selectors=_EVENT_FIELDS, **_NO_GENERATION),
    _r("v1", "services", "Service", "svc", status=True, categories=_ALL, **_NO_GENERATION),
    _r("v1", "serviceaccounts", "ServiceAccount", "sa", **_NO_GENERATION),
    _r("apps/v1", "deployments", "Deployment", "deploy", **_WORKLOAD),
    _r("apps/v1", "statefulsets", "StatefulSet", "sts", **_WORKLOAD),
    _r("apps/v1", "replicasets", "ReplicaSet", "rs", **_WORKLOAD),
    _r(
        "batch/v1",
        "jobs",
        "Job",
        status=True,
        categories=_ALL,
        field_selectors=("status.successful",),
    ),
    _r("batch/v1", "cronjobs", "CronJob", "cj", status=True, categories=_ALL),
    _r(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        "hpa",
        status=True,
        categories=_ALL,
    ),
    _r("keda.sh/v1alpha1", "scaledobjects", "ScaledObject", "so", status=True, custom=True),
    _r(
        "events.k8s.io/v1",
        "events",
        "Event",
        "ev",
        field_selectors=_NEW_EVENT_FIELDS,
        **_NO_GENERATION,
    ),
    _r("coordination.k8s.io/v1", "leases", "Lease", **_NO_GENERATION),
    _r("kopf.dev/v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False, custom=True),
    _r("kopf.dev/v1", "kopfpeerings", "KopfPeering", custom=True),
    _r(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        "crd",
        "crds",
        namespaced=False,
        status=True,
    ),
)


def resources_from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The resources a CustomResourceDefinition serves, one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
        result.append(
            Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                scale="scale" in subresources,
                custom=True,
                schema=schema,
            )
        )
    return result
