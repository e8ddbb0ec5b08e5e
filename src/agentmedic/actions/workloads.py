"""Reading agents: slim views of their workloads, label selectors, the model they run.

The operator lists a policy's agents once per cycle; :class:`WorkloadInfo` keeps only what
the engine and the actions need, so nothing downstream depends on the full object.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agentmedic.actions.errors import NotFound
from agentmedic.actions.record import (
    AGENT_LABEL,
    DisabledRecord,
    DowngradedRecord,
    WorkloadRef,
    parse_disabled,
    parse_downgraded,
)
from agentmedic.api.types import LabelSelector, ModelSpec
from agentmedic.kube import Kube

__all__ = [
    "WorkloadInfo",
    "config_map_value",
    "find_env",
    "label_selector_string",
    "list_workloads",
    "read_secret_value",
    "template_env_value",
    "workload_info",
]


def _quote_values(values: list[str]) -> str:
    return ",".join(sorted(values))


def label_selector_string(selector: LabelSelector) -> str:
    """Render a :class:`LabelSelector` in the API's ``labelSelector`` query syntax.

    ``matchLabels`` become ``k=v``; expressions become ``k in (a,b)``, ``k notin (a,b)``,
    ``k`` and ``!k``. Terms are sorted so the same selector always gives the same string.
    An empty selector gives ``""``, which selects everything (as in Kubernetes).
    """
    terms = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in sorted(selector.match_expressions, key=lambda r: (r.key, r.operator)):
        if req.operator == "In":
            terms.append(f"{req.key} in ({_quote_values(req.values)})")
        elif req.operator == "NotIn":
            terms.append(f"{req.key} notin ({_quote_values(req.values)})")
        elif req.operator == "Exists":
            terms.append(req.key)
        else:
            terms.append(f"!{req.key}")
    return ",".join(terms)


def find_env(workload: Mapping[str, Any], container: str, name: str) -> tuple[int, int, Any]:
    """Locate env var ``name`` of ``container`` in the pod template.

    Returns ``(container index, env index, entry)``; an index is -1 when the container or
    the variable is absent (env index -1 and entry None when only the variable is).
    """
    containers = ((workload.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []
    for ci, c in enumerate(containers):
        if c.get("name") != container:
            continue
        for ei, entry in enumerate(c.get("env") or []):
            if entry.get("name") == name:
                return ci, ei, entry
        return ci, -1, None
    return -1, -1, None


def template_env_value(workload: Mapping[str, Any], container: str, name: str) -> str | None:
    """The literal value of an env var of a container, None if absent or set by valueFrom."""
    _, _, entry = find_env(workload, container, name)
    if entry is None or "value" not in entry:
        return None
    value = entry.get("value")
    return None if value is None else str(value)


@dataclass(frozen=True)
class WorkloadInfo:
    """A slim view of an agent's Deployment or StatefulSet.

    ``agent`` is the label ``agentmedic.io/agent`` or, without it, the workload's name.
    ``model`` is the model the policy's ``spec.model`` points at (env value or ConfigMap
    key), when one was asked for and could be read.
    """

    kind: str
    namespace: str
    name: str
    agent: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    replicas: int | None
    ready_replicas: int
    available_replicas: int
    resource_version: str
    uid: str = ""
    model: str | None = None
    env: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ref(self) -> WorkloadRef:
        """The reference actions take."""
        if self.kind == "Deployment":
            return WorkloadRef("Deployment", self.namespace, self.name)
        return WorkloadRef("StatefulSet", self.namespace, self.name)

    @property
    def disabled(self) -> DisabledRecord | None:
        """agentmedic's scale-to-zero record, if any."""
        return parse_disabled(self.annotations)

    @property
    def downgraded(self) -> DowngradedRecord | None:
        """agentmedic's model-switch record, if any."""
        return parse_downgraded(self.annotations)


def workload_info(
    obj: Mapping[str, Any], kind: str, model_spec: ModelSpec | None = None
) -> WorkloadInfo:
    """Slim a Deployment/StatefulSet dict; ``model`` is filled from env only (no I/O)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = dict(meta.get("labels") or {})
    env: dict[tuple[str, str], str] = {}
    model: str | None = None
    if model_spec is not None and model_spec.env is not None:
        container, name = model_spec.env.container, model_spec.env.name
        value = template_env_value(obj, container, name)
        if value is not None:
            env[(container, name)] = value
            model = value
    replicas = spec.get("replicas")
    return WorkloadInfo(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        agent=labels.get(AGENT_LABEL) or str(meta.get("name", "")),
        labels=labels,
        annotations=dict(meta.get("annotations") or {}),
        replicas=int(replicas) if isinstance(replicas, int) else None,
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        uid=str(meta.get("uid", "")),
        model=model,
        env=env,
    )


def list_workloads(
    kube: Kube,
    namespace: str,
    label_selector: str | LabelSelector,
    model_spec: ModelSpec | None = None,
) -> list[WorkloadInfo]:
    """Deployments and StatefulSets matching a selector (server-side), sorted by kind, name.

    With a ``model_spec`` pointing at a ConfigMap key, each distinct ConfigMap is read once;
    a missing ConfigMap or key leaves ``model`` None rather than failing the listing.
    """
    selector = (
        label_selector if isinstance(label_selector, str) else label_selector_string(label_selector)
    )
    infos: list[WorkloadInfo] = []
    for kind in ("Deployment", "StatefulSet"):
        for obj in kube.list_workloads(kind, namespace, selector):
            infos.append(workload_info(obj, kind, model_spec))
    if model_spec is not None and model_spec.config_map_key is not None and infos:
        ref = model_spec.config_map_key
        values: dict[str, str | None] = {}
        for info in infos:
            name = ref.config_map_for(info.name)
            if name not in values:
                values[name] = config_map_value(kube, namespace, name, ref.key)
        infos = [_with_model(i, values[ref.config_map_for(i.name)]) for i in infos]
    return sorted(infos, key=lambda i: (i.kind, i.name))


def _with_model(info: WorkloadInfo, model: str | None) -> WorkloadInfo:
    return replace(info, model=model)


def config_map_value(kube: Kube, namespace: str, name: str, key: str) -> str | None:
    """A ConfigMap's ``data[key]``, or None when the ConfigMap or the key is absent."""
    try:
        cm = kube.get_config_map(namespace, name)
    except NotFound:
        return None
    value = (cm.get("data") or {}).get(key)
    return None if value is None else str(value)


def read_secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    """The decoded value of ``data[key]`` of a Secret. Never log the result.

    Raises :class:`~agentmedic.actions.errors.NotFound` naming the Secret and the key (never
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
