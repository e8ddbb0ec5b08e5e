"""Every policy in the docs is valid, the example files are shown as they are, patches apply."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.api.validation import validate_policy
from agentmedic.docsgen.reference import MINIMAL_POLICY

from .markdown import ROOT, Block, blocks, doc_files, rel

EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))
YAML_BLOCKS = [b for page in doc_files() for b in blocks(page) if b.lang in ("yaml", "yml")]


def _policies(block: Block) -> list[Any]:
    try:
        documents = list(yaml.safe_load_all(block.text))
    except yaml.YAMLError as exc:
        pytest.fail(f"{block}: YAML does not parse: {exc}")
    return [d for d in documents if isinstance(d, dict) and d.get("kind") == "AgentPolicy"]


def test_the_docs_show_policies() -> None:
    assert sum(len(_policies(b)) for b in YAML_BLOCKS) >= 8


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=str)
def test_every_yaml_block_parses_and_every_policy_in_it_validates(block: Block) -> None:
    for policy in _policies(block):
        parsed, problems = validate_policy(policy)
        assert problems == [], f"{block}: " + "; ".join(str(p) for p in problems)
        assert parsed is not None


def _included() -> dict[str, list[Block]]:
    out: dict[str, list[Block]] = {}
    for block in YAML_BLOCKS:
        if block.marker is not None:
            out.setdefault(block.marker, []).append(block)
    return out


@pytest.mark.parametrize("block", [b for b in YAML_BLOCKS if b.marker], ids=str)
def test_an_included_file_is_shown_verbatim(block: Block) -> None:
    assert block.marker is not None
    path = ROOT / block.marker
    assert path.is_file(), f"{block}: {block.marker} does not exist"
    assert block.text == path.read_text(encoding="utf-8"), (
        f"{block} differs from {block.marker}: copy the file into the block again"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_is_in_the_worked_examples(path: Path) -> None:
    shown = [b.marker for b in YAML_BLOCKS if b.page.name == "examples.md" and b.marker is not None]
    assert rel(path) in shown, f"docs/examples.md does not include {rel(path)}"


# ----------------------------------------------------------------- kubectl patch


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _patches() -> list[tuple[str, str, str]]:
    """(where, policy name, merge patch) of every `kubectl patch agentpolicy` in the docs."""
    out = []
    for page in doc_files():
        for block in blocks(page):
            text = block.text.replace("\\\n", " ")
            for line in text.splitlines():
                if "kubectl patch" not in line:
                    continue
                words = shlex.split(line, comments=True)
                i = words.index("patch")
                kind, name = words[i + 1], words[i + 2]
                if kind not in ("agentpolicy", "agentpolicies", "ap"):
                    continue
                assert "--type=merge" in words, f"{block}: use --type=merge patches in the docs"
                out.append((str(block), name, words[words.index("-p") + 1]))
    return out


def _policy_named(name: str) -> dict[str, Any]:
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("metadata", {}).get("name") == name:
                return doc
    policy: dict[str, Any] = yaml.safe_load(MINIMAL_POLICY)
    return policy


def test_the_docs_show_policy_patches() -> None:
    assert len(_patches()) >= 3


@pytest.mark.parametrize(("where", "name", "patch"), _patches(), ids=lambda v: str(v)[:60])
def test_a_documented_patch_leaves_a_valid_policy(where: str, name: str, patch: str) -> None:
    patched = _merge(_policy_named(name), json.loads(patch))
    policy, problems = validate_policy(patched)
    assert problems == [], f"{where}: " + "; ".join(str(p) for p in problems)
    assert policy is not None
