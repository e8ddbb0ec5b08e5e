"""Every (API group, resource, verb) this package asks the API server for, in one list.

The Helm chart's RBAC is generated from and validated against
:data:`REQUIRED_PERMISSIONS`, and an integration test records every request the actions
make against the emulator and fails if one of them is not listed here. Add a line here
in the same change that adds an API call.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["REQUIRED_PERMISSIONS", "Permission", "permission_for_request"]


class Permission(NamedTuple):
    """An RBAC rule's atom: ``verb`` on ``resource`` (``deployments``) of ``group`` ("" = core).

    A tuple ``(group, resource, verb)``, the shape :mod:`agentmedic.operator.permissions`
    uses, so the chart can check the union of both sets directly.
    """

    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}.{self.group or 'core'}"


REQUIRED_PERMISSIONS: frozenset[Permission] = frozenset(
    {
        # Agents: listed per cycle, read and patched by actions and restore.
        Permission("apps", "deployments", "list"),
        Permission("apps", "deployments", "get"),
        Permission("apps", "deployments", "patch"),
        Permission("apps", "statefulsets", "list"),
        Permission("apps", "statefulsets", "get"),
        Permission("apps", "statefulsets", "patch"),
        # switchModel with spec.model.configMapKey.
        Permission("", "configmaps", "get"),
        Permission("", "configmaps", "patch"),
        # Notification channels' webhook URLs and keys.
        Permission("", "secrets", "get"),
        # One Event per action, restore and refusal.
        Permission("", "events", "create"),
        # promptOptimization.
        Permission("batch", "jobs", "list"),
        Permission("batch", "jobs", "create"),
        Permission("batch", "cronjobs", "get"),
        # scaleToZero: find the HPAs and KEDA ScaledObjects that target the agent.
        Permission("autoscaling", "horizontalpodautoscalers", "list"),
        Permission("keda.sh", "scaledobjects", "list"),
        Permission("keda.sh", "scaledobjects", "get"),
        Permission("keda.sh", "scaledobjects", "patch"),
    }
)
"""What the actions need; namespaced resources, in the namespaces the operator watches."""


_CORE = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<rest>.*)$")
_GROUP = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/(?:namespaces/(?P<ns>[^/]+)/)?(?P<rest>.*)$"
)
_METHOD_VERB = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def permission_for_request(method: str, path: str) -> Permission:
    """The RBAC permission an HTTP request to the API server needs.

    ``GET`` on a collection is ``list`` (``watch`` with ``?watch=true``), on an object
    ``get``; subresources appear as ``deployments/scale``. Raises ``ValueError`` for a path
    that is not a resource path (discovery, ``/version``).
    """
    parts = urlsplit(path)
    match = _CORE.match(parts.path)
    group = ""
    if match is None:
        match = _GROUP.match(parts.path)
        if match is None:
            raise ValueError(f"{method} {path} is not a resource request")
        group = match.group("group")
    segments = [s for s in match.group("rest").split("/") if s]
    if not segments:
        raise ValueError(f"{method} {path} names no resource")
    resource = segments[0]
    if len(segments) > 2:
        resource = f"{resource}/{segments[2]}"
    method = method.upper()
    if method == "GET":
        if len(segments) == 1:
            verb = "watch" if "watch=true" in parts.query or "watch=1" in parts.query else "list"
        else:
            verb = "get"
    elif method == "DELETE" and len(segments) == 1:
        verb = "deletecollection"
    else:
        verb = _METHOD_VERB.get(method, method.lower())
    return Permission(group, resource, verb)
