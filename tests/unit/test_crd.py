"""The committed CRDs are generated from the models and never edited by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentmedic.api.crd import CrdKind, all_kinds, crd_kind, render_crd

KINDS = all_kinds()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_the_models(repo_root: Path, kind: CrdKind) -> None:
    committed = (repo_root / "crds" / kind.file).read_text()
    assert committed == render_crd(kind), (
        f"crds/{kind.file} drifted from src/agentmedic/api: run `make crd` and commit it"
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_chart_ships_the_same_crd(repo_root: Path, kind: CrdKind) -> None:
    chart_copy = repo_root / "charts" / "agentmedic" / "crds" / kind.file
    assert chart_copy.read_text() == render_crd(kind), "run `make crd` to refresh the chart's copy"


def test_no_stray_crd_files(repo_root: Path) -> None:
    wanted = {k.file for k in KINDS}
    for folder in (repo_root / "crds", repo_root / "charts" / "agentmedic" / "crds"):
        assert {p.name for p in folder.glob("*.yaml")} == wanted, folder


def test_kinds_are_found_by_kind_plural_or_short_name() -> None:
    assert crd_kind("agentpolicy").kind == "AgentPolicy"
    assert crd_kind("agentpolicies").kind == "AgentPolicy"
    assert crd_kind("ap").kind == "AgentPolicy"
    with pytest.raises(LookupError, match="use one of AgentPolicy"):
        crd_kind("AgentPolcy")


def test_crd_check_names_the_drifted_file(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "agentmedic.cli"]
    assert subprocess.run([*cli, "crd", "--write", str(tmp_path)], check=False).returncode == 0
    assert subprocess.run([*cli, "crd", "--check", str(tmp_path)], check=False).returncode == 0
    (tmp_path / "agentpolicy.yaml").write_text("# edited\n")
    run = subprocess.run(
        [*cli, "crd", "--check", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "agentpolicy.yaml drifted from the models: run 'make crd'" in run.stderr
    unknown = subprocess.run(
        [*cli, "crd", "--kind", "nope"], capture_output=True, text=True, check=False
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("agentmedic crd: --kind: no custom resource kind 'nope'")
