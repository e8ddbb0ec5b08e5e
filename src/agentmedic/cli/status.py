"""``agentmedic status [-n NS]``: policies, their agents' states and what agentmedic changed."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import TYPE_CHECKING, Any

from agentmedic.cli._backend import add_kube_arguments
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_USAGE, fail
from agentmedic.cli._output import add_output_argument, console, emit

if TYPE_CHECKING:
    from rich.console import Console

if TYPE_CHECKING:
    from agentmedic.kube import Kube


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show policies, agents' states and remediated workloads",
        description="Show every AgentPolicy (agents by state, spend, readiness, recent actions), "
        "every workload agentmedic has changed, with the record it keeps on it, the GitOps "
        "tool that manages it and the command that undoes it, and the silences in force. "
        "DISABLED and DOWNGRADED show '-' for a policy none of whose "
        "rules can scale an agent to zero or switch its model.",
        epilog="exit codes: 0 done; 1 the cluster could not be reached or refused; "
        "2 usage error, or a missing or unusable kubeconfig",
    )
    add_kube_arguments(p, namespace="policies and workloads")
    add_output_argument(p, help_suffix="; wide adds interval, rules, dry run and the Ready message")
    p.set_defaults(func=run)


def _policies(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    from agentmedic.api.types import GROUP, PLURAL, VERSION

    return kube.list_custom_objects(GROUP, VERSION, PLURAL, namespace or None)


def _silences(kube: Kube, namespace: str | None) -> list[dict[str, Any]] | str:
    """The silences in force (and pending), as ``silence list`` shows them; or why they
    could not be read (status still shows the rest)."""
    from datetime import UTC, datetime

    from agentmedic.api.silence import SILENCE_PLURAL
    from agentmedic.api.types import GROUP, VERSION
    from agentmedic.cli.silence import silence_row
    from agentmedic.kube import KubeError

    try:
        items = kube.list_custom_objects(GROUP, VERSION, SILENCE_PLURAL, namespace or None)
    except KubeError as exc:
        return f"{exc.status} {exc.reason}" if exc.status else str(exc.reason)
    now = datetime.now(UTC)
    rows = [silence_row(obj, now) for obj in items]
    return sorted(
        (r for r in rows if r["state"] != "expired"),
        key=lambda r: (r["state"], r["endsAt"], r["namespace"], r["id"]),
    )


def _remediated(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    from agentmedic.actions import record
    from agentmedic.actions.gitops import detect_manager
    from agentmedic.actions.prompt_record import parse_prompt
    from agentmedic.kube import WORKLOAD_KINDS

    out = []
    for kind in WORKLOAD_KINDS:
        for obj in kube.list_workloads(kind, namespace or None):
            ann = obj["metadata"].get("annotations") or {}
            disabled = record.parse_disabled(ann)
            downgraded = record.parse_downgraded(ann)
            prompt = parse_prompt(ann)
            if disabled is None and downgraded is None and prompt is None:
                continue
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            manager = detect_manager(obj["metadata"].get("labels") or {}, ann)
            changes = []
            if disabled is not None:
                changes.append(f"scaled to 0 (was {disabled.replicas})")
            if downgraded is not None:
                changes.append(f"model {downgraded.model} → {downgraded.to}")
            if prompt is not None:
                changes.append(f"prompt {prompt.key} → {prompt.version} (was {prompt.previous})")
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
                    "undo": undo_command(kind, ns, name),
                    "managedBy": manager.describe() if manager is not None else None,
                }
            )
    return out


def _ready(policy: dict[str, Any]) -> str:
    for cond in policy.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return f"{cond.get('status')} ({cond.get('reason')})"
    return "Unknown"


def run(args: argparse.Namespace) -> int:

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
        silences = _silences(kube, args.namespace)
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

    if args.output in ("json", "yaml"):
        document: dict[str, Any] = {"policies": policies, "remediated": workloads}
        if isinstance(silences, list):
            document["silences"] = silences
        else:
            document["silencesUnreadable"] = silences
        emit(document, args.output)
        return 0
    out = console()
    render(policies, workloads, out, wide=args.output == "wide")
    render_silences(silences, out)
    return 0


def render_silences(silences: list[dict[str, Any]] | str, out: Console) -> None:
    """Silenced agents and policies, and until when (none: nothing printed)."""
    if isinstance(silences, str):
        out.print(f"\nSilences could not be read ({silences}).", markup=False, highlight=False)
        return
    if not silences:
        return
    from rich.table import Table

    table = Table(title="Silenced (agentmedic neither acts nor pages)")
    for col in ("NAMESPACE", "COVERS", "UNTIL", "BY", "REASON", "ID"):
        table.add_column(col, overflow="fold")
    for s in silences:
        until = s["endsAt"] + (" (pending)" if s["state"] == "pending" else f" (in {s['left']})")
        table.add_row(s["namespace"], s["covers"], until, s["createdBy"], s["reason"], s["id"])
    out.print(table)


def _second(stamp: Any) -> str:
    """An RFC 3339 time to the second, in UTC (``2026-11-03 10:00:00Z``), for the table."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return str(stamp)
    if moment.tzinfo is None:
        return str(stamp)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def undo_command(kind: str, namespace: str, name: str) -> str:
    """The command that restores a workload, in kubectl's reference form."""
    return f"agentmedic restore {kind.lower()}/{name} -n {namespace}"


