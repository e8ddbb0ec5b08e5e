"""The ``agentmedic`` command.

Each subcommand lives in its own module under :mod:`agentmedic.cli` with a
``register(subparsers)`` function; modules are imported only to build the parser, so
``agentmedic --help`` stays fast and a subcommand's heavy imports happen in its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agentmedic import __version__

# Subcommands in the order --help lists them.
COMMANDS = ["demo", "run", "status", "restore", "validate", "crd", "fleet", "backtest", "docs"]

DESCRIPTION = """\
agentmedic heals and budgets AI agents on Kubernetes. AgentPolicy resources say
which agents to watch, which rules over their metrics matter, and what to do when a
rule holds: scale to zero, switch to a cheaper model, start a prompt-optimization
Job, notify. Every action is recorded on the workload and can be undone.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmedic",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentmedic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        importlib.import_module(f"agentmedic.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
