"""The record agentmedic keeps on the workloads it changes: ``agentmedic.io/*`` annotations.

The record lives on the workload itself, so it survives operator restarts, shows in
``kubectl describe`` and travels with the object; restore needs nothing else. Every key
is defined here and nowhere else.

================================  ========  ==================================================
key (``agentmedic.io/`` + …)      value     meaning
================================  ========  ==================================================
``disabled``                      JSON      Scaled to zero by agentmedic. ``replicas``: the
                                            count before (restore puts it back); ``keda``:
                                            the ScaledObject paused and its previous
                                            ``paused-replicas`` (null: absent); ``hpa``: the
                                            HPAs targeting the workload; who/why/when.
``downgraded``                    JSON      Moved to a cheaper model. ``model``: the value
                                            before (the first, if switched several times);
                                            ``to``: the value set; ``source``: where it lives
                                            (``env``: container and name, or
                                            ``configMapKey``: name and key); who/why/when.
``probation``                     JSON      A change on probation (``spec.verify``):
                                            ``kind`` (switchModel | prompt), ``previous`` and
                                            ``new`` value, ``baseline`` (the signals over
                                            verify.baselineWindow before the change,
                                            ``executions`` included); who/why/when. Written
                                            with the change by
                                            :func:`agentmedic.actions.probation.
                                            probation_annotations`; removed by a restore,
                                            kept with ``revertedAt`` by a revert.
``policy``                        text      Who: ``namespace/name`` of the policy of the last
                                            action.
``rule``                          text      Why: the rule (or ``budget.hard`` …) of the last
                                            action.
``reason``                        text      Why, in words, with the evidence in short.
``acted-at``                      RFC 3339  When the last action was taken (UTC).
``episode``                       text      The episode key of the last action; the same
                                            episode never acts twice.
``last-restore``                  text      After a restore: when, by whom, what was put
                                            back. Kept; overwritten by the next restore.
``restore``                       ``true``  Set by a person: restore this workload. The
                                            operator restores and removes the key.
``policy-deleted``                text      The policy that acted here was deleted
                                            (``namespace/name at time``); its changes stay
                                            until restored.
``state.<policy>``                JSON      The operator's per-agent engine state for one
                                            policy; opaque to everything else.
================================  ========  ==================================================

Inside the JSON records, who/why/when repeat as ``policy``, ``policyUid``, ``rule``,
``episode``, ``reason``, ``evidence`` and ``at``, so each record stands on its own when the
flat keys have been overwritten by a later action.

Dry run never reaches this record: a policy with ``guardrails.dryRun`` writes only Events
whose reason starts with ``Would`` (``WouldScaleToZero``) and whose message starts with
"would". :attr:`ActionRecord.dry_run` is what tells the executor to behave that way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agentmedic.actions.errors import CorruptRecordError
from agentmedic.api.types import API_VERSION, KIND

__all__ = [
    "ACTED_AT",
    "AGENT_LABEL",
    "DISABLED",
    "DOWNGRADED",
    "EPISODE",
    "EPISODE_HASH_LABEL",
    "LAST_ACTION_KEYS",
    "LAST_RESTORE",
    "MAX_REPLICAS",
    "MODEL_TEMPLATE_ANNOTATION",
    "POLICY",
    "POLICY_DELETED",
    "POLICY_LABEL",
    "PREFIX",
    "PROBATION",
    "REASON",
    "RESTORE_REQUEST",
    "RULE",
    "STATE_PREFIX",
    "ActionRecord",
    "ModelSwitchRecord",
    "PolicyRef",
    "ScaledToZeroRecord",
    "WorkloadRef",
    "canonical_json",
    "episode_hash",
    "format_time",
    "json_pointer",
    "load_object",
    "parse_baseline",
    "parse_disabled",
    "parse_downgraded",
    "read_disabled",
    "read_downgraded",
    "state_key",
]

PREFIX = "agentmedic.io/"
DISABLED = PREFIX + "disabled"
DOWNGRADED = PREFIX + "downgraded"
PROBATION = PREFIX + "probation"
BASELINE = PREFIX + "baseline"
"""On a prompt-optimization Job: the agent's signals before the episode (spec.verify), for
the probation of the prompt the Job produces."""
POLICY = PREFIX + "policy"
RULE = PREFIX + "rule"
REASON = PREFIX + "reason"
ACTED_AT = PREFIX + "acted-at"
EPISODE = PREFIX + "episode"
LAST_RESTORE = PREFIX + "last-restore"
RESTORE_REQUEST = PREFIX + "restore"
POLICY_DELETED = PREFIX + "policy-deleted"
STATE_PREFIX = PREFIX + "state."
AGENT_LABEL = PREFIX + "agent"
POLICY_LABEL = PREFIX + "policy"
EPISODE_HASH_LABEL = PREFIX + "episode-hash"
MODEL_TEMPLATE_ANNOTATION = PREFIX + "model"

LAST_ACTION_KEYS = (POLICY, RULE, REASON, ACTED_AT, EPISODE)
"""The flat who/why/when keys describing the last action; cleared by a full restore."""

# An annotation value has no hard limit of its own (all annotations together must stay under
# 256 KiB), but a reason is for people: keep it readable in `kubectl describe`.
MAX_TEXT = 1024


@dataclass(frozen=True, order=True)
class WorkloadRef:
    """A Deployment or StatefulSet, by kind, namespace and name."""

    kind: Literal["Deployment", "StatefulSet"]
    namespace: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("Deployment", "StatefulSet"):
            raise ValueError(f"kind must be Deployment or StatefulSet, not {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} in {self.namespace}"

    @property
    def api_version(self) -> str:
        """``apps/v1`` for both kinds."""
        return "apps/v1"

    def object_reference(self, uid: str | None = None) -> dict[str, str]:
        """The ``involvedObject`` of an Event about this workload."""
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }
        if uid:
            ref["uid"] = uid
        return ref


@dataclass(frozen=True)
class PolicyRef:
    """The AgentPolicy that acts: what an ownerReference and an Event's involvedObject need."""

    namespace: str
    name: str
    uid: str = ""
    api_version: str = API_VERSION
    kind: str = KIND

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def object_reference(self) -> dict[str, str]:
        """The ``involvedObject`` of an Event about this policy."""
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref

    def owner_reference(self) -> dict[str, Any]:
        """An ownerReference making a child (a Job) garbage-collected with the policy."""
        if not self.uid:
            raise ValueError(
                f"policy {self}: an ownerReference needs the policy's metadata.uid; pass it "
                "in PolicyRef(uid=...)"
            )
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }


