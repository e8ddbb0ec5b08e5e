"""The record of a prompt agentmedic rolled out: ``agentmedic.io/prompt`` on the workload.

================================  ========  ==================================================
key (``agentmedic.io/`` + …)      value     meaning
================================  ========  ==================================================
``prompt``                        JSON      A candidate was rolled out. ``configMapKey``:
                                            name and key of the live prompt; ``version``:
                                            the candidate key whose text is live now;
                                            ``previous``: the key holding the text agentmedic
                                            first replaced (restore puts it back);
                                            ``sha256``: of the text rolled out (restore
                                            leaves a prompt someone changed since);
                                            ``job``; who/why/when.
``prompt-job``                    JSON      The last prompt-optimization Job whose outcome
                                            was handled (``job``, ``status``, ``reason``,
                                            ``at``): a Job is reported and acted on once.
                                            One not rolled out also has ``rolledOut``
                                            false, ``episode`` and ``rule``: the engine
                                            tells the rule's channels once.
================================  ========  ==================================================

The pod template carries ``agentmedic.io/prompt-version`` (the key whose text is live) so
that pods restart and read the new prompt, as ``agentmedic.io/model`` does for a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentmedic.actions.errors import CorruptRecordError
from agentmedic.actions.record import PREFIX, load_object
from agentmedic.engine.inputs import PromptJobOutcome

__all__ = [
    "PROMPT",
    "PROMPT_JOB",
    "PROMPT_TEMPLATE_ANNOTATION",
    "PromptRecord",
    "backup_key",
    "handled_job",
    "parse_prompt",
    "parse_prompt_job",
    "read_prompt_record",
    "sha256",
]

PROMPT = PREFIX + "prompt"
PROMPT_JOB = PREFIX + "prompt-job"
PROMPT_TEMPLATE_ANNOTATION = PREFIX + "prompt-version"


@dataclass(frozen=True)
class PromptRecord:
    """The parsed ``agentmedic.io/prompt`` annotation."""

    config_map: str
    key: str
    version: str
    previous: str
    sha256: str
    job: str = ""
    policy: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def backup_key(key: str, candidate_key: str) -> str:
    """Where the live text is kept when ``candidate_key`` replaces it: ``<key>.before-v<N>``."""
    suffix = candidate_key.removeprefix(key + ".")
    return f"{key}.before-{suffix}"


def parse_prompt(annotations: Mapping[str, str]) -> PromptRecord | None:
    """The record, or None when absent or unreadable (the lenient reader)."""
    try:
        return read_prompt_record(annotations)
    except CorruptRecordError:
        return None


def read_prompt_record(annotations: Mapping[str, str]) -> PromptRecord | None:
    """The record, None when absent; :class:`CorruptRecordError` when a restore could not
    trust it (restore writes the text of ``previous`` back)."""
    if PROMPT not in annotations:
        return None
    value = load_object(annotations, PROMPT)
    source = (value or {}).get("configMapKey")
    fields = {k: (value or {}).get(k) for k in ("version", "previous", "sha256")}
    if (
        value is None
        or not isinstance(source, Mapping)
        or not all(isinstance(v, str) and v for v in fields.values())
        or not isinstance(source.get("name"), str)
        or not isinstance(source.get("key"), str)
    ):
        raise CorruptRecordError(
            PROMPT,
            "not a prompt record agentmedic wrote (configMapKey, version, previous, sha256); "
            "remove it by hand after checking the prompt",
        )
    return PromptRecord(
        config_map=str(source["name"]),
        key=str(source["key"]),
        version=str(fields["version"]),
        previous=str(fields["previous"]),
        sha256=str(fields["sha256"]),
        job=str(value.get("job", "")),
        policy=str(value.get("policy", "")),
        raw=value,
    )


def handled_job(annotations: Mapping[str, str]) -> str:
    """The name of the last Job whose outcome was handled on this workload ('' if none)."""
    value = load_object(annotations, PROMPT_JOB) or {}
    return str(value.get("job", ""))


def parse_prompt_job(annotations: Mapping[str, str]) -> PromptJobOutcome | None:
    """The handled Job as the engine reads it when it was not rolled out and a person should
    hear of it; None otherwise (rolled out, left to the Job, a record from before episodes
    were kept, or unreadable)."""
    value = load_object(annotations, PROMPT_JOB)
    if value is None or value.get("rolledOut") is not False or value.get("status") == "Completed":
        return None
    fields = [value.get(k) for k in ("job", "status", "episode", "at")]
    if not all(isinstance(f, str) and f for f in fields):
        return None
    try:
        at = datetime.fromisoformat(str(value["at"]).replace("Z", "+00:00"))
    except ValueError:
        return None
    return PromptJobOutcome(
        job=str(value["job"]),
        status=str(value["status"]),
        reason=str(value.get("reason", "")),
        episode=str(value["episode"]),
        rule=str(value.get("rule", "")),
        at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),
    )
