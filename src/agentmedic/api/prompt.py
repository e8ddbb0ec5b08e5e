"""Where an agent's live prompt lives: ``spec.prompt`` of an AgentPolicy.

A prompt-optimization Job writes its candidate as a new versioned key of this ConfigMap
(``<key>.v<N>``); when it succeeds, agentmedic rolls it out by writing the candidate into
the live key the agent reads, recording the text it replaced so that ``agentmedic restore``
puts it back (see docs/prompt-optimization.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from agentmedic.api.base import Model, substitute_workload

__all__ = [
    "RESULT_ANNOTATION",
    "VERSIONS_ANNOTATION",
    "OptimizationStatus",
    "PromptKeyRef",
    "PromptOptimizationResult",
    "PromptSpec",
]

_Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class PromptKeyRef(Model):
    name: _Name
    """The ConfigMap, in the agent's namespace. `{{workload}}` in the name stands for the
    workload's name (`{{workload}}-prompt`): one ConfigMap per agent."""
    key: _Name
    """The key holding the prompt the agent reads (its live prompt)."""

    def config_map_for(self, workload: str) -> str:
        """The ConfigMap of the workload named ``workload``."""
        return substitute_workload(self.name, workload)


class PromptSpec(Model):
    config_map_key: PromptKeyRef
    """The ConfigMap key holding the agent's live prompt. A prompt-optimization Job reads it
    and writes its candidate beside it as `<key>.v<N>`; agentmedic rolls a successful
    candidate out by writing it into this key, and records the text it replaced so that a
    restore puts it back."""


# --------------------------------------------------------------------------- the Job's result

RESULT_ANNOTATION = "agentmedic.io/prompt-optimization"
"""On the prompt's ConfigMap: the last prompt-optimization result (JSON, see
:class:`PromptOptimizationResult`)."""
VERSIONS_ANNOTATION = "agentmedic.io/prompt-versions"
"""On the prompt's ConfigMap: each candidate key written, with the key it was made from
(JSON: ``{"<key>.v2": {"previousKey": "<key>", "job": …, "at": …}}``)."""


class OptimizationStatus(StrEnum):
    SUCCEEDED = "Succeeded"
    """A candidate passed every check and was written as ``candidateKey``."""
    REJECTED = "Rejected"
    """The model answered, but the answer failed a check; nothing was written but the result."""
    FAILED = "Failed"
    """No answer (timeouts, rate limits, a refused request) or no access to the ConfigMap."""


class PromptOptimizationResult(Model):
    """What a prompt-optimization Job reports: written as JSON to its termination message and
    to the annotation agentmedic.io/prompt-optimization of the prompt's ConfigMap."""

    status: OptimizationStatus
    candidate_key: str | None = None
    """The key the candidate was written to (`<key>.v<N>`); set when Succeeded."""
    previous_key: str | None = None
    """The key the prompt was read from (the live key)."""
    length_before: int | None = Field(default=None, ge=0)
    """Characters of the prompt read."""
    length_after: int | None = Field(default=None, ge=0)
    """Characters of the candidate (also when Rejected)."""
    reason: str = ""
    """Why, in one line."""
    job: str = ""
    """The Job that wrote it (its name), so that agentmedic matches a result to its Job."""

    model_config = ConfigDict(extra="ignore")  # a newer Job may add fields

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)