@dataclass(frozen=True)
class ActionRecord:
    """Who decided an action, why, and when; written into the workload's annotations.

    ``episode`` is the idempotency key: the same episode never acts twice on a workload,
    and names the prompt-optimization Job. ``evidence`` is a short human summary of the
    measurements ("error_rate 0.31 > 0.15 over 5m"); it must never contain a secret.
    """

    policy: PolicyRef
    rule: str
    episode: str
    reason: str
    evidence: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    dry_run: bool = False
    baseline: Mapping[str, float | None] | None = None
    """With spec.verify: the agent's signals before the change; a switch then writes the
    probation record (:mod:`agentmedic.actions.probation`) with the change."""

    def who_why_when(self) -> dict[str, Any]:
        """The fields every JSON record repeats."""
        return {
            "policy": str(self.policy),
            "policyUid": self.policy.uid,
            "rule": self.rule,
            "episode": self.episode,
            "reason": _clip(self.reason),
            "evidence": _clip(self.evidence),
            "at": format_time(self.at),
        }

    def flat_annotations(self) -> dict[str, str]:
        """The flat who/why/when keys for ``kubectl describe``."""
        reason = self.reason if not self.evidence else f"{self.reason} ({self.evidence})"
        return {
            POLICY: str(self.policy),
            RULE: self.rule,
            REASON: _clip(reason),
            ACTED_AT: format_time(self.at),
            EPISODE: self.episode,
        }


