"""Readers for what the operator and the actions read besides whole objects: a
ConfigMap's key, a Secret's key, the workloads a label selector picks.

Each takes a :class:`~agentmedic.kube.client.Kube` and returns plain values; absence is
None where the caller can go on without it, :class:`~agentmedic.kube.errors.NotFound`
(naming the object and the key, never a value) where it cannot.
"""

from __future__ import annotations

import base64
from typing import Any

from agentmedic.kube.client import Kube
from agentmedic.kube.errors import NotFound
from agentmedic.kube.paths import WORKLOAD_KINDS

__all__ = ["config_map_value", "secret_value", "selected_workloads"]


def config_map_value(kube: Kube, namespace: str, name: str, key: str) -> str | None:
    """A ConfigMap's ``data[key]``, or None when the ConfigMap or the key is absent."""
    try:
        cm = kube.get_config_map(namespace, name)
    except NotFound:
        return None
    value = (cm.get("data") or {}).get(key)
    return None if value is None else str(value)


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    """The decoded value of ``data[key]`` of a Secret. Never log the result.

    Raises :class:`~agentmedic.kube.errors.NotFound` naming the Secret and the key (never
    the value) when either is absent.
    """
    secret = kube.get_secret(namespace, name)
    data = secret.get("data") or {}
    if key in data:
        # `echo url | kubectl create secret` leaves a newline that would break a URL.
        return base64.b64decode(data[key]).decode("utf-8").rstrip("\r\n")
    string_data = secret.get("stringData") or {}
    if key in string_data:  # only some servers echo stringData; harmless to honour it
        return str(string_data[key]).rstrip("\r\n")
    keys = ", ".join(sorted(data)) or "none"
    raise NotFound(
        f"Secret {namespace}/{name} has no key {key!r} (keys: {keys}); fix the secretRef's "
        "key or add it to the Secret"
    )


def selected_workloads(
    kube: Kube, namespace: str, selector: str
) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, object)`` of every Deployment, then every StatefulSet, that ``selector``
    (the API's ``labelSelector`` syntax) picks in ``namespace``."""
    return [
        (kind, obj)
        for kind in WORKLOAD_KINDS
        for obj in kube.list_workloads(kind, namespace, selector)
    ]
