"""Building prompt-optimization Jobs: pure functions from a template to a Job manifest.

A Job is made like ``kubectl create job NAME --from=cronjob/X`` makes one (the CronJob's
``jobTemplate`` metadata and spec, annotated ``cronjob.kubernetes.io/instantiate: manual``)
or from an inline template, and then given what makes it agentmedic's:

- a deterministic name from the agent and the episode key (at most 63 characters, a DNS
  label, ending in a hash of the episode), so a retry or a restart creates the same Job
  and the API's AlreadyExists tells us it was done;
- an ownerReference to the AgentPolicy, so deleting the policy deletes its Jobs;
- labels ``agentmedic.io/policy``, ``agentmedic.io/agent`` and
  ``agentmedic.io/episode-hash`` (on the Job and its pods), to find an agent's Jobs;
- ``ttlSecondsAfterFinished``;
- annotations ``agentmedic.io/rule`` and ``agentmedic.io/episode``, so that the Job's
  outcome is recorded with the episode that started it;
- the env vars ``AGENTMEDIC_AGENT``, ``AGENTMEDIC_RULE``, ``AGENTMEDIC_NAMESPACE``,
  ``AGENTMEDIC_EVIDENCE`` (JSON) and ``AGENTMEDIC_JOB`` (its name) in every container, and
  with the policy's ``spec.prompt``, ``AGENTMEDIC_PROMPT_CONFIGMAP`` and
  ``AGENTMEDIC_PROMPT_KEY`` (where the live prompt is: what ``agentmedic optimize-prompt``
  reads).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from agentmedic.actions.record import (
    AGENT_LABEL,
    BASELINE,
    EPISODE,
    EPISODE_HASH_LABEL,
    POLICY_LABEL,
    RULE,
    PolicyRef,
    canonical_json,
    episode_hash,
)

__all__ = [
    "ENV_AGENT",
    "ENV_EVIDENCE",
    "ENV_JOB",
    "ENV_NAMESPACE",
    "ENV_PROMPT_CONFIGMAP",
    "ENV_PROMPT_KEY",
    "ENV_RULE",
    "INSTANTIATE_ANNOTATION",
    "build_job",
    "job_finished",
    "job_name",
    "label_value",
]

INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"
ENV_AGENT = "AGENTMEDIC_AGENT"
ENV_RULE = "AGENTMEDIC_RULE"
ENV_NAMESPACE = "AGENTMEDIC_NAMESPACE"
ENV_EVIDENCE = "AGENTMEDIC_EVIDENCE"
ENV_JOB = "AGENTMEDIC_JOB"
ENV_PROMPT_CONFIGMAP = "AGENTMEDIC_PROMPT_CONFIGMAP"
ENV_PROMPT_KEY = "AGENTMEDIC_PROMPT_KEY"

_DNS_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


def job_name(agent: str, episode: str) -> str:
    """``<agent>-prompt-opt-<hash>``: a DNS label of at most 63 characters.

    The Job controller copies a Job's name into its pods' ``job-name`` label, whose value
    is limited to 63 characters, hence the limit. The hash alone identifies the episode;
    the agent part is for people and is shortened as needed.
    """
    digest = episode_hash(episode)
    stem = _DNS_INVALID.sub("-", agent.lower()).strip("-") or "agent"
    stem = f"{stem}-prompt-opt"
    stem = stem[: 63 - 1 - len(digest)].rstrip("-")
    return f"{stem}-{digest}"


def label_value(text: str) -> str:
    """A valid label value for ``text``: itself when valid, else a cleaned prefix and a hash."""
    if len(text) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", text):
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    cleaned = _LABEL_INVALID.sub("-", text).strip("-_.")[: 63 - 1 - len(digest)].rstrip("-_.")
    return f"{cleaned}-{digest}" if cleaned else digest


def job_finished(job: Mapping[str, Any]) -> bool:
    """True when the Job has a ``Complete`` or ``Failed`` condition that is ``True``.

    A Job without status (just created) counts as running: better to refuse a second Job
    for a moment than to run two.
    """
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for entry in env:
        if entry.get("name") == name:
            entry.clear()
            entry.update({"name": name, "value": value})
            return
    env.append({"name": name, "value": value})


def build_job(
    *,
    template: Mapping[str, Any],
    name: str,
    namespace: str,
    policy: PolicyRef,
    agent: str,
    rule: str,
    episode: str,
    evidence: Mapping[str, Any],
    ttl_seconds_after_finished: int,
    from_cron_job: str | None = None,
    prompt: tuple[str, str] | None = None,
    baseline: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The Job manifest for a prompt-optimization run (no I/O).

    ``template`` is a CronJob's ``spec.jobTemplate`` or an inline ``{metadata, spec}``.
    The template is copied, never modified. A pod template without ``restartPolicy`` gets
    ``Never`` (a Job refuses the Pod default ``Always``). Unlike kubectl, which makes the
    CronJob the owner, the owner is the AgentPolicy: with two owners the garbage collector
    would keep the Job until both were gone. ``prompt`` is ``(ConfigMap, key)`` of the live
    prompt (the policy's ``spec.prompt`` for this agent). ``baseline`` (the agent's signals
    before the episode, with ``spec.verify``) rides on the Job as ``agentmedic.io/baseline``
    until its candidate is rolled out and put on probation against it.
    """
    tmpl_meta = copy.deepcopy(dict(template.get("metadata") or {}))
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    labels = dict(tmpl_meta.get("labels") or {})
    # As kubectl does: the marker first, so the template's own annotations win.
    annotations = {INSTANTIATE_ANNOTATION: "manual"} if from_cron_job is not None else {}
    annotations.update(tmpl_meta.get("annotations") or {})
    annotations.update({RULE: rule, EPISODE: episode})
    if baseline is not None:
        annotations[BASELINE] = canonical_json(dict(baseline))
    ours = {
        POLICY_LABEL: label_value(policy.name),
        AGENT_LABEL: label_value(agent),
        EPISODE_HASH_LABEL: episode_hash(episode),
    }
    labels.update(ours)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [policy.owner_reference()],
    }
    metadata["annotations"] = annotations

    spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    pod = spec.setdefault("template", {})
    pod_meta = pod.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **ours}
    pod_spec = pod.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    evidence_json = json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str)
    for container in pod_spec.get("containers") or []:
        _set_env(container, ENV_AGENT, agent)
        _set_env(container, ENV_RULE, rule)
        _set_env(container, ENV_NAMESPACE, namespace)
        _set_env(container, ENV_EVIDENCE, evidence_json)
        _set_env(container, ENV_JOB, name)
        if prompt is not None:
            _set_env(container, ENV_PROMPT_CONFIGMAP, prompt[0])
            _set_env(container, ENV_PROMPT_KEY, prompt[1])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
