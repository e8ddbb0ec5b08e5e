"""Which GitOps tool manages a workload, read from the marks Argo CD and Flux put on it."""

from __future__ import annotations

from agentmedic.actions.gitops import Manager, detect_manager


def test_argo_cd_tracking_annotation_names_the_application() -> None:
    found = detect_manager(
        {}, {"argocd.argoproj.io/tracking-id": "agents:apps/Deployment:agents/bot"}
    )
    assert found == Manager(
        "argocd", "Application", "agents", None, True, "argocd.argoproj.io/tracking-id"
    )
    assert found.describe() == "Argo CD Application agents"


def test_argo_cd_application_in_any_namespace_carries_its_namespace() -> None:
    found = detect_manager(
        {}, {"argocd.argoproj.io/tracking-id": "team-a_support:apps/Deployment:agents/bot"}
    )
    assert found is not None
    assert (found.namespace, found.name, found.ref) == ("team-a", "support", "team-a/support")


def test_flux_kustomization_and_helmrelease_labels() -> None:
    kustomized = detect_manager(
        {
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        },
        {},
    )
    assert kustomized is not None
    assert kustomized.describe() == "Flux Kustomization flux-system/apps"
    released = detect_manager(
        {"helm.toolkit.fluxcd.io/name": "bots", "helm.toolkit.fluxcd.io/namespace": "agents"}, {}
    )
    assert released is not None
    assert (released.tool, released.kind, released.ref) == ("flux", "HelmRelease", "agents/bots")


def test_the_instance_label_is_only_likely_and_helm_alone_is_not_argo() -> None:
    likely = detect_manager({"app.kubernetes.io/instance": "support"}, {})
    assert likely is not None
    assert not likely.certain
    assert "likely" in likely.describe()
    helm = {"app.kubernetes.io/instance": "support", "app.kubernetes.io/managed-by": "Helm"}
    assert detect_manager(helm, {}) is None


def test_the_annotation_wins_over_labels_and_no_marks_is_none() -> None:
    both = detect_manager(
        {"app.kubernetes.io/instance": "x", "kustomize.toolkit.fluxcd.io/name": "apps"},
        {"argocd.argoproj.io/tracking-id": "support:apps/Deployment:agents/bot"},
    )
    assert both is not None
    assert (both.tool, both.name, both.certain) == ("argocd", "support", True)
    assert detect_manager({"app": "bot"}, {"agentmedic.io/disabled": "{}"}) is None
    assert detect_manager({}, {"argocd.argoproj.io/tracking-id": ""}) is None
