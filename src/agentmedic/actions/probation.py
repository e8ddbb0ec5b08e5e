"""The probation record: ``agentmedic.io/probation`` on a workload whose change is watched.

Any change meant to keep an agent serving — a model switch, a new prompt version — is put
on probation (``spec.verify``) by writing this record **with the change**, in the same
guarded patch: the change kind, its episode, when, the previous and the new value, the rule
or budget stage behind it, and the baseline (the agent's signals over
``verify.baselineWindow`` before the change). The engine reads it back through
:func:`parse_probation` and judges the change once ``verify.window`` has passed.

For a change that already has a patch of its own (a model switch), add
:func:`probation_annotations` to it. For one that has not (a prompt rollout that writes a
ConfigMap), :func:`write_probation` writes the record alone, guarded like every other
workload write::

    write_probation(ctx, ref, ProbationChange("prompt", record, "v3", "v4"))

A restore removes the record with the change it undoes, except after a regression: the
revert first marks it with ``revertedAt`` (:func:`mark_reverted`) and the record stays, so
that the rejection of the new value survives any restart until the next change replaces
the record. Nothing secret goes in it: the values are model names or prompt versions, the
baseline numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agentmedic.actions.context import ActionContext
from agentmedic.actions.objects import Patch, annotation_ops, annotations_of
from agentmedic.actions.record import (
    PROBATION,
    ActionRecord,
    WorkloadRef,
    canonical_json,
    format_time,
    load_object,
)
from agentmedic.api.verify import SIGNALS
from agentmedic.engine.inputs import ProbationRecord
from agentmedic.engine.stages.peers import FLEET_KEYS

__all__ = [
    "PROBATION",
    "ProbationChange",
    "mark_reverted",
    "parse_probation",
    "probation_annotations",
    "probation_value",
    "write_probation",
]

ChangeKind = Literal["switchModel", "prompt"]
_BASELINE_KEYS = (*(s.value for s in SIGNALS), "executions", *FLEET_KEYS)
"""The agent's signals, and its peers' medians (engine/stages/peers.py)."""
MAX_VALUE = 253
"""A recorded value is a model name or a prompt version: short."""


@dataclass(frozen=True)
class ProbationChange:
    """One change to put on probation."""

    kind: ChangeKind
    """switchModel or prompt."""
    record: ActionRecord
    """Who, why, when; ``record.baseline`` is the baseline (the engine's decision carries it
    for a switch; a prompt rollout passes the baseline the engine gave it)."""
    previous: str
    """The value before the change (the model, the prompt version)."""
    new: str
    """The value the change sets."""


def probation_value(change: ProbationChange) -> dict[str, Any]:
    """The JSON object of the record."""
    if change.kind not in ("switchModel", "prompt"):
        raise ValueError(f"probation kind must be switchModel or prompt, not {change.kind!r}")
    for name, value in (("previous", change.previous), ("new", change.new)):
        if not value or len(value) > MAX_VALUE:
            raise ValueError(f"probation {name} must be 1 to {MAX_VALUE} characters")
    baseline = change.record.baseline or {}
    return {
        "kind": change.kind,
        "previous": change.previous,
        "new": change.new,
        "baseline": _baseline(baseline),
        **change.record.who_why_when(),
    }


def probation_annotations(change: ProbationChange) -> dict[str, str]:
    """``{agentmedic.io/probation: <json>}``, to add to the change's own patch."""
    return {PROBATION: canonical_json(probation_value(change))}


def write_probation(ctx: ActionContext, ref: WorkloadRef, change: ProbationChange) -> None:
    """Write the record alone, as one guarded patch (a concurrent edit is re-read and
    retried, never overwritten). A dry run writes nothing. Raises the actions layer's
    errors (NotFound, Forbidden, Conflict) as every workload write does."""
    if change.record.dry_run:
        return
    value = canonical_json(probation_value(change))

    def decide(obj: dict[str, Any]) -> Patch:
        if annotations_of(obj).get(PROBATION) == value:
            return []
        return annotation_ops(obj, {PROBATION: value})

    ctx.guarded(ref, decide)


def mark_reverted(ctx: ActionContext, ref: WorkloadRef, episode: str, at: datetime) -> None:
    """Mark the record of ``episode`` as reverted at ``at`` (guarded; a record of another
    episode, or one marked already, is left alone)."""

    def decide(obj: dict[str, Any]) -> Patch:
        value = load_object(annotations_of(obj), PROBATION)
        if value is None or value.get("episode") != episode or "revertedAt" in value:
            return []
        marked = {**value, "revertedAt": format_time(at)}
        return annotation_ops(obj, {PROBATION: canonical_json(marked)})

    ctx.guarded(ref, decide)


def parse_probation(annotations: Mapping[str, str]) -> ProbationRecord | None:
    """The record as the engine reads it; None when absent or unreadable (a hand-edited
    value: no probation, rather than a verdict on numbers nobody can vouch for)."""
    value = load_object(annotations, PROBATION)
    if value is None:
        return None
    kind, previous, new = value.get("kind"), value.get("previous"), value.get("new")
    episode, at = value.get("episode"), _time(value.get("at"))
    if kind not in ("switchModel", "prompt") or at is None:
        return None
    if not all(isinstance(x, str) and x for x in (previous, new, episode)):
        return None
    raw = value.get("baseline")
    baseline = raw if isinstance(raw, dict) else {}
    return ProbationRecord(
        kind=str(kind),
        episode=str(episode),
        rule=str(value.get("rule", "")),
        at=at,
        previous=str(previous),
        new=str(new),
        baseline=_baseline(baseline),
        reverted_at=_time(value.get("revertedAt")),
    )


def _baseline(given: Mapping[str, Any]) -> dict[str, float | None]:
    """Every signal of the agent (None: no data), and the peers' figures it has."""
    return {
        k: n
        for k in _BASELINE_KEYS
        if (n := _number(given.get(k))) is not None or k not in FLEET_KEYS
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
