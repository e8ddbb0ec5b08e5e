"""``agentmedic status [-n NS]``: policies, their agents' states and what agentmedic changed."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_USAGE, fail

if TYPE_CHECKING:
    from agentmedic.kube import Kube


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show policies, agents' states and remediated workloads",
        description="Show every AgentPolicy (agents by state, spend, readiness, recent actions) "
        "and every workload agentmedic has changed, with the record it keeps on it and the "
        "command that undoes it.",
    )
    p.add_argument("-n", "--namespace", help="one namespace (default: all)")
    p.add_argument("--kubeconfig", help="kubeconfig file")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=run)


def _policies(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    from agentmedic.api.types import GROUP, PLURAL, VERSION

    return kube.list_custom_objects(GROUP, VERSION, PLURAL, namespace or None)


def _remediated(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    from agentmedic.actions import record
    from agentmedic.kube import WORKLOAD_KINDS

    out = []
    for kind in WORKLOAD_KINDS:
        for obj in kube.list_workloads(kind, namespace or None):
            ann = obj["metadata"].get("annotations") or {}
            disabled = record.parse_disabled(ann)
            downgraded = record.parse_downgraded(ann)
            if disabled is None and downgraded is None:
                continue
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            changes = []
            if disabled is not None:
                changes.append(f"scaled to 0 (was {disabled.replicas})")
            if downgraded is not None:
                changes.append(f"model {downgraded.model} → {downgraded.to}")
            out.append(
                {
                    "kind": kind,
                    "namespace": ns,
                    "name": name,
                    "changes": changes,
                    "policy": ann.get(record.POLICY, ""),
                    "rule": ann.get(record.RULE, ""),
                    "reason": ann.get(record.REASON, ""),
                    "at": ann.get(record.ACTED_AT, ""),
                    "policyDeleted": ann.get(record.POLICY_DELETED),
                    "undo": f"agentmedic restore {ns}/{name}"
                    + ("" if kind == "Deployment" else " --kind statefulset"),
                }
            )
    return out


def _ready(policy: dict[str, Any]) -> str:
    for cond in policy.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return f"{cond.get('status')} ({cond.get('reason')})"
    return "Unknown"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from agentmedic.cli._kubeconfig import ConfigurationError, client_configuration
    from agentmedic.kube import Kube, KubeError

    try:
        conf = client_configuration(args.kubeconfig, args.context, in_cluster_first=True)
    except ConfigurationError as exc:
        return fail("status", f"no Kubernetes credentials: {exc}", EXIT_USAGE)
    kube = Kube.from_configuration(conf)
    try:
        policies = _policies(kube, args.namespace)
        workloads = _remediated(kube, args.namespace)
    except KubeError as exc:
        if exc.status:
            return fail(
                "status", f"the API server answered {exc.status} {exc.reason}", EXIT_FINDINGS
            )
        # The host only: the client's text quotes URLs, and a proxy URL may carry a password.
        host = urllib.parse.urlsplit(str(conf.host)).hostname or "the configured server"
        return fail("status", f"cannot reach the cluster at {host} ({exc.reason})", EXIT_FINDINGS)
    finally:
        kube.close()

    if args.output == "json":
        print(json.dumps({"policies": policies, "remediated": workloads}, indent=2, default=str))
        return 0

    console = Console()
    table = Table(title="AgentPolicies")
    for col in (
        "NAMESPACE",
        "NAME",
        "AGENTS",
        "HEALTHY",
        "BREACHING",
        "DISABLED",
        "DOWNGRADED",
        "NO DATA",
        "SPEND",
        "READY",
    ):
        table.add_column(col)
    for p in policies:
        st = p.get("status", {})
        agents = st.get("agents", {})
        spend = st.get("spend")
        spend_text = f"${spend['usd']:.2f} / ${spend['limitUSD']:.0f}" if spend else "-"
        table.add_row(
            p["metadata"]["namespace"],
            p["metadata"]["name"],
            *(
                str(agents.get(k, 0))
                for k in ("total", "healthy", "breaching", "disabled", "downgraded", "noData")
            ),
            spend_text,
            _ready(p),
        )
    console.print(table)
    if workloads:
        changed = Table(title="Workloads agentmedic changed")
        for col in ("WORKLOAD", "CHANGE", "POLICY / RULE", "WHEN", "UNDO"):
            changed.add_column(col)
        for w in workloads:
            policy = w["policy"] + (" (policy deleted)" if w["policyDeleted"] else "")
            changed.add_row(
                f"{w['kind'].lower()}/{w['namespace']}/{w['name']}",
                "; ".join(w["changes"]),
                f"{policy} / {w['rule']}",
                w["at"],
                w["undo"],
            )
        console.print(changed)
    else:
        console.print("No workload is currently changed by agentmedic.")
    for p in policies:
        actions = p.get("status", {}).get("recentActions", [])[:5]
        if actions:
            ref = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            console.print(f"\n[bold]{ref}[/bold] recent actions:")
            for a in actions:
                console.print(
                    f"  {a['time']}  {a['outcome']:<10} {a['action']:<18} {a['agent']}  "
                    f"{a['rule']}: {a['reason']}"
                )
    return 0
