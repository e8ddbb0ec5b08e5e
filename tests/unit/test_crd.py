"""The committed CRD is generated from the models and never edited by hand."""

from __future__ import annotations

from pathlib import Path

from agentmedic.api.crd import render_crd


def test_committed_crd_matches_the_models(repo_root: Path) -> None:
    committed = (repo_root / "crds" / "agentpolicy.yaml").read_text()
    assert committed == render_crd(), (
        "crds/agentpolicy.yaml drifted from src/agentmedic/api: run `make crd` and commit it"
    )


def test_chart_ships_the_same_crd(repo_root: Path) -> None:
    chart_copy = repo_root / "charts" / "agentmedic" / "crds" / "agentpolicy.yaml"
    assert chart_copy.read_text() == render_crd(), "run `make crd` to refresh the chart's copy"
