"""The engine's view of a workload, and the model read from a ConfigMap once a cycle.

A policy whose ``model.configMapKey`` names a ConfigMap needs one read per ConfigMap and
key, however many agents and policies share it: :class:`ModelReads` is created per cycle
and remembers each (namespace, ConfigMap, key) it has read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from agentmedic.actions import ActionError, ActionExecutor, parse_disabled, parse_downgraded
from agentmedic.actions.probation import parse_probation
from agentmedic.actions.prompt_record import parse_prompt, parse_prompt_job
from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine import AgentInput, DisabledAgent, DowngradedAgent
from agentmedic.engine.inputs import ProbationRecord, PromptJobOutcome
from agentmedic.operator.watch import CachedWorkload

__all__ = ["ModelReads", "RecordCache", "parse_time"]


@dataclass(frozen=True, slots=True)
class _Records:
    """agentmedic's records on one version of a workload, as the engine reads them."""

    disabled: DisabledAgent | None
    downgraded: DowngradedAgent | None
    probation: ProbationRecord | None
    prompt_version: str | None
    prompt_job: PromptJobOutcome | None


class RecordCache:
    """The records of every workload, parsed once per version of it: the watch cache
    replaces a workload's object when it changes, so the same object has the same
    records, and a cycle over 10,000 unchanged agents parses none of their JSON again.
    Entries of workloads no cycle asked for lately are dropped every few cycles."""

    _SWEEP_EVERY = 10

    def __init__(self) -> None:
        self._by: dict[tuple[str, str, str], tuple[CachedWorkload, _Records, int]] = {}
        self._cycle = 0

    def next_cycle(self) -> None:
        """A cycle starts: now and then, forget the workloads the last ones did not read."""
        self._cycle += 1
        if self._cycle % self._SWEEP_EVERY == 0:
            oldest = self._cycle - self._SWEEP_EVERY
            self._by = {k: v for k, v in self._by.items() if v[2] >= oldest}

    def records(self, w: CachedWorkload) -> _Records:
        key = (w.kind, w.namespace, w.name)
        hit = self._by.get(key)
        if hit is not None and hit[0] is w:
            if hit[2] != self._cycle:
                self._by[key] = (w, hit[1], self._cycle)
            return hit[1]
        records = _parse(w)
        self._by[key] = (w, records, self._cycle)
        return records

    def __len__(self) -> int:
        return len(self._by)


def _parse(w: CachedWorkload) -> _Records:
    disabled = parse_disabled(w.annotations)
    downgraded = parse_downgraded(w.annotations)
    prompt = parse_prompt(w.annotations)
    return _Records(
        disabled=None
        if disabled is None
        else DisabledAgent(
            episode=disabled.episode,
            rule=disabled.rule,
            at=parse_time(disabled.at),
            previous_replicas=disabled.replicas,
        ),
        downgraded=None
        if downgraded is None
        else DowngradedAgent(
            episode=downgraded.episode,
            rule=downgraded.rule,
            at=parse_time(downgraded.at),
            previous_model=downgraded.model,
        ),
        probation=parse_probation(w.annotations),
        prompt_version=prompt.version if prompt is not None else None,
        prompt_job=parse_prompt_job(w.annotations),
    )


class ModelReads:
    """One cycle's reads of agents' models; each ConfigMap key is read once. The records
    come from ``records``, which outlives the cycle (a fresh one when not given)."""

    def __init__(self, executor: ActionExecutor, records: RecordCache | None = None) -> None:
        self._executor = executor
        self._read: dict[tuple[str, str, str], str | None] = {}
        self._records = records if records is not None else RecordCache()

    async def model(self, w: CachedWorkload, spec: AgentPolicySpec) -> str | None:
        """The model the workload runs now, as the policy's ``model`` says where to look."""
        if spec.model is None:
            return None
        if spec.model.env is not None:
            return w.env.get((spec.model.env.container, spec.model.env.name))
        ref = spec.model.config_map_key
        if ref is None:
            return None
        where = (w.namespace, ref.config_map_for(w.name), ref.key)
        if where not in self._read:
            try:
                self._read[where] = await asyncio.to_thread(
                    self._executor.current_model,
                    {"metadata": {"namespace": w.namespace, "name": w.name}},
                    spec.model,
                )
            except ActionError:
                self._read[where] = None
        return self._read[where]

    async def engine_workload(self, w: CachedWorkload, spec: AgentPolicySpec) -> AgentInput:
        """The engine's view of a workload: replicas, model, and agentmedic's records."""
        r = self._records.records(w)
        return AgentInput(
            kind=w.kind,
            name=w.name,
            replicas=w.replicas,
            model=await self.model(w, spec),
            managed_by=w.managed_by,
            disabled=r.disabled,
            downgraded=r.downgraded,
            probation=r.probation,
            prompt_version=r.prompt_version,
            prompt_job=r.prompt_job,
        )


def parse_time(text: str) -> datetime:
    """An ISO time from a record; the epoch when unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
