"""``agentmedic restore NAMESPACE/NAME``: put back what agentmedic changed on an agent.

Reads the ``agentmedic.io/*`` record on the workload, restores the replica count, the
model and any KEDA pause it lists, clears the record (keeping an
``agentmedic.io/last-restore`` note) and prints what it put back. With ``--dry-run`` it
only reads and prints.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, fail, line

DEFAULT_MAX_REPLICAS = 1000
"""A person restoring by hand rarely means more; --max-replicas raises it."""

EPILOG = """\
examples:
  agentmedic restore agents/support-bot
  agentmedic restore agents/indexer --kind statefulset --dry-run
  agentmedic restore agents/support-bot --context prod --kubeconfig ~/.kube/prod

The same restore happens when the workload is annotated agentmedic.io/restore=true:
  kubectl annotate deployment/support-bot -n agents agentmedic.io/restore=true

exit status: 0 restored (or nothing to restore); 1 the workload or the cluster could not
be reached, the API refused the change, or the record is corrupt or implausible (a restore
never writes such values back); 2 usage error or an unusable kubeconfig.
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
    p.add_argument("target", metavar="NAMESPACE/NAME", help="the agent's workload")
    p.add_argument(
        "--kind",
        choices=["deployment", "statefulset"],
        default="deployment",
        help="the workload's kind (default: deployment)",
    )
    p.add_argument("--kubeconfig", help="path to a kubeconfig (default: $KUBECONFIG or ~/.kube)")
    p.add_argument("--context", help="the kubeconfig context to use (default: current)")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agentmedic.actions import ActionError, ActionExecutor, Outcome, WorkloadRef
    from agentmedic.actions.record import MAX_REPLICAS
    from agentmedic.cli._kubeconfig import ConfigurationError, client_configuration
    from agentmedic.kube import Kube

    namespace, sep, name = args.target.partition("/")
    if not sep or not namespace or not name or "/" in name:
        return fail(
            "restore", f"{args.target!r} is not NAMESPACE/NAME, e.g. agents/support-bot", EXIT_USAGE
        )
    if not 0 <= args.max_replicas <= MAX_REPLICAS:
        return fail("restore", f"--max-replicas must be between 0 and {MAX_REPLICAS}", EXIT_USAGE)
    ref = WorkloadRef(
        "StatefulSet" if args.kind == "statefulset" else "Deployment", namespace, name
    )
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
                print(f"nothing to restore: {ref} carries no agentmedic record")
            else:
                print(f"would restore {ref}: {plan.describe()}")
            return EXIT_OK
        result = executor.restore(ref, by=f"cli:{_user()}")
    except ActionError as exc:
        return fail("restore", exc.message, EXIT_FINDINGS)
    finally:
        kube.close()
    if result.outcome in (Outcome.NOT_FOUND, Outcome.FAILED, Outcome.REFUSED):
        return fail("restore", result.message, EXIT_FINDINGS)
    print(result.message)
    return EXIT_OK


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
