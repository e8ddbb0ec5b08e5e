"""What every agentmedic resource model is built from: the base :class:`Model`, the names
and bounds all kinds share, and the ``{{workload}}`` placeholder.

It imports no other kind, so each resource's module (:mod:`agentmedic.api.types`,
:mod:`agentmedic.api.refs`, :mod:`agentmedic.api.shared`, :mod:`agentmedic.api.budget`,
:mod:`agentmedic.api.prompt`) can build on it without importing another.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

__all__ = [
    "MAX_COUNT",
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "WORKLOAD_PLACEHOLDER",
    "Model",
    "Name",
    "ShortText",
    "substitute_workload",
]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH = 253
"""Kubernetes object names (DNS subdomains), Secret and ConfigMap keys, model names."""
MAX_COUNT = 1_000_000_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
"""A Kubernetes object name, key or model name."""
ShortText = Annotated[str, StringConstraints(max_length=63)]


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
