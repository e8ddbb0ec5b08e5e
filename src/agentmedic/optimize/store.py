"""The prompt's ConfigMap: read the live key, write a candidate as ``<key>.v<N>``, and the
result annotation.

A candidate and its records go in ONE JSON patch guarded by the ConfigMap's
resourceVersion: two optimizers racing cannot both take version N, and the live key is
never touched (agentmedic rolls the candidate out, see
:mod:`agentmedic.actions.prompt_rollout`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentmedic.api.prompt import RESULT_ANNOTATION, VERSIONS_ANNOTATION, PromptOptimizationResult
from agentmedic.kube import JSON_PATCH, MERGE_PATCH, Conflict, Invalid, Kube, KubeError, NotFound

__all__ = ["StoreError", "next_version_key", "read_prompt", "write_candidate", "write_result"]

ATTEMPTS = 5


class StoreError(Exception):
    """The ConfigMap cannot be read or written; ``message`` is one line with the fix."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        """The input named something that does not exist (exit code 2)."""


def read_prompt(kube: Kube, namespace: str, name: str, key: str) -> tuple[str, dict[str, Any]]:
    """(the prompt, the ConfigMap as read)."""
    try:
        cm = kube.get_config_map(namespace, name)
    except NotFound:
        raise StoreError(
            f"ConfigMap {namespace}/{name} not found; fix --config-map "
            "(AGENTMEDIC_PROMPT_CONFIGMAP) or spec.prompt.configMapKey.name",
            usage=True,
        ) from None
    except KubeError as exc:
        raise StoreError(f"cannot read ConfigMap {namespace}/{name}: {exc.message}") from None
    text = (cm.get("data") or {}).get(key)
    if not isinstance(text, str):
        raise StoreError(
            f"ConfigMap {namespace}/{name} has no key {key!r}; fix --key (AGENTMEDIC_PROMPT_KEY) "
            "or spec.prompt.configMapKey.key",
            usage=True,
        )
    return text, cm


def next_version_key(data: Mapping[str, Any], key: str) -> str:
    """``<key>.v<N>``, N one above the highest version of ``key`` in ``data`` (from 1)."""
    pattern = re.compile(re.escape(key) + r"\.v([0-9]+)$")
    versions = [int(m.group(1)) for k in data if (m := pattern.match(k))]
    return f"{key}.v{max(versions, default=0) + 1}"


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def write_candidate(
    kube: Kube,
    namespace: str,
    name: str,
    key: str,
    candidate: str,
    result: PromptOptimizationResult,
    at: datetime,
) -> PromptOptimizationResult:
    """Write ``candidate`` under the next version key, with the versions record and the
    result (its ``candidateKey`` filled in); returns the result as written."""
    for _ in range(ATTEMPTS):
        cm = kube.get_config_map(namespace, name)
        meta = cm.get("metadata") or {}
        data = cm.get("data") or {}
        version = next_version_key(data, key)
        written = result.model_copy(update={"candidate_key": version})
        annotations = dict(meta.get("annotations") or {})
        versions = _versions(annotations)
        versions[version] = {
            "previousKey": key,
            "job": result.job,
            "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lengthBefore": result.length_before,
            "lengthAfter": result.length_after,
        }
        annotations[VERSIONS_ANNOTATION] = json.dumps(versions, sort_keys=True)
        annotations[RESULT_ANNOTATION] = written.to_json()
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
            {"op": "add", "path": _pointer("data", version), "value": candidate},
        ]
        if "data" not in cm:
            patch[2] = {"op": "add", "path": "/data", "value": {version: candidate}}
        try:
            kube.patch_config_map(namespace, name, patch, JSON_PATCH)
        except (Conflict, Invalid):
            continue  # written by someone else meanwhile: read again, take the next version
        except KubeError as exc:
            raise StoreError(f"cannot write ConfigMap {namespace}/{name}: {exc.message}") from None
        return written
    raise StoreError(f"ConfigMap {namespace}/{name} kept changing ({ATTEMPTS} attempts)")


def write_result(kube: Kube, namespace: str, name: str, result: PromptOptimizationResult) -> None:
    """Record a result that wrote no candidate (Rejected, Failed) on the ConfigMap."""
    body = {"metadata": {"annotations": {RESULT_ANNOTATION: result.to_json()}}}
    try:
        kube.patch_config_map(namespace, name, body, MERGE_PATCH)
    except KubeError as exc:
        raise StoreError(f"cannot write ConfigMap {namespace}/{name}: {exc.message}") from None


def _versions(annotations: Mapping[str, str]) -> dict[str, Any]:
    try:
        found = json.loads(annotations.get(VERSIONS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return dict(found) if isinstance(found, dict) else {}
