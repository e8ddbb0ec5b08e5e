"""docs/argocd.md and docs/flux.md: the YAML to paste covers what agentmedic changes."""

from __future__ import annotations

from typing import Any

import yaml

from agentmedic.actions.gitops import ARGOCD_TRACKING_ANNOTATION, FLUX_KUSTOMIZE_LABELS
from agentmedic.actions.record import MODEL_TEMPLATE_ANNOTATION
from agentmedic.api.gitops import MAX_REAPPLIES, OnRevert

from .markdown import ROOT, blocks


def _documents(page: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks(ROOT / "docs" / page):
        if block.lang in ("yaml", "yml"):
            out.extend(d for d in yaml.safe_load_all(block.text) if isinstance(d, dict))
    return out


def test_the_argo_cd_application_ignores_and_respects_what_agentmedic_changes() -> None:
    (app,) = [d for d in _documents("argocd.md") if d.get("kind") == "Application"]
    spec = app["spec"]
    assert "RespectIgnoreDifferences=true" in spec["syncPolicy"]["syncOptions"]
    pointers = {p for entry in spec["ignoreDifferences"] for p in entry.get("jsonPointers", [])}
    assert "/spec/replicas" in pointers  # what scale to zero writes (actions/scale.py)
    jq = " ".join(
        e for entry in spec["ignoreDifferences"] for e in entry.get("jqPathExpressions", [])
    )
    assert 'select(.name == "MODEL")' in jq  # switchModel with spec.model.env
    assert MODEL_TEMPLATE_ANNOTATION in jq  # switchModel with a ConfigMap restarts pods so


def test_the_pages_name_the_marks_detection_reads_and_the_policy_option() -> None:
    argocd = (ROOT / "docs" / "argocd.md").read_text()
    flux = (ROOT / "docs" / "flux.md").read_text()
    assert ARGOCD_TRACKING_ANNOTATION in argocd
    assert FLUX_KUSTOMIZE_LABELS[0] in flux
    assert "kustomize.toolkit.fluxcd.io/reconcile: disabled" in flux
    for page in (argocd, flux):
        assert all(mode.value in page for mode in OnRevert)
    assert "at most\n  three times" in argocd or "three times" in argocd
    assert MAX_REAPPLIES == 3, "the pages say three times"
