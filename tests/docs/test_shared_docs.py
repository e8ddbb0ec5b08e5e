"""Every NotificationChannel, ClusterNotificationChannel, MetricsBackend and
ClusterMetricsBackend the docs show validates as the operator reads it, and a policy beside
it that names it with channelRef or metricsBackendRef names one that the page defines or
the examples ship."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agentmedic.api.shared import SHARED_MODELS
from agentmedic.api.validation import validate_shared

from .markdown import Block, blocks, doc_files

YAML_BLOCKS = [b for page in doc_files() for b in blocks(page) if b.lang in ("yaml", "yml")]


def _documents(block: Block) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(block.text) if isinstance(d, dict)]


SHARED_BLOCKS = [
    b for b in YAML_BLOCKS if any(d.get("kind") in SHARED_MODELS for d in _documents(b))
]


def test_the_docs_show_every_shared_kind() -> None:
    shown = {d["kind"] for b in SHARED_BLOCKS for d in _documents(b)}
    assert set(SHARED_MODELS) <= shown


@pytest.mark.parametrize("block", SHARED_BLOCKS, ids=str)
def test_every_shared_object_in_the_docs_validates(block: Block) -> None:
    for doc in _documents(block):
        if doc.get("kind") not in SHARED_MODELS:
            continue
        obj, problems = validate_shared(doc)
        assert problems == [], f"{block}: " + "; ".join(str(p) for p in problems)
        assert obj is not None


@pytest.mark.parametrize("block", SHARED_BLOCKS, ids=str)
def test_a_policy_names_what_its_block_defines(block: Block) -> None:
    docs = _documents(block)
    defined = {(d["kind"], d["metadata"]["name"]) for d in docs if d.get("kind") in SHARED_MODELS}
    for doc in docs:
        if doc.get("kind") != "AgentPolicy":
            continue
        spec = doc["spec"]
        refs = [c["channelRef"] for c in spec["notifications"]["channels"] if "channelRef" in c]
        if "metricsBackendRef" in spec:
            refs.append({"kind": "MetricsBackend", **spec["metricsBackendRef"]})
        for ref in refs:
            kind = ref.get("kind") or "NotificationChannel"
            assert (kind, ref["name"]) in defined, f"{block}: {kind} {ref['name']} is not defined"
