"""``agentmedic silence add|list|expire``: time-limited "hands off" for an agent, a rule or a
policy, stored as AgentSilence resources (docs/silences.md).

``add`` names the agent as ``agentmedic status`` does (``NAMESPACE/AGENT``) or by its
workload as kubectl does (``deployment/NAME -n NAMESPACE``: the agent's name is read from
the workload's ``agentmedic.io/agent`` label, else its name), or silences a whole policy
with ``--policy``. The author is the user the API server authenticates (a
SelfSubjectReview), as kubectl auth whoami shows it.
"""

from __future__ import annotations

import argparse
import getpass
import re
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from agentmedic.cli._backend import add_kube_arguments, add_namespace_arguments
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, CliError
from agentmedic.cli._output import add_output_argument, console, emit

if TYPE_CHECKING:
    from agentmedic.kube import Kube

T = TypeVar("T")

MIN_FOR = timedelta(minutes=1)

ADD_EPILOG = """\
what to silence (one of them, or an agent and --policy together):
  NAMESPACE/AGENT            the agent as `agentmedic status` names it
  deployment/NAME -n NS      the agent of a workload (also statefulset/, deploy/, sts/)
  --policy NAMESPACE/NAME    every agent of one AgentPolicy (or NAME with -n)
  --rule RULE                only this rule (or budget.soft, budget.hard)

examples:
  agentmedic silence add agents/support-bot --for 2h --reason "INC-42: fixing by hand"
  agentmedic silence add deployment/support-bot -n agents --rule high-error-rate --for 30m \\
      --reason "provider incident"
  agentmedic silence add --policy agents/heal-all --for 1h --reason "migration window"

While a silence holds, agentmedic changes nothing on what it covers (no scale to zero,
model switch, Job or restore) and pages nobody for it; it records each held change as
Suppressed with your name, reason and the end. When it ends, a rule still firing acts on
the next cycle.

exit codes: 0 silenced; 1 the cluster could not be reached or refused (e.g. no right to
create agentsilences: ask for the silence-editor role); 2 usage error (--for outside 1m..7d,
an empty --reason, a bad reference), or a missing or unusable kubeconfig.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "silence",
        help="silence an agent, a rule or a policy for a while (no action, no page)",
        description="Time-limited silences, as amtool's for Alertmanager: while one holds, "
        "agentmedic neither changes nor pages for what it covers.",
    )
    commands = p.add_subparsers(dest="silence", metavar="SUBCOMMAND", title="subcommands")
    p.set_defaults(func=lambda args: _usage(p))
    _register_add(commands)
    _register_list(commands)
    _register_expire(commands)


def _register_add(commands: Any) -> None:
    add = commands.add_parser(
        "add",
        help="silence an agent (or one of its rules), or a whole policy",
        description="Create an AgentSilence that ends by itself after --for.",
        epilog=ADD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument(
        "target",
        nargs="?",
        metavar="AGENT",
        help="NAMESPACE/AGENT, or deployment/NAME (statefulset/NAME) with -n",
    )
    add.add_argument("-n", "--namespace", help="the namespace of the agent or policy")
    add.add_argument(
        "--policy", metavar="POLICY", help="only this AgentPolicy; alone: all its agents"
    )
    add.add_argument("--rule", metavar="RULE", help="only this rule (or budget.soft, budget.hard)")
    add.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="how long, from now: 30m, 2h, 1d (at most 7d)",
    )
    add.add_argument(
        "--reason", required=True, help="why: the incident or ticket, for whoever looks"
    )
    add_kube_arguments(add)
    add_output_argument(add, help_suffix="; json/yaml: the silence as listed")
    add.set_defaults(func=run_add)


def _register_list(commands: Any) -> None:
    ls = commands.add_parser(
        "list",
        help="list silences, active first (expired ones marked)",
        description="List AgentSilences with what they cover, until when, by whom and why.",
        epilog="exit codes: 0 done; 1 the cluster could not be reached or refused; 2 usage "
        "error, or a missing or unusable kubeconfig",
    )
    add_kube_arguments(ls)
    add_namespace_arguments(ls, "silences")
    ls.add_argument("--active", action="store_true", help="leave out expired silences")
    add_output_argument(ls, help_suffix="; wide adds the start and the creation time")
    ls.set_defaults(func=run_list)


def _register_expire(commands: Any) -> None:
    ex = commands.add_parser(
        "expire",
        help="end a silence now (it stays listed, expired)",
        description="Set the silence's end to now; agentmedic acts again from its next cycle.",
        epilog="examples:\n  agentmedic silence expire support-bot-x7k2p -n agents\n\n"
        "exit codes: 0 expired (or already expired); 1 no such silence, or the cluster "
        "could not be reached or refused; 2 usage error, or a missing or unusable kubeconfig",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("ids", nargs="+", metavar="ID", help="the silence's name (silence list: ID)")
    ex.add_argument("-n", "--namespace", help="the silences' namespace (default: the context's)")
    add_kube_arguments(ex)
    ex.set_defaults(func=run_expire)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    raise CliError("name a subcommand: add, list or expire")


# ---------------------------------------------------------------------- parsing


def parse_for(text: str) -> timedelta:
    """``--for``: a duration from 1m to 7d."""
    from agentmedic.api.durations import format_duration, parse_duration
    from agentmedic.api.silence import MAX_SILENCE

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise CliError(f"--for: {exc}") from None
    if not MIN_FOR <= value <= MAX_SILENCE:
        raise CliError(
            f"--for must be from {format_duration(MIN_FOR)} to {format_duration(MAX_SILENCE)} "
            f"(got {text}); for longer, change the policy (selector, dryRun or quietHours)"
        )
    return value


def _split(ref: str, namespace: str | None, flag: str) -> tuple[str | None, str]:
    """``NS/NAME`` or ``NAME`` (with -n) → (namespace or None, name)."""
    first, sep, name = ref.partition("/")
    if not sep:
        return namespace, ref
    if not first or not name or "/" in name:
        raise CliError(f"{flag} {ref!r} is not NAMESPACE/NAME nor NAME; write e.g. agents/heal-all")
    if namespace is not None and namespace != first:
        raise CliError(f"{flag} {ref!r} is in namespace {first!r} but -n says {namespace!r}")
    return first, name


Workload = tuple[str, str]
"""(kind, name) of a workload named as kubectl names it."""


def _spec_target(
    args: argparse.Namespace,
) -> tuple[str | None, str | None, Workload | None, str | None]:
    """(namespace or None for the context's, agent, workload to read the agent from,
    policy); unset parts are None."""
    from agentmedic.cli.restore import KINDS

    namespace: str | None = args.namespace
    policy: str | None = None
    if args.policy is not None:
        namespace, policy = _split(args.policy, namespace, "--policy")
    if args.target is None:
        if policy is None:
            raise CliError("name an agent (NAMESPACE/AGENT or deployment/NAME) or --policy")
        return namespace, None, None, policy
    first, sep, name = args.target.partition("/")
    if not sep or not first or not name or "/" in name:
        raise CliError(
            f"{args.target!r} is not NAMESPACE/AGENT nor KIND/NAME; write e.g. "
            "agents/support-bot or deployment/support-bot -n agents"
        )
    resource = first.lower().removesuffix(".apps")
    if resource in KINDS:
        return namespace, None, (KINDS[resource], name), policy
    if namespace is not None and namespace != first:
        raise CliError(
            f"{args.target!r} is in namespace {first!r} but -n (or --policy) says {namespace!r}"
        )
    return first, name, None, policy


# ---------------------------------------------------------------------- add


def run_add(args: argparse.Namespace) -> int:
    from agentmedic.cli.restore import _context_namespace

    duration = parse_for(args.duration)
    reason = " ".join(str(args.reason).split())
    if not reason:
        raise CliError("--reason is empty; say why (the incident or ticket) for whoever looks")
    if len(reason) > 1024:
        raise CliError("--reason is longer than 1024 characters; link the ticket instead")
    if args.rule is not None and not 1 <= len(args.rule) <= 63:
        raise CliError("--rule must be a rule name of 1 to 63 characters")
    namespace, agent, workload, policy = _spec_target(args)
    if namespace is None:
        namespace = _context_namespace(args.kubeconfig, args.context)
    with _kube(args) as k:
        kube = k.kube
        if workload is not None:
            kind, name = workload
            where = namespace
            agent = k.call(
                f"read {kind} {where}/{name}", lambda: _agent_of(kube, kind, where, name)
            )
        now = datetime.now(UTC).replace(microsecond=0)
        spec: dict[str, Any] = {
            "endsAt": _stamp(now + duration),
            "startsAt": _stamp(now),
            "reason": reason,
            "createdBy": _whoami(kube),
        }
        for key, value in (("agent", agent), ("policy", policy), ("rule", args.rule)):
            if value:
                spec[key] = value
        body = {
            "apiVersion": "agentmedic.io/v1alpha1",
            "kind": "AgentSilence",
            "metadata": {
                "generateName": _name_prefix(agent or policy or "silence"),
                "namespace": namespace,
            },
            "spec": spec,
        }
        created = k.call(
            "create",
            lambda: kube.request(
                f"create agentsilences in {namespace}", "POST", _path(namespace), body=body
            ),
        )
    row = silence_row(created, now)
    if args.output in ("json", "yaml"):
        emit(row, args.output)
    else:
        print(
            f"silenced {row['covers']} in {namespace} until {row['endsAt']} "
            f"(id {row['id']}; undo: agentmedic silence expire {row['id']} -n {namespace})"
        )
    return EXIT_OK


def _agent_of(kube: Kube, kind: str, namespace: str, name: str) -> str:
    from agentmedic.kube import NotFound

    try:
        obj = kube.get_workload(kind, namespace, name)
    except NotFound:
        raise CliError(f"no {kind} {namespace}/{name}", EXIT_FINDINGS) from None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get("agentmedic.io/agent") or name)


def _whoami(kube: Kube) -> str:
    """The user the API server authenticates (SelfSubjectReview); the local user, marked
    unverified, where the server does not offer the review."""
    from agentmedic.kube import KubeError

    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        review = kube.request(
            "review own identity",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body=body,
        )
        name = ((review or {}).get("status") or {}).get("userInfo", {}).get("username")
        if isinstance(name, str) and name:
            return name[:253]
    except KubeError:
        pass
    try:
        local = getpass.getuser()
    except (KeyError, OSError):
        local = "unknown"
    return f"{local} (unverified)"[:253]


# ---------------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:
    from agentmedic.api.silence import SILENCE_PLURAL
    from agentmedic.api.types import GROUP, VERSION

    namespace = None if args.all_namespaces else args.namespace
    with _kube(args) as k:
        items = k.call(
            "list",
            lambda: k.kube.list_custom_objects(GROUP, VERSION, SILENCE_PLURAL, namespace),
        )
    now = datetime.now(UTC)
    rows = [silence_row(obj, now) for obj in items]
    if args.active:
        rows = [r for r in rows if r["state"] != "expired"]
    order = {"active": 0, "pending": 1, "expired": 2}
    rows.sort(key=lambda r: (order[r["state"]], r["endsAt"], r["namespace"], r["id"]))
    if args.output in ("json", "yaml"):
        emit({"silences": rows}, args.output)
        return EXIT_OK
    render(rows, wide=args.output == "wide")
    return EXIT_OK


def silence_row(obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One silence as ``list`` shows it (the json/yaml keys); its state is the operator's
    reading: pending before startsAt, active until endsAt (at most 7d after its start),
    then expired."""
    from agentmedic.api.durations import format_duration
    from agentmedic.api.silence import MAX_SILENCE

    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    created = _parse(meta.get("creationTimestamp"))
    starts = _parse(spec.get("startsAt"))
    ends = _parse(spec.get("endsAt"))
    begin = starts or created
    if ends is not None and begin is not None:
        ends = min(ends, begin + MAX_SILENCE)
    if ends is None or now >= ends:
        state = "expired"
    elif starts is not None and now < starts:
        state = "pending"
    else:
        state = "active"
    left = ""
    if state != "expired" and ends is not None:
        left = format_duration(timedelta(minutes=max(1, round((ends - now).total_seconds() / 60))))
    agent, policy, rule = spec.get("agent"), spec.get("policy"), spec.get("rule")
    covers = [f"agent {agent}" if agent else f"every agent of policy {policy}"]
    if agent and policy:
        covers.append(f"under policy {policy}")
    if rule:
        covers.append(f"rule {rule}")
    return {
        "namespace": str(meta.get("namespace", "")),
        "id": str(meta.get("name", "")),
        "agent": agent,
        "policy": policy,
        "rule": rule,
        "covers": ", ".join(covers),
        "state": state,
        "startsAt": _stamp(starts) if starts else None,
        "endsAt": _stamp(ends) if ends else "",
        "left": left,
        "createdBy": str(spec.get("createdBy") or "unknown"),
        "reason": str(spec.get("reason", "")),
        "created": _stamp(created) if created else None,
    }


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render(rows: list[dict[str, Any]], *, wide: bool) -> None:
    from rich.table import Table

    out = console()
    if not rows:
        out.print("No silences.")
        return
    table = Table(title="Silences")
    columns = ["NAMESPACE", "ID", "COVERS", "STATE", "ENDS", "BY", "REASON"]
    if wide:
        columns += ["STARTS", "CREATED"]
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        cells = [
            r["namespace"],
            r["id"],
            r["covers"],
            r["state"],
            r["endsAt"] + (f" (in {r['left']})" if r["left"] else ""),
            r["createdBy"],
            r["reason"],
        ]
        if wide:
            cells += [r["startsAt"] or "-", r["created"] or "-"]
        table.add_row(*cells)
    out.print(table)


