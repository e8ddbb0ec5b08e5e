"""The engine's view of a workload, and the model read from a ConfigMap once a cycle.

A policy whose ``model.configMapKey`` names a ConfigMap needs one read per ConfigMap and
key, however many agents and policies share it: :class:`ModelReads` is created per cycle
and remembers each (namespace, ConfigMap, key) it has read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agentmedic.actions import ActionError, ActionExecutor, parse_disabled, parse_downgraded
from agentmedic.actions.probation import parse_probation
from agentmedic.actions.prompt_record import parse_prompt, parse_prompt_job
from agentmedic.api.types import AgentPolicySpec
from agentmedic.engine import AgentInput, DisabledAgent, DowngradedAgent
from agentmedic.operator.watch import CachedWorkload

__all__ = ["ModelReads", "parse_time"]


class ModelReads:
    """One cycle's reads of agents' models; each ConfigMap key is read once."""

    def __init__(self, executor: ActionExecutor) -> None:
        self._executor = executor
        self._read: dict[tuple[str, str, str], str | None] = {}

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
        disabled = parse_disabled(w.annotations)
        downgraded = parse_downgraded(w.annotations)
        prompt = parse_prompt(w.annotations)
        return AgentInput(
            kind=w.kind,
            name=w.name,
            replicas=w.replicas,
            model=await self.model(w, spec),
            managed_by=w.managed_by,
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


def parse_time(text: str) -> datetime:
    """An ISO time from a record; the epoch when unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
