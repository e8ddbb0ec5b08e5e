"""Kubernetes permissions the operator shell itself needs (kopf, the watch cache, status).

The actions layer lists its own in :mod:`agentmedic.actions.permissions`; the Helm chart's
RBAC is checked against the union of both, and the end-to-end test checks that every
request the operator sends to the API emulator is covered.
"""

from __future__ import annotations

__all__ = ["REQUIRED_PERMISSIONS"]

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
        # leader election (operator/leader.py): read, create once, renew; in the operator's
        # own namespace only (the chart's leader-election Role)
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
)
