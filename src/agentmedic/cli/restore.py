"""``agentmedic restore deployment/NAME -n NAMESPACE``: put back what agentmedic changed.

Reads the ``agentmedic.io/*`` record on the workload, restores the replica count, the
model and any KEDA pause it lists, clears the record (keeping an
``agentmedic.io/last-restore`` note) and prints what it put back. With ``--dry-run`` it
only reads and prints.
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any, Literal

from agentmedic.cli._backend import add_kube_arguments
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, CliError, fail, line
from agentmedic.cli._output import emit

DEFAULT_MAX_REPLICAS = 1000
"""A person restoring by hand rarely means more; --max-replicas raises it."""

EPILOG = """\
workloads are named as kubectl names them: deployment/NAME, statefulset/NAME (also
deploy/, sts/, deployment.apps/ ...) with -n NAMESPACE (default: the context's namespace),
or NAMESPACE/NAME for a Deployment, as `agentmedic status` prints them.

examples:
  agentmedic restore deployment/support-bot -n agents
  agentmedic restore statefulset/indexer -n agents --dry-run
  agentmedic restore deployment/support-bot -n agents --context prod --kubeconfig ~/.kube/prod
  agentmedic restore deployment/support-bot -n agents -o json

The same restore happens when the workload is annotated agentmedic.io/restore=true:
  kubectl annotate deployment/support-bot -n agents agentmedic.io/restore=true

exit codes: 0 restored (or nothing to restore); 1 the workload or the cluster could not
be reached, the API refused the change, or the record is corrupt or implausible (a restore
never writes such values back); 2 usage error, or a missing or unusable kubeconfig.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "restore",
        help="restore an agent that agentmedic scaled down or downgraded",
        description="Put back the replica count, model and KEDA pause recorded in the "
        "workload's agentmedic.io/* annotations, clear the record and print what was put "
        "back. Values changed by someone since agentmedic acted are left as they are.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        metavar="KIND/NAME",
        help="the agent's workload: deployment/NAME or statefulset/NAME (with -n), or "
        "NAMESPACE/NAME of a Deployment",
    )
    p.add_argument("-n", "--namespace", help="the workload's namespace")
    # The old way to name a StatefulSet (NAMESPACE/NAME --kind statefulset), for one release.
    p.add_argument(
        "--kind", choices=["deployment", "statefulset"], default=None, help=argparse.SUPPRESS
    )
    add_kube_arguments(p)
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be restored; change nothing"
    )
    p.add_argument(
        "--max-replicas",
        type=int,
        default=DEFAULT_MAX_REPLICAS,
        metavar="N",
        help="refuse a record asking for more replicas than this, as implausible "
        f"(default: {DEFAULT_MAX_REPLICAS})",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml"],
        default="table",
        metavar="FORMAT",
        help="table|wide|json|yaml (default: table, one line; json/yaml: workload, outcome "
        "and message)",
    )
    p.set_defaults(func=run)


Kind = Literal["Deployment", "StatefulSet"]

KINDS: dict[str, Kind] = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
}


def parse_target(
    target: str, namespace: str | None, kind: str | None
) -> tuple[Kind, str | None, str]:
    """(kind, namespace or None for the context's, name) of a kubectl-style reference.

    ``deployment/x`` (any of kubectl's spellings of Deployment and StatefulSet, with an
    optional ``.apps``) takes its namespace from ``-n``; ``ns/x`` is a Deployment (or the
    legacy ``--kind``) in ``ns``, the form ``agentmedic status`` printed before.
    """
    first, sep, name = target.partition("/")
    if not sep or not first or not name or "/" in name:
        raise CliError(
            f"{target!r} is not NAMESPACE/NAME nor KIND/NAME; write e.g. "
            "deployment/support-bot -n agents or agents/support-bot"
        )
    resource = first.lower().removesuffix(".apps")
    if resource in KINDS:
        found = KINDS[resource]
        if kind is not None and KINDS[kind] != found:
            raise CliError(f"{target!r} names a {found}; drop --kind {kind}")
        return found, namespace, name
    if namespace is not None and namespace != first:
        raise CliError(
            f"{target!r} is in namespace {first!r} but -n says {namespace!r}; "
            "give one of them, or write deployment/NAME -n NAMESPACE"
        )
    return KINDS[kind or "deployment"], first, name


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's (current) context, or ``default``, as kubectl."""
    from agentmedic.api.yamlfile import YAMLInputError, load_file

    explicit = kubeconfig or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
    path = explicit or os.path.expanduser("~/.kube/config")
    try:
        config = load_file(path) if os.path.exists(path) else None
    except YAMLInputError:
        config = None
    if not isinstance(config, dict):
        return "default"
    wanted = context or config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == wanted:
            ctx = entry.get("context")
            if isinstance(ctx, dict) and isinstance(ctx.get("namespace"), str):
                return str(ctx["namespace"])
    return "default"


def run(args: argparse.Namespace) -> int:
    from agentmedic.actions import ActionError, ActionExecutor, ExecutionOutcome, WorkloadRef
    from agentmedic.actions.record import MAX_REPLICAS
    from agentmedic.cli._kubeconfig import (
        ConfigurationError,
        check_kubeconfig,
        client_configuration,
    )
    from agentmedic.kube import Kube

    kind, namespace, name = parse_target(args.target, args.namespace, args.kind)
    if not 0 <= args.max_replicas <= MAX_REPLICAS:
        return fail("restore", f"--max-replicas must be between 0 and {MAX_REPLICAS}", EXIT_USAGE)
    check_kubeconfig(args.kubeconfig)
    if namespace is None:
        namespace = _context_namespace(args.kubeconfig, args.context)
    ref = WorkloadRef(kind, namespace, name)
    try:
        configuration = client_configuration(args.kubeconfig, args.context)
    except ConfigurationError as exc:
        return fail(
            "restore",
            f"cannot load the cluster configuration ({line(str(exc))}); "
            "pass --kubeconfig/--context or set KUBECONFIG",
            EXIT_USAGE,
        )
    kube = Kube.from_configuration(configuration)
    executor = ActionExecutor(kube, max_restore_replicas=args.max_replicas)
    try:
        if args.dry_run:
            plan = executor.plan_restore(ref)
            if not plan.recorded:
                message, outcome = f"nothing to restore: {ref} carries no agentmedic record", ""
            else:
                message, outcome = f"would restore {ref}: {plan.describe()}", "DryRun"
            return _print(args, ref, outcome or "Unchanged", message)
        result = executor.restore(ref, by=f"cli:{_user()}")
    except ActionError as exc:
        return fail("restore", exc.message, EXIT_FINDINGS)
    finally:
        kube.close()
    if result.outcome in (
        ExecutionOutcome.NOT_FOUND,
        ExecutionOutcome.FAILED,
        ExecutionOutcome.REFUSED,
    ):
        return fail("restore", result.message, EXIT_FINDINGS)
    return _print(args, ref, str(result.outcome.value), result.message)


def _print(args: argparse.Namespace, ref: Any, outcome: str, message: str) -> int:
    if args.output in ("json", "yaml"):
        workload = {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name}
        emit(
            {
                "workload": workload,
                "dryRun": bool(args.dry_run),
                "outcome": outcome,
                "message": message,
            },
            args.output,
        )
    else:
        print(message)
    return EXIT_OK


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