def _actions_of(policy: dict[str, Any]) -> set[str]:
    """The kinds of action a policy's rules and budget stages can take."""
    spec = policy.get("spec") or {}
    lists = [r.get("actions") or [] for r in spec.get("rules") or [] if isinstance(r, dict)]
    budget = spec.get("budget") or {}
    lists += [(budget.get(stage) or {}).get("actions") or [] for stage in ("soft", "hard")]
    return {key for actions in lists for a in actions if isinstance(a, dict) for key in a}


def policy_row(policy: dict[str, Any], *, wide: bool = False) -> list[str]:
    """The cells of a policy's row; '-' where the policy cannot take that action."""
    st = policy.get("status", {})
    agents = st.get("agents", {})
    spend = st.get("spend")
    spend_text = f"${spend['usd']:.2f} / ${spend['limitUSD']:.0f}" if spend else "-"
    can = _actions_of(policy)
    counts = []
    for key, needs in (
        ("total", None),
        ("healthy", None),
        ("breaching", None),
        ("disabled", "scaleToZero"),
        ("downgraded", "switchModel"),
        ("noData", None),
    ):
        counts.append("-" if needs and needs not in can else str(agents.get(key, 0)))
    row = [
        policy["metadata"]["namespace"],
        policy["metadata"]["name"],
        *counts,
        spend_text,
        _ready(policy),
    ]
    if wide:
        spec = policy.get("spec") or {}
        ready: dict[str, Any] = next(
            (c for c in st.get("conditions", []) if c.get("type") == "Ready"), {}
        )
        row += [
            str(spec.get("interval", "30s")),
            str(len(spec.get("rules") or [])),
            "yes" if (spec.get("guardrails") or {}).get("dryRun") else "no",
            str(ready.get("message", "")),
        ]
    return row


def _grouped(actions: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Actions of one decision (same time, agent, rule and reason) together, in order:
    the evidence is shown once per reason, not once per action."""
    groups: dict[tuple[str, str, str, str], tuple[dict[str, Any], list[str]]] = {}
    for a in actions:
        key = (str(a.get("time")), str(a.get("agent")), str(a.get("rule")), str(a.get("reason")))
        _, what = groups.setdefault(key, (a, []))
        what.append(f"{a.get('action')} {a.get('outcome')}")
    return list(groups.values())


def render(
    policies: list[dict[str, Any]],
    workloads: list[dict[str, Any]],
    out: Console,
    *,
    wide: bool = False,
) -> None:
    """The table view of ``status`` (``-o table`` and ``-o wide``)."""
    from rich.table import Table

    table = Table(title="AgentPolicies")
    columns = [
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
    ]
    if wide:
        columns += ["INTERVAL", "RULES", "DRY RUN", "MESSAGE"]
    for col in columns:
        table.add_column(col, overflow="fold")  # a narrow terminal folds, never cuts
    for p in policies:
        table.add_row(*policy_row(p, wide=wide))
    out.print(table)
    if workloads:
        changed = Table(title="Workloads agentmedic changed")
        cols = ["NAMESPACE", "WORKLOAD", "CHANGE", "POLICY / RULE", "WHEN"]
        managed = any(w.get("managedBy") for w in workloads)
        if managed:
            cols.append("MANAGED BY")
        if wide:
            cols.append("REASON")
        for col in cols:
            changed.add_column(col, overflow="fold")
        for w in workloads:
            policy = w["policy"] + (" (policy deleted)" if w["policyDeleted"] else "")
            cells = [
                w["namespace"],
                f"{w['kind'].lower()}/{w['name']}",
                "; ".join(w["changes"]),
                f"{policy} / {w['rule']}",
                _second(w["at"]),
            ]
            if managed:
                cells.append(w.get("managedBy") or "-")
            if wide:
                cells.append(w["reason"])
            changed.add_row(*cells)
        out.print(changed)
        # Commands are copied whole: one per line, never folded or cut by the table's
        # layout, whatever the width (a terminal wraps a long one softly).
        out.print("Undo with:")
        for w in workloads:
            out.print(f"  {w['undo']}", soft_wrap=True, markup=False, highlight=False)
    else:
        out.print("No workload is currently changed by agentmedic.")
    for p in policies:
        actions = p.get("status", {}).get("recentActions", [])[:5]
        if actions:
            ref = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            out.print(f"\n[bold]{ref}[/bold] recent actions:")
            for a, what in _grouped(actions):
                out.print(
                    f"  {_second(a['time'])}  {a['agent']}  {', '.join(what)}  "
                    f"{a['rule']}: {a['reason']}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
