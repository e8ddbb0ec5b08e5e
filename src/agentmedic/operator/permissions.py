"""Kubernetes permissions the operator shell itself needs (kopf, the watch cache, status).

The actions layer lists its own in :mod:`agentmedic.actions.permissions`; the Helm chart's
RBAC is checked against the union of both, and the end-to-end test checks that every
request the operator sends to the API emulator is covered.
"""

from __future__ import annotations

from agentmedic.api.budget import OPERATOR_PERMISSIONS as FINANCE_PERMISSIONS

__all__ = ["CLUSTER_SCOPED", "REQUIRED_PERMISSIONS"]

# (api group, resource, verb); "" is the core group.
REQUIRED_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        # kopf: watch policies, keep its finalizer/progress annotations, write status.
        ("agentmedic.io", "agentpolicies", "get"),
        ("agentmedic.io", "agentpolicies", "list"),
        ("agentmedic.io", "agentpolicies", "watch"),
        ("agentmedic.io", "agentpolicies", "patch"),
        ("agentmedic.io", "agentpolicies/status", "patch"),
        # the label-selected workload cache (operator/watch.py)
        ("apps", "deployments", "list"),
        ("apps", "deployments", "watch"),
        ("apps", "statefulsets", "list"),
        ("apps", "statefulsets", "watch"),
        # the AgentSilences of the policies' namespaces, read only (operator/silences.py)
        ("agentmedic.io", "agentsilences", "list"),
        ("agentmedic.io", "agentsilences", "watch"),
        # kopf posts its own Events; the operator posts Events on policies
        ("", "events", "create"),
        # --- shared channels and metrics backends (operator/shared_cache.py): listed and
        # watched once some policy refers to them; the cluster-scoped kinds only in a
        # cluster-wide install (CLUSTER_SCOPED below).
        ("agentmedic.io", "notificationchannels", "list"),
        ("agentmedic.io", "notificationchannels", "watch"),
        ("agentmedic.io", "metricsbackends", "list"),
        ("agentmedic.io", "metricsbackends", "watch"),
        ("agentmedic.io", "clusternotificationchannels", "list"),
        ("agentmedic.io", "clusternotificationchannels", "watch"),
        ("agentmedic.io", "clustermetricsbackends", "list"),
        ("agentmedic.io", "clustermetricsbackends", "watch"),
        # their Ready condition (operator/shared_status.py)
        ("agentmedic.io", "notificationchannels/status", "patch"),
        ("agentmedic.io", "metricsbackends/status", "patch"),
        ("agentmedic.io", "clusternotificationchannels/status", "patch"),
        ("agentmedic.io", "clustermetricsbackends/status", "patch"),
        # --- end of shared channels and metrics backends
        # leader election (operator/leader.py): read, create once, renew; in the operator's
        # own namespace only (the chart's leader-election Role)
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
    # finance's kinds (operator/budget_cycle.py): read them, write their status
    | FINANCE_PERMISSIONS
    # Namespaces' labels, for a ClusterAgentBudget's namespaceSelector (cluster-wide installs)
    | {("", "namespaces", "list"), ("", "namespaces", "watch")}
)

CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    {
        ("agentmedic.io", "clusternotificationchannels"),
        ("agentmedic.io", "clustermetricsbackends"),
        ("agentmedic.io", "clusternotificationchannels/status"),
        ("agentmedic.io", "clustermetricsbackends/status"),
    }
)
"""(api group, resource) of the cluster-scoped kinds above: granted by the cluster-wide
install's ClusterRole only; an operator watching namespaces (Roles) does not read them."""
