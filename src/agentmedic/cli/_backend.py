"""Backend flags shared by the commands that read metrics (``fleet``, ``backtest``).

They mirror the operator's settings (``agentmedic run``), so one Prometheus, Thanos, Mimir
or VictoriaMetrics setup is described the same way everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agentmedic.cli._errors import CliError


def add_backend_arguments(parser: argparse.ArgumentParser, *, timeout: float = 60.0) -> None:
    group = parser.add_argument_group("backend access (as for `agentmedic run`)")
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