# ---------------------------------------------------------------------- expire


def run_expire(args: argparse.Namespace) -> int:
    from agentmedic.api.silence import SILENCE_PLURAL
    from agentmedic.api.types import GROUP, VERSION
    from agentmedic.cli.restore import _context_namespace
    from agentmedic.kube import NotFound

    namespace = args.namespace or _context_namespace(args.kubeconfig, args.context)
    missing = []
    with _kube(args) as k:
        kube = k.kube
        for name in args.ids:
            now = datetime.now(UTC).replace(microsecond=0)

            def read(name: str = name) -> dict[str, Any] | None:
                try:
                    return kube.get_custom_object(GROUP, VERSION, SILENCE_PLURAL, namespace, name)
                except NotFound:
                    return None

            obj = k.call("read", read)
            if obj is None:
                missing.append(name)
                continue
            row = silence_row(obj, now)
            if row["state"] == "expired":
                print(f"{namespace}/{name} already expired at {row['endsAt']}")
                continue
            patch: dict[str, Any] = {"spec": {"endsAt": _stamp(now)}}
            if row["state"] == "pending":
                patch["spec"]["startsAt"] = _stamp(now)

            def expire(name: str = name, patch: dict[str, Any] = patch) -> Any:
                return kube.request(
                    f"expire agentsilence {namespace}/{name}",
                    "PATCH",
                    f"{_path(namespace)}/{name}",
                    body=patch,
                    content_type="application/merge-patch+json",
                )

            k.call("expire", expire)
            print(
                f"expired {namespace}/{name} ({row['covers']}); "
                "agentmedic acts again from its next cycle"
            )
    if missing:
        raise CliError(
            f"no silence {', '.join(missing)} in {namespace}; "
            "see agentmedic silence list -n " + namespace,
            EXIT_FINDINGS,
        )
    return EXIT_OK


