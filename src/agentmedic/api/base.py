"""What every API module shares: the base of the models and the ``{{workload}}`` placeholder.

Kept apart from :mod:`agentmedic.api.types` so that modules defining parts of the spec
(:mod:`agentmedic.api.prompt`) can build on it without importing the spec they are part of.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["WORKLOAD_PLACEHOLDER", "Model", "substitute_workload"]


class Model(BaseModel):
    """Base of every API type: camelCase aliases, docstrings as descriptions, no unknown keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


WORKLOAD_PLACEHOLDER = "{{workload}}"
"""Stands for the workload's name in a ConfigMap's name (``spec.model.configMapKey.name``)."""
_WORKLOAD_PLACEHOLDER = re.compile(r"\{\{\s*workload\s*\}\}")


def substitute_workload(template: str, workload: str) -> str:
    """``template`` with ``{{workload}}`` replaced by the workload's name."""
    return _WORKLOAD_PLACEHOLDER.sub(lambda _: workload, template)
