"""What a real API server checks and normalises on built-in kinds, as far as the emulator goes.

A real server decodes every body into Go structs and validates them with each kind's
hand-written rules; the emulator has no Go types, so it reproduces only the parts that
agentmedic's code and tests can meet:

- ``replicas`` is an ``int32``: a value beyond it cannot be decoded (see :func:`int32_overflow`);
- an env entry's ``value`` is ``omitempty``: ``""`` is not sent back (:func:`normalize`);
- a Deployment's, StatefulSet's or ReplicaSet's ``spec.selector`` is immutable;
- a Job's name becomes the value of its ``job-name`` labels, so it has at most 63 characters;
- a core/v1 Event's ``involvedObject.namespace`` must be the Event's namespace.

Messages are worded as the API server's (``field: Invalid value: ...: detail``).
"""

from __future__ import annotations

import json
from typing import Any

from agentmedic_sandbox._emulator_patch import clone
from agentmedic_sandbox._emulator_resources import Resource
from agentmedic_sandbox._emulator_schema import Cause

__all__ = [
    "INT32_MAX",
    "builtin_causes",
    "int32_overflow",
    "normalize",
    "wrap_int32",
]

Obj = dict[str, Any]

INT32_MAX = 2**31 - 1
_LABEL_VALUE_MAX = 63
_SELECTOR_IMMUTABLE = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _has_replicas(res: Resource) -> bool:
    return res.scale and res.group == "apps"


def int32_overflow(res: Resource, obj: Obj, *, scale: bool = False) -> str | None:
    """Go's decoding error when ``spec.replicas`` does not fit an ``int32``, else None.

    ``scale``: ``obj`` is the autoscaling/v1 ``Scale`` of ``res``.
    """
    if not (scale or _has_replicas(res)):
        return None
    replicas = (obj.get("spec") or {}).get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        return None
    if -(2**31) <= replicas <= INT32_MAX:
        return None
    struct = "ScaleSpec" if scale else f"{res.kind}Spec"
    return (
        f"json: cannot unmarshal number {replicas} into Go struct field "
        f"{struct}.spec.replicas of type int32"
    )


def wrap_int32(res: Resource, obj: Obj) -> Obj:
    """``obj`` with ``spec.replicas`` converted to ``int32`` as Go's ``reflect`` does.

    A strategic merge patch is applied to maps and converted to the Go struct with the
    unstructured converter, which does not check ranges: 2^31 becomes -2^31.
    """
    spec = obj.get("spec")
    if not _has_replicas(res) or not isinstance(spec, dict):
        return obj
    replicas = spec.get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        return obj
    wrapped = (replicas + 2**31) % 2**32 - 2**31
    if wrapped == replicas:
        return obj
    return {**obj, "spec": {**spec, "replicas": wrapped}}


def _pod_specs(res: Resource, obj: Obj) -> list[Obj]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    if res.group == "" and res.plural == "pods":
        return [spec]
    if res.group == "batch" and res.plural == "cronjobs":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    return [pod] if isinstance(pod, dict) else []


def normalize(res: Resource, obj: Obj) -> Obj:
    """``obj`` as a real server would send it back: ``env[].value: ""`` left out.

    ``EnvVar.Value`` is ``omitempty`` in the Go types, so an empty value is stored as the
    zero value and not serialised; ``{"name": "X", "value": ""}`` reads back as
    ``{"name": "X"}``. The stored object is never mutated: changed parts are copied.
    """
    if res.custom or not _pod_specs(res, obj):
        return obj
    out = clone(obj)
    for pod in _pod_specs(res, out):
        for key in _CONTAINER_LISTS:
            for container in pod.get(key) or []:
                if not isinstance(container, dict):
                    continue
                for var in container.get("env") or []:
                    if isinstance(var, dict) and var.get("value") == "":
                        del var["value"]
    return out


def _selector_text(selector: Any) -> str:
    """The selector as the API server prints a value in a field error: Go's JSON of it
    (empty fields left out, map keys sorted)."""
    if not isinstance(selector, dict):
        return "null"
    out: dict[str, Any] = {}
    if selector.get("matchLabels"):
        out["matchLabels"] = dict(sorted(selector["matchLabels"].items()))
    if selector.get("matchExpressions"):
        out["matchExpressions"] = selector["matchExpressions"]
    return json.dumps(out, separators=(",", ":"))


def _selector_causes(res: Resource, obj: Obj, old: Obj | None) -> list[Cause]:
    if old is None or (res.group, res.plural) not in _SELECTOR_IMMUTABLE:
        return []
    new_selector = (obj.get("spec") or {}).get("selector")
    old_selector = (old.get("spec") or {}).get("selector")
    if _canonical_selector(new_selector) == _canonical_selector(old_selector):
        return []
    return [
        Cause(
            "spec.selector",
            "FieldValueInvalid",
            f"spec.selector: Invalid value: {_selector_text(new_selector)}: field is immutable",
        )
    ]


def _canonical_selector(selector: Any) -> Any:
    """Semantic equality as Go's ``apiequality.Semantic.DeepEqual``: empty equals absent."""
    if not isinstance(selector, dict):
        return selector
    return {
        "matchLabels": selector.get("matchLabels") or {},
        "matchExpressions": selector.get("matchExpressions") or [],
    }


def _job_name_causes(res: Resource, obj: Obj, old: Obj | None) -> list[Cause]:
    if old is not None or (res.group, res.plural) != ("batch", "jobs"):
        return []
    name = str((obj.get("metadata") or {}).get("name") or "")
    if len(name) <= _LABEL_VALUE_MAX:
        return []
    # The registry puts the name into the template's `batch.kubernetes.io/job-name` and
    # `job-name` labels, whose values are validated (the first error is the one reported).
    return [
        Cause(
            "spec.template.labels",
            "FieldValueInvalid",
            f'spec.template.labels: Invalid value: "{name}": must be no more than '
            f"{_LABEL_VALUE_MAX} bytes",
        )
    ]


def _event_causes(res: Resource, obj: Obj) -> list[Cause]:
    if (res.group, res.plural) != ("", "events"):
        return []
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    involved = str((obj.get("involvedObject") or {}).get("namespace") or "")
    if obj.get("eventTime"):
        ok = bool(involved) or namespace in ("default", "kube-system")
    elif involved:
        ok = involved == namespace
    else:
        ok = namespace in ("", "default")
    if ok:
        return []
    return [
        Cause(
            "involvedObject.namespace",
            "FieldValueInvalid",
            f'involvedObject.namespace: Invalid value: "{involved}": does not match '
            "event.namespace",
        )
    ]


def builtin_causes(res: Resource, obj: Obj, old: Obj | None) -> list[Cause]:
    """The field errors of a create (``old`` None) or an update of a built-in kind."""
    if res.custom:
        return []
    return [
        *_selector_causes(res, obj, old),
        *_job_name_causes(res, obj, old),
        *_event_causes(res, obj),
    ]
