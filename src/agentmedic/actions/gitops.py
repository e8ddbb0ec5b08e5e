"""Which GitOps tool manages a workload, from the marks the tool itself puts on it.

A change agentmedic makes to a workload that Argo CD or Flux manages can be put back by
the tool's next sync (Argo CD's selfHeal, a Flux reconcile). Knowing the manager lets
agentmedic name it when its change is reverted, and ``agentmedic status`` show it.

Detection reads only what the tools write:

- Argo CD, annotation tracking (the default since Argo CD 3.0):
  ``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>``, where
  ``<app>`` is ``<namespace>_<name>`` for an Application outside Argo CD's namespace.
  Certain.
- Argo CD, label tracking (the default before 3.0): ``app.kubernetes.io/instance: <app>``.
  Helm sets the same label to the release's name, so this is reported as likely only,
  and not at all when ``app.kubernetes.io/managed-by: Helm`` says Helm put it there
  without Argo CD's tracking annotation.
- Flux: ``kustomize.toolkit.fluxcd.io/name`` and ``/namespace`` (a Kustomization),
  ``helm.toolkit.fluxcd.io/name`` and ``/namespace`` (a HelmRelease). Certain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ARGOCD_INSTANCE_LABEL",
    "ARGOCD_TRACKING_ANNOTATION",
    "FLUX_HELM_LABELS",
    "FLUX_KUSTOMIZE_LABELS",
    "Manager",
    "detect_manager",
]

ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGOCD_INSTANCE_LABEL = "app.kubernetes.io/instance"
FLUX_KUSTOMIZE_LABELS = (
    "kustomize.toolkit.fluxcd.io/name",
    "kustomize.toolkit.fluxcd.io/namespace",
)
FLUX_HELM_LABELS = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
_MANAGED_BY = "app.kubernetes.io/managed-by"


@dataclass(frozen=True, slots=True)
class Manager:
    """The GitOps tool (and its object) that manages a workload."""

    tool: str
    """``argocd`` or ``flux``."""
    kind: str
    """Application, Kustomization or HelmRelease."""
    name: str
    namespace: str | None = None
    """The object's namespace, when the marks say it."""
    certain: bool = True
    """False for Argo CD's instance label, which Helm sets too."""
    source: str = ""
    """The label or annotation it was read from."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def describe(self) -> str:
        """``Argo CD Application guestbook`` (``… (likely)`` when not certain)."""
        tool = {"argocd": "Argo CD", "flux": "Flux"}.get(self.tool, self.tool)
        text = f"{tool} {self.kind} {self.ref}"
        return text if self.certain else f"{text} (likely, from its {self.source} label)"


def detect_manager(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Manager | None:
    """The workload's manager by the marks Argo CD or Flux put on it, or None."""
    tracking = annotations.get(ARGOCD_TRACKING_ANNOTATION)
    if tracking:
        app = tracking.split(":", 1)[0]
        namespace, sep, name = app.partition("_")
        if not sep:
            namespace, name = "", app
        if name:
            return Manager(
                "argocd", "Application", name, namespace or None, True, ARGOCD_TRACKING_ANNOTATION
            )
    flux = ((FLUX_KUSTOMIZE_LABELS, "Kustomization"), (FLUX_HELM_LABELS, "HelmRelease"))
    for (name_key, ns_key), kind in flux:
        flux_name = labels.get(name_key)
        if flux_name:
            return Manager("flux", kind, flux_name, labels.get(ns_key) or None, True, name_key)
    instance = labels.get(ARGOCD_INSTANCE_LABEL)
    if instance and labels.get(_MANAGED_BY, "").lower() != "helm":
        return Manager("argocd", "Application", instance, None, False, ARGOCD_INSTANCE_LABEL)
    return None
