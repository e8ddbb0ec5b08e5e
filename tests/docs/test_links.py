"""Every relative link in the docs points at a file that exists (and an anchor that does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .markdown import ROOT, anchors, doc_files, links, rel, slug

PAGES = doc_files()


def test_the_documentation_pages_exist() -> None:
    names = {rel(p) for p in PAGES}
    for page in (
        "CONTRIBUTING.md",
        "docs/policy-reference.md",
        "docs/configuration.md",
        "docs/examples.md",
        "docs/architecture.md",
        "docs/runbooks/agent-disabled.md",
        "docs/runbooks/metrics-unavailable.md",
        "docs/runbooks/budget-hit.md",
        "docs/runbooks/operator-down.md",
    ):
        assert page in names


def test_slugs_follow_github() -> None:
    assert slug("Admission rules (CEL)") == "admission-rules-cel"
    assert slug("2. Read the record on the workload") == "2-read-the-record-on-the-workload"
    assert slug("`spec.rules[]`") == "specrules"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for line, target in links(page):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{rel(page)}:{line}: {target} (no such file)")
            continue
        if not dest.is_relative_to(ROOT):
            broken.append(f"{rel(page)}:{line}: {target} (outside the repository)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{rel(page)}:{line}: {target} (no such anchor in {rel(dest)})")
    assert not broken, "\n".join(broken)
