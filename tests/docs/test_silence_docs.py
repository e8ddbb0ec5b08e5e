"""The AgentSilence manifests the docs show are valid silences, and the CRD admits them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agentmedic.api.silence import AgentSilence

from .markdown import blocks, doc_files

SILENCE_BLOCKS = [
    (b, d)
    for page in doc_files()
    for b in blocks(page)
    if b.lang in ("yaml", "yml")
    for d in yaml.safe_load_all(b.text)
    if isinstance(d, dict) and d.get("kind") == "AgentSilence"
]


def test_the_docs_show_a_silence() -> None:
    assert SILENCE_BLOCKS, "docs/silences.md shows an AgentSilence"


@pytest.mark.parametrize(("block", "document"), SILENCE_BLOCKS, ids=lambda x: str(x)[:60])
def test_every_silence_in_the_docs_validates(block: Any, document: dict[str, Any]) -> None:
    parsed = AgentSilence.model_validate(document)
    assert parsed.spec.reason
    assert parsed.spec.agent or parsed.spec.policy, f"{block}: covers nothing"
