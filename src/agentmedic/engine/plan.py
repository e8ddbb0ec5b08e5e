"""What a cycle derives from the spec alone: the rules compiled, the budget's actions ranked.

A :class:`CyclePlan` is frozen and depends only on the spec (and on which key objects the
samples use), so a caller that evaluates the same spec many times (a replay) compiles it
once and passes it to every cycle; :func:`~agentmedic.engine.evaluate.evaluate` compiles
one per call, which costs a few microseconds against the cycle's milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from agentmedic.api.types import Action, AgentPolicySpec
from agentmedic.engine.budget import HARD, SOFT
from agentmedic.engine.conditions import CompiledRule, compile_rule, strength
from agentmedic.engine.series import Samples, SeriesKey

__all__ = ["WORKLOAD_KINDS", "CyclePlan", "compile_plan", "sample_keys"]

WORKLOAD_KINDS = ("scaleToZero", "switchModel", "promptOptimization")
"""The actions that change a workload, strongest first."""


@dataclass(frozen=True, slots=True)
class CyclePlan:
    """The spec, compiled for the hot loop of a cycle."""

    spec: AgentPolicySpec
    """The spec this plan was compiled from."""
    rules: tuple[CompiledRule, ...]
    """The rules, in spec order."""
    canon: Mapping[SeriesKey, SeriesKey]
    """Each key of the samples to itself, so lookups of equal keys hit on identity."""
    stage_actions: Mapping[str, tuple[tuple[str, Action], ...]]
    """Per budget stage, its (kind, action) workload actions, strongest first."""
    known_rules: frozenset[str]
    """The rule names (and budget stages) a rule state may belong to."""
    retry_after: timedelta
    """A change not observed on the workload after this long is decided again."""
    longest_window: timedelta
    """The longest window of any condition (a restored agent waits at least this long)."""


def sample_keys(samples: Samples) -> tuple[SeriesKey, ...]:
    """The key objects of the first agent with values (every agent's keys are equal)."""
    for inner in samples.values():
        if inner:
            return tuple(inner)
    return ()


def compile_plan(spec: AgentPolicySpec, canon: tuple[SeriesKey, ...] = ()) -> CyclePlan:
    """The spec's plan, with the rules' series keys resolved to ``canon`` (the very key
    objects the samples use, so that lookups hit on identity; equal keys that are other
    objects find the same values, only without the shortcut)."""
    index = {k: k for k in canon}
    stage_actions: dict[str, tuple[tuple[str, Action], ...]] = {SOFT: (), HARD: ()}
    if spec.budget is not None:
        for stage, limit in ((SOFT, spec.budget.soft), (HARD, spec.budget.hard)):
            if limit is not None:
                acts = [(x.kind, x) for x in limit.actions if x.kind in WORKLOAD_KINDS]
                acts.sort(key=lambda ka: -strength(ka[0]))
                stage_actions[stage] = tuple(acts)
    return CyclePlan(
        spec=spec,
        rules=tuple(compile_rule(r, spec.agent_label, index) for r in spec.rules),
        canon=MappingProxyType(index),
        stage_actions=MappingProxyType(stage_actions),
        known_rules=frozenset(
            [r.name for r in spec.rules] + ([SOFT, HARD] if spec.budget is not None else [])
        ),
        retry_after=max(2 * spec.interval, timedelta(seconds=1)),
        longest_window=max(
            (c.window for r in spec.rules for c in (*r.all_of, *r.any_of)), default=timedelta(0)
        ),
    )
