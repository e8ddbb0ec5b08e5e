"""Backend flags shared by the commands that read metrics (``fleet``, ``backtest``).

They mirror the operator's settings (``agentmedic run``), so one Prometheus, Thanos, Mimir
or VictoriaMetrics setup is described the same way everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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


def backend_config(args: argparse.Namespace) -> Any:
    """The :class:`~agentmedic.metrics.BackendConfig` the flags describe (``--prometheus``)."""
    from agentmedic.metrics import backend_config_from_files

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