# ---------------------------------------------------------------------- helpers


class _kube:  # noqa: N801 - used as a context manager, like open()
    """The cluster client from --kubeconfig/--context, closed on exit; a missing or
    unusable kubeconfig is a usage error (exit 2)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from agentmedic.cli._kubeconfig import (
            ConfigurationError,
            check_kubeconfig,
            client_configuration,
        )
        from agentmedic.kube import Kube

        check_kubeconfig(args.kubeconfig)
        try:
            self.conf = client_configuration(args.kubeconfig, args.context)
        except ConfigurationError as exc:
            raise CliError(
                f"cannot load the cluster configuration ({exc}); "
                "pass --kubeconfig/--context or set KUBECONFIG"
            ) from None
        self.kube = Kube.from_configuration(self.conf)

    def __enter__(self) -> _kube:
        return self

    def call(self, verb: str, do: Callable[[], T]) -> T:
        """Run one API call; its failure as one line (exit 1), never a traceback."""
        return _call(str(self.conf.host), verb, do)

    def __exit__(self, *exc: object) -> None:
        self.kube.close()


def _call(host: str, verb: str, do: Callable[[], T]) -> T:
    from agentmedic.kube import KubeError, scrub_credentials

    on_silences = verb in ("create", "list", "read", "expire")
    try:
        return do()
    except KubeError as exc:
        if exc.status == 403:
            what = f"{verb} agentsilences" if on_silences else verb
            role = " silence-editor" if verb in ("create", "expire") else " silence-viewer"
            raise CliError(
                f"the API server refused to {what} (403 Forbidden): ask for the"
                f"{role if on_silences else ''} role that allows it (docs/silences.md)",
                EXIT_FINDINGS,
            ) from None
        if exc.status == 404 and on_silences:
            raise CliError(
                "the API server does not serve agentsilences: install agentmedic's CRDs "
                "(crds/agentsilence.yaml)",
                EXIT_FINDINGS,
            ) from None
        if exc.status == 422:
            raise CliError(
                f"the API server refused the silence: {scrub_credentials(str(exc))}",
                EXIT_FINDINGS,
            ) from None
        if exc.status:
            raise CliError(
                f"the API server answered {exc.status} {exc.reason}", EXIT_FINDINGS
            ) from None
        # The host only: the client's text quotes URLs, and a proxy URL may carry a password.
        where = urllib.parse.urlsplit(host).hostname or "the configured server"
        raise CliError(
            f"cannot reach the cluster at {where} ({exc.reason})", EXIT_FINDINGS
        ) from None


def _name_prefix(text: str) -> str:
    """A generateName from an agent's name (a label value may hold _ and capitals)."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")[:40].strip("-.")
    return f"{cleaned or 'silence'}-"


def _path(namespace: str) -> str:
    from agentmedic.api.silence import SILENCE_PLURAL

    return f"/apis/agentmedic.io/v1alpha1/namespaces/{namespace}/{SILENCE_PLURAL}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
