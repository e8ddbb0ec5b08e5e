"""Connection flags shared by the commands: the metrics backend and the cluster.

``--prometheus URL`` and the access flags mirror the operator's settings, so one
Prometheus, Thanos, Mimir or VictoriaMetrics setup is described the same way by ``run``,
``fleet``, ``backtest`` and ``report cost``; ``--kubeconfig``, ``--context`` and
``-n/--namespace`` are kubectl's on every command that talks to the cluster. Old spellings
(``--prometheus-url``) are hidden aliases for one release.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agentmedic.cli._errors import CliError

PROMETHEUS_ENV = "AGENTMEDIC_PROMETHEUS_URL"


def add_prometheus_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    dest: str = "prometheus",
    env_default: bool = True,
    help_suffix: str = "",
) -> None:
    """``--prometheus URL`` (and the hidden alias ``--prometheus-url``) into ``dest``."""
    parser.add_argument(
        "--prometheus",
        dest=dest,
        metavar="URL",
        default=os.environ.get(PROMETHEUS_ENV) if env_default else None,
        help="base URL of the Prometheus-compatible API, with any path prefix "
        f"[{PROMETHEUS_ENV}]{help_suffix}",
    )
    parser.add_argument(
        "--prometheus-url", dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def add_kube_arguments(parser: argparse.ArgumentParser, *, namespace: str | None = None) -> None:
    """kubectl's ``--kubeconfig`` and ``--context`` (and ``-n``/``-A`` when ``namespace``
    says what ``-n`` selects)."""
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    if namespace is not None:
        add_namespace_arguments(parser, namespace)


def add_namespace_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``-n/--namespace NS`` and ``-A/--all-namespaces`` (the default), exclusive."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-n", "--namespace", help=f"only {what} in this namespace")
    group.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help=f"{what} in every namespace (the default)",
    )


def add_backend_arguments(parser: argparse.ArgumentParser, *, timeout: float = 60.0) -> None:
    group = parser.add_argument_group("backend access (as for `agentmedic run`)")
    add_prometheus_argument(group)
    group.add_argument("--bearer-token-file", type=Path, help="file holding a bearer token")
    group.add_argument("--basic-auth-username", help="HTTP basic auth user")
    group.add_argument("--basic-auth-password-file", type=Path, help="file holding its password")
    group.add_argument("--tenant", help="tenant or org id (Mimir, Cortex)")
    group.add_argument("--tenant-header", default="X-Scope-OrgID", help="default: X-Scope-OrgID")
    group.add_argument("--ca-file", type=Path, help="PEM bundle of the backend's CAs")
    group.add_argument("--insecure-skip-verify", action="store_true", help="skip TLS checks")
    group.add_argument(
        "--query-timeout-seconds",
        type=float,
        default=timeout,
        help=f"per query (default: {timeout:g})",
    )


_FLAGS = {
    "url": "--prometheus",
    "bearer_token_file": "--bearer-token-file",
    "basic_auth_username": "--basic-auth-username",
    "basic_auth_password": "--basic-auth-password-file",
    "ca_file": "--ca-file",
    "tenant": "--tenant",
    "tenant_header": "--tenant-header",
    "timeout": "--query-timeout-seconds",
    "deadline": "--query-timeout-seconds",
}
# A token, a password or a CA bundle; anything larger is the wrong file.
_MAX_SECRET_FILE = 1024 * 1024


def check_secret_file(flag: str, path: Path | None) -> None:
    """Refuse, in one line naming the flag and the file (never its content), a secret file
    that is missing, not a regular file, too large, binary or empty."""
    if path is None:
        return
    try:
        if not path.exists():
            raise CliError(f"{flag} {path}: no such file")
        if not path.is_file():
            raise CliError(f"{flag} {path}: not a regular file")
        if path.stat().st_size > _MAX_SECRET_FILE:
            raise CliError(f"{flag} {path}: larger than 1 MiB; is it the right file?")
        data = path.read_bytes()
    except PermissionError:
        raise CliError(f"{flag} {path}: permission denied") from None
    except OSError as exc:
        raise CliError(
            f"{flag} {path}: cannot read ({exc.strerror or type(exc).__name__})"
        ) from None
    if b"\x00" in data:
        raise CliError(f"{flag} {path}: a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{flag} {path}: not UTF-8 text") from None
    if not text.strip():
        raise CliError(f"{flag} {path}: empty")


def backend_config(args: argparse.Namespace) -> Any:
    """The :class:`~agentmedic.metrics.BackendConfig` the flags describe (``--prometheus``).

    Raises :class:`CliError` (exit 2) naming the flag for any problem; the message names
    files and hosts, never a secret or a URL that may embed one.
    """
    from pydantic import ValidationError

    from agentmedic.metrics import backend_config_from_files

    check_secret_file("--bearer-token-file", args.bearer_token_file)
    check_secret_file("--basic-auth-password-file", args.basic_auth_password_file)
    check_secret_file("--ca-file", args.ca_file)
    if not args.query_timeout_seconds > 0 or args.query_timeout_seconds > 3600:
        raise CliError("--query-timeout-seconds must be above 0 and at most 3600")
    try:
        return backend_config_from_files(
            args.prometheus,
            bearer_token_file=args.bearer_token_file,
            basic_auth_username=args.basic_auth_username,
            basic_auth_password_file=args.basic_auth_password_file,
            ca_file=args.ca_file,
            insecure_skip_verify=args.insecure_skip_verify,
            tenant=args.tenant,
            tenant_header=args.tenant_header,
            timeout=args.query_timeout_seconds,
        )
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            flag = _FLAGS.get(field, field or "backend")
            problems.append(f"{flag}: {error['msg'].removeprefix('Value error, ')}")
        raise CliError("; ".join(problems)) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CliError(f"cannot read{where}: {exc.strerror or type(exc).__name__}") from None


def add_metrics_layout_arguments(parser: argparse.ArgumentParser) -> None:
    """``--namespace-label`` and ``--catalog-overrides-file``: how the agents' series are
    labelled and queried, for the commands that read the metric catalog."""
    parser.add_argument(
        "--namespace-label",
        default="namespace",
        help="the metrics label with the agent's namespace; '' when the metrics have none",
    )
    parser.add_argument(
        "--catalog-overrides-file",
        type=Path,
        help="YAML mapping of built-in metric names to PromQL templates (as for `run`)",
    )


def input_problem(exc: Exception) -> str:
    """The one line for a flag value or input file a command refused: each field of a
    pydantic error, an OSError's file and reason (not its bare errno), else the message."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'backend'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or type(exc).__name__}"
    return str(exc.args[0] if exc.args else type(exc).__name__)


T = TypeVar("T")


def query_backend(
    config: Any,
    title: str,
    gather: Callable[..., Awaitable[T]],
    query: Any,
    *,
    progress: bool = True,
) -> T:
    """Open the backend ``config`` describes and await ``gather(backend, query,
    on_progress=...)`` under a progress bar titled ``title``; the backend's
    ``MetricsError`` propagates."""
    from agentmedic.cli._progress import QueryProgress
    from agentmedic.metrics import PrometheusBackend

    async def go() -> T:
        async with PrometheusBackend(config) as backend:
            with QueryProgress(title, enabled=progress) as on_progress:
                return await gather(backend, query, on_progress=on_progress)

    return asyncio.run(go())