@dataclass(frozen=True)
class ScaledToZeroRecord:
    """The parsed ``agentmedic.io/disabled`` annotation."""

    replicas: int
    episode: str
    policy: str
    rule: str
    at: str
    keda_scaled_object: str | None = None
    keda_previous_paused_replicas: str | None = None
    hpas: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSwitchRecord:
    """The parsed ``agentmedic.io/downgraded`` annotation."""

    model: str
    to: str
    source: Mapping[str, Any]
    episode: str
    policy: str
    rule: str
    at: str
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> tuple[str, str] | None:
        """``(container, variable)`` when the model lives in an env var."""
        env = self.source.get("env")
        if isinstance(env, Mapping):
            return str(env.get("container", "")), str(env.get("name", ""))
        return None

    @property
    def config_map_key(self) -> tuple[str, str] | None:
        """``(configmap, key)`` when the model lives in a ConfigMap."""
        cm = self.source.get("configMapKey")
        if isinstance(cm, Mapping):
            return str(cm.get("name", "")), str(cm.get("key", ""))
        return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, second precision, as Kubernetes writes times."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys, so equal values give equal annotation strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_object(annotations: Mapping[str, str], key: str) -> dict[str, Any] | None:
    """The JSON object in annotation ``key``; None when it is missing or unreadable (a
    hand-edited value), so that readers start afresh rather than crash."""
    raw = annotations.get(key)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


MAX_REPLICAS = 2**31 - 1
"""spec.replicas is an int32; a recorded count above it was never a real one."""
# Model names as providers spell them: gpt-4o, claude-3-5-sonnet@20240620,
# meta-llama/Llama-3-70b, ft:gpt-4o-mini:acme::abc123. No spaces or control characters.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,252}$")


def _strict_load(annotations: Mapping[str, str], key: str) -> dict[str, Any] | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise CorruptRecordError(key, "is not valid JSON") from None
    if not isinstance(value, dict):
        raise CorruptRecordError(key, f"holds a JSON {type(value).__name__}, not an object")
    return value


def read_disabled(
    annotations: Mapping[str, str], *, max_replicas: int = MAX_REPLICAS
) -> ScaledToZeroRecord | None:
    """The disabled record as restore needs it: None when absent; :class:`CorruptRecordError`
    when it is unreadable or its replica count is not one a person could have had
    (negative, not an integer, beyond int32 or beyond ``max_replicas``)."""
    value = _strict_load(annotations, DISABLED)
    if value is None:
        return None
    replicas = value.get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise CorruptRecordError(DISABLED, f"has replicas {_shown(replicas)}, not an integer")
    limit = min(max_replicas, MAX_REPLICAS)
    if not 0 <= replicas <= limit:
        raise CorruptRecordError(DISABLED, f"has replicas {replicas}, outside 0..{limit}")
    keda = value.get("keda")
    if keda is not None and not (
        isinstance(keda, dict)
        and isinstance(keda.get("scaledObject"), str)
        and isinstance(keda.get("pausedReplicas"), str | int | type(None))
    ):
        raise CorruptRecordError(
            DISABLED, "has a keda entry that is not {scaledObject, pausedReplicas}"
        )
    hpa = value.get("hpa")
    if hpa is not None and not (isinstance(hpa, list) and all(isinstance(h, str) for h in hpa)):
        raise CorruptRecordError(DISABLED, "has an hpa entry that is not a list of names")
    return parse_disabled(annotations)


def read_downgraded(annotations: Mapping[str, str]) -> ModelSwitchRecord | None:
    """The downgraded record as restore needs it: None when absent; :class:`CorruptRecordError`
    when it is unreadable, its models are not plausible model names or its source is not
    an env var or a ConfigMap key."""
    value = _strict_load(annotations, DOWNGRADED)
    if value is None:
        return None
    for field_name in ("model", "to"):
        model = value.get(field_name)
        if not isinstance(model, str) or not _MODEL_NAME.match(model):
            raise CorruptRecordError(
                DOWNGRADED, f"has {field_name} {_shown(model)}, which is not a model name"
            )
    source = value.get("source")
    env = source.get("env") if isinstance(source, dict) else None
    cm = source.get("configMapKey") if isinstance(source, dict) else None
    valid = (isinstance(env, dict) and _names(env, "container", "name")) or (
        isinstance(cm, dict) and _names(cm, "name", "key")
    )
    if not valid:
        raise CorruptRecordError(
            DOWNGRADED,
            "has a source that is neither env {container, name} nor configMapKey {name, key}",
        )
    return parse_downgraded(annotations)


def _names(entry: Mapping[str, Any], *keys: str) -> bool:
    return all(isinstance(entry.get(k), str) and 0 < len(entry[k]) <= 253 for k in keys)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if value is not None else "missing"
    return text if len(text) <= 40 else text[:39] + "…"


def parse_disabled(annotations: Mapping[str, str]) -> ScaledToZeroRecord | None:
    """The disabled record, or None when absent or unreadable (a hand-edited value)."""
    value = load_object(annotations, DISABLED)
    if value is None or not isinstance(value.get("replicas"), int):
        return None
    keda = value.get("keda") if isinstance(value.get("keda"), dict) else None
    previous = keda.get("pausedReplicas") if keda else None
    return ScaledToZeroRecord(
        replicas=int(value["replicas"]),
        episode=str(value.get("episode", "")),
        policy=str(value.get("policy", "")),
        rule=str(value.get("rule", "")),
        at=str(value.get("at", "")),
        keda_scaled_object=str(keda["scaledObject"]) if keda and keda.get("scaledObject") else None,
        keda_previous_paused_replicas=None if previous is None else str(previous),
        hpas=tuple(str(h) for h in value.get("hpa") or ()),
        raw=value,
    )


def parse_downgraded(annotations: Mapping[str, str]) -> ModelSwitchRecord | None:
    """The downgraded record, or None when absent or unreadable."""
    value = load_object(annotations, DOWNGRADED)
    if value is None or not isinstance(value.get("model"), str):
        return None
    source = value.get("source") if isinstance(value.get("source"), dict) else {}
    return ModelSwitchRecord(
        model=value["model"],
        to=str(value.get("to", "")),
        source=source or {},
        episode=str(value.get("episode", "")),
        policy=str(value.get("policy", "")),
        rule=str(value.get("rule", "")),
        at=str(value.get("at", "")),
        raw=value,
    )


def json_pointer(*parts: str | int) -> str:
    """An RFC 6901 pointer: ``~`` and ``/`` inside a part are escaped (``agentmedic.io~1x``)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def episode_hash(episode: str, length: int = 10) -> str:
    """A short, stable, label-safe digest of an episode key."""
    return hashlib.sha256(episode.encode("utf-8")).hexdigest()[:length]


_NAME_PART = re.compile(r"^[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$")


def state_key(policy_key: str) -> str:
    """The annotation key holding one policy's engine state for an agent.

    The part after ``agentmedic.io/`` must be a qualified name of at most 63 characters;
    a policy key that is not one (``agents/support-bot``) is sanitised and suffixed with
    a digest of the original, so distinct keys never collide.
    """
    name = "state." + policy_key
    if len(name) <= 63 and _NAME_PART.match(name):
        return PREFIX + name
    digest = hashlib.sha256(policy_key.encode("utf-8")).hexdigest()[:8]
    cleaned = re.sub(r"[^-a-zA-Z0-9_.]+", "-", policy_key).strip("-_.") or "policy"
    cleaned = cleaned[: 63 - len("state.") - 1 - len(digest)].rstrip("-_.")
    return f"{STATE_PREFIX}{cleaned}-{digest}"


def parse_baseline(annotations: Mapping[str, str]) -> dict[str, float | None] | None:
    """The baseline a Job carries (``agentmedic.io/baseline``); None when absent or
    unreadable (a prompt without a trustworthy baseline is not put on probation)."""
    value = load_object(annotations, BASELINE)
    if value is None:
        return None
    out: dict[str, float | None] = {}
    for key, number in value.items():
        if number is not None and not isinstance(number, int | float):
            return None
        out[str(key)] = None if number is None else float(number)
    return out
